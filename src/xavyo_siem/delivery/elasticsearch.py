"""Elasticsearch and OpenSearch transport: the `_bulk` API over HTTPS, one document per
event; and the config of such a destination (`ElasticsearchConfig`).

A batch is one or more `POST <endpoint>/<index>/_bulk` requests of NDJSON action and source
lines (`elasticsearch_bulk.py`; the credential's header: `elasticsearch_auth.py`), up to
`max_requests_in_flight` of them on the wire at once (a batch of more than 100 documents is
spread over that many requests, each of at least 100), `_id` = the event id and, by default,
`op_type` `create`: a document sent again is answered 409 "already exists", which counts
as stored, so a resend never stores an event twice in the same index (a data stream
accepts only `create`; with `op_type` `index` a resend overwrites the same document). After
a data stream or alias rolls over, a resend lands in the new write index and is stored a
second time: searches de-duplicate on `event_id`.

`Delivered` means the cluster answered 201/200 (or 409 on `create`) for every document. The
cluster answers 200 even when some documents failed, so each is classified
(`classify_bulk_item`):

* documents refused for now (429, 5xx): `RetryLater`; the transport remembers which
  documents of the batch were stored or refused for good, and when the pipeline sends the
  same batch again only the others go;
* documents refused for good (400 mapping or parsing errors): `Rejected` with the
  cluster's reason, once the rest of the batch is settled;
* a document refused for the destination's settings (unknown index, privileges, pipeline,
  data-stream rules): `Misconfigured`.

The whole request: 401/403 and other 4xx `Misconfigured`; 413 sends the two halves (one
document still too large is rejected); 408, 429 and 5xx `RetryLater` with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import aiohttp
import orjson
from yarl import URL

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
    Transport,
)
from xavyo_siem.delivery.elasticsearch_auth import elasticsearch_authorization
from xavyo_siem.delivery.elasticsearch_bulk import (
    BULK_FILTER_PATH,
    BulkAnswer,
    BulkEncoder,
    OpType,
    UnsendableRecord,
    classify_bulk_response,
)
from xavyo_siem.delivery.http import (
    PeerFailure,
    TooLarge,
    cancel_all,
    classify_as_peer_failure,
    close_session,
    cut_spans,
    describe_peer,
    gzip_body,
    open_session,
    peer_text,
    read_bounded,
    read_http_target,
    refuse_plain_http,
    send_classified,
)
from xavyo_siem.delivery.option_values import (
    BATCH_OPTIONS,
    OptionReader,
    Parser,
    choice,
    integer,
    option_field,
    parse_bool,
    seconds,
    show,
)
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.delivery.tls import TLS_OPTIONS, TlsConfig
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = [
    "ELASTICSEARCH_FORMATS",
    "ELASTICSEARCH_OPTIONS",
    "ElasticsearchConfig",
    "ElasticsearchTransport",
]

ELASTICSEARCH_OPTIONS: Final = frozenset(
    (
        *BATCH_OPTIONS,
        *TLS_OPTIONS,
        "index",
        "op_type",
        "pipeline",
        "require_data_stream",
        "gzip",
        "timeout_s",
        "max_requests_in_flight",
    )
)
# The formats whose records are JSON objects, the only thing a `_bulk` source line can be.
# A new JSON-object format adds its name here.
ELASTICSEARCH_FORMATS: Final = frozenset(("json", "ecs", "ocsf"))

_op_type: Final[Parser[OpType]] = choice("create", "index")
_timeout: Final = seconds(0.1, 300)
_in_flight: Final = integer(1, 8)
# A batch is spread over up to `max_requests_in_flight` requests, each of at least this
# many documents (fewer only when the batch is smaller).
_MIN_SPREAD_EVENTS: Final = 100
# Bytes read of an answer per document, beyond a fixed allowance: an item is about 60
# bytes (`filter_path`), an error with its cause a few hundred.
_ANSWER_BYTES_PER_DOCUMENT: Final = 4096


def _name(pattern: str, rule: str) -> Parser[str]:
    """A parser of a name that must match `pattern` whole; `rule` says it in words."""
    compiled = re.compile(pattern)

    def parse(name: str, value: object) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise InvalidDestination(option_field(name), f"must be {rule}; got {show(value)}")
        return value

    return parse


_index: Final = _name(
    r"[a-z0-9][a-z0-9._-]{0,254}",
    "an index, data stream or alias name: lower-case letters, digits, '.', '_' and '-',"
    " starting with a letter or digit, at most 255",
)
_pipeline: Final = _name(
    r"_none|[A-Za-z0-9][A-Za-z0-9._@-]{0,511}",
    "an ingest pipeline id (letters, digits, '.', '_', '-', '@') or _none",
)


# --- Config ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ElasticsearchConfig:
    """An Elasticsearch or OpenSearch destination (the credential is the secret, not here).

    `url` is the cluster's base URL (`https://host:9200`, a path prefix allowed for a
    proxy); `index` the index, data stream or alias written to; `op_type` `create` (data
    streams need it; a document sent again is recognised by its `_id`) or `index`
    (overwrites); `pipeline` the ingest pipeline to run (`_none` skips the index's
    default); `require_data_stream` refuses to write to anything but a data stream;
    `gzip` compresses request bodies; `timeout_s` bounds one request;
    `max_requests_in_flight` is how many requests of one batch may be on the wire at once
    (the next is built and compressed while the cluster reads the previous; 1 keeps
    arrival order). The defaults are these fields' defaults.
    """

    delivery_type: DeliveryType = DeliveryType.ELASTICSEARCH
    url: str
    index: str = "logs-xavyo.audit-default"
    op_type: OpType = "create"
    pipeline: str | None = None
    require_data_stream: bool = False
    gzip: bool = True
    timeout_s: float = 30.0
    max_requests_in_flight: int = 2
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch_max_events: int = 1000
    batch_max_bytes: int = 5 << 20
    start: str = "now"

    @classmethod
    def from_options(
        cls, endpoint: str, options: Mapping[str, object], *, development: bool
    ) -> ElasticsearchConfig:
        """The config of an Elasticsearch destination, or InvalidDestination naming the
        field. `options` holds only names of `ELASTICSEARCH_OPTIONS` (checked before)."""
        url, tls = read_http_target(
            DeliveryType.ELASTICSEARCH, endpoint, options, development=development
        )
        if "?" in url:
            raise InvalidDestination(
                "endpoint", "must be the cluster's base URL, without a query (?...)"
            )
        if url.rstrip("/").endswith("/_bulk"):
            raise InvalidDestination(
                "endpoint", "must be the cluster's base URL; the index and _bulk are added"
            )
        read = OptionReader(options, cls)
        config = cls(
            url=url,
            index=read("index", _index),
            op_type=read("op_type", _op_type),
            pipeline=read.optional("pipeline", _pipeline),
            require_data_stream=read("require_data_stream", parse_bool),
            gzip=read("gzip", parse_bool),
            timeout_s=read("timeout_s", _timeout),
            max_requests_in_flight=read("max_requests_in_flight", _in_flight),
            tls=tls,
            **read.batch(),
        )
        if config.require_data_stream and config.op_type != "create":
            raise InvalidDestination(
                option_field("op_type"), "a data stream accepts only create; remove op_type"
            )
        return config


# --- Transport ---------------------------------------------------------------------------


_Outcome = BulkAnswer | TooLarge | RetryLater | Misconfigured


@dataclass(slots=True)
class _Settled:
    """What is known of the last batch that did not go through: by position, the documents
    stored and those refused for good. The same batch sent again skips them."""

    batch: tuple[str, ...] = ()
    stored: set[int] = field(default_factory=set)
    rejected: dict[int, str] = field(default_factory=dict)


class ElasticsearchTransport:
    """Sends batches to one Elasticsearch or OpenSearch cluster with `_bulk` (see the module
    docstring for what each answer means)."""

    def __init__(
        self,
        config: ElasticsearchConfig,
        *,
        secret: str | None,
        development: bool = False,
        egress: EgressGuard | None = None,
    ) -> None:
        base = URL(config.url)
        refuse_plain_http(base, development=development)
        authorization = elasticsearch_authorization(secret)
        self._config = config
        self._base = base
        prefix = base.path.rstrip("/")
        query: dict[str, str] = {"filter_path": BULK_FILTER_PATH}
        if config.pipeline is not None:
            query["pipeline"] = config.pipeline
        if config.require_data_stream:
            query["require_data_stream"] = "true"
        self._bulk_url = base.with_path(f"{prefix}/{config.index}/_bulk").with_query(query)
        self._root_url = base.with_path(prefix + "/")
        self._peer = describe_peer(base)
        self._auth = {} if authorization is None else {"Authorization": authorization}
        # removed from every reason (scrub.py): the secret as given and as sent
        self._secrets = tuple(s for s in (secret, authorization) if s)
        self._headers = {
            "Content-Type": "application/x-ndjson",
            "Accept": "application/json",
            **self._auth,
        }
        if config.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._encode = BulkEncoder(config.op_type)
        self._settled = _Settled()
        self._session: aiohttp.ClientSession | None = None
        self._egress = egress  # the SSRF guard (xavyo_siem.egress); None in some tests

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(
                self._config.tls,
                timeout_s=self._config.timeout_s,
                limit=self._config.max_requests_in_flight,
                egress=self._egress,
            )
        return self._session

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Send `records` (in parts if needed) and classify the outcome."""
        return await send_classified(self._send, records, self._secrets)

    async def _send(self, records: Sequence[Record]) -> DeliveryResult:
        config = self._config
        batch = tuple(record.event_id for record in records)
        if batch != self._settled.batch:
            self._settled = _Settled(batch)
        settled = self._settled
        items, positions = self._encode_unsettled(records)
        per_request = min(
            config.batch_max_events,
            max(_MIN_SPREAD_EVENTS, math.ceil(len(items) / config.max_requests_in_flight)),
        )
        spans = cut_spans(
            [len(item) for item in items],
            0,
            len(items),
            max_events=per_request,
            max_bytes=config.batch_max_bytes,
        )
        todo: deque[Sequence[int]] = deque(range(start, end) for start, end in spans)
        retry: dict[int, str] = {}
        in_flight: dict[asyncio.Future[_Outcome], Sequence[int]] = {}
        try:
            while todo or in_flight:
                while todo and len(in_flight) < config.max_requests_in_flight:
                    part = todo.popleft()
                    ids = [records[positions[k]].event_id for k in part]
                    body = b"".join([items[k] for k in part])
                    in_flight[asyncio.ensure_future(self._post(body, ids))] = part
                    await asyncio.sleep(0)  # let it start sending before the next is built
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: in_flight[f][0]):
                    part = in_flight.pop(future)
                    failure = self._settle(part, future.result(), positions, todo, retry)
                    if failure is not None:
                        return failure
        finally:  # a batch that ended early leaves nothing running or unobserved
            await cancel_all(in_flight)
        if retry:
            first = min(retry)
            return RetryLater(
                f"Elasticsearch asked to send {len(retry)} of {len(records)} documents again"
                f" (the first: {retry[first]})"
            )
        self._settled = _Settled()
        return Rejected(dict(sorted(settled.rejected.items()))) if settled.rejected else Delivered()

    def _encode_unsettled(self, records: Sequence[Record]) -> tuple[list[bytes], Sequence[int]]:
        """The lines of each record not yet settled, and where each came from: `items[k]`
        is the document of `records[positions[k]]`. A record that cannot be a document is
        settled as rejected."""
        settled = self._settled
        if not settled.stored and not settled.rejected:
            try:  # the common case, in one pass
                return list(map(self._encode, records)), range(len(records))
            except UnsendableRecord:
                pass
        items: list[bytes] = []
        positions: list[int] = []
        for position, record in enumerate(records):
            if position in settled.stored or position in settled.rejected:
                continue
            try:
                items.append(self._encode(record))
            except UnsendableRecord as exc:
                settled.rejected[position] = exc.reason
                continue
            positions.append(position)
        return items, positions

    def _settle(
        self,
        part: Sequence[int],
        outcome: _Outcome,
        positions: Sequence[int],
        todo: deque[Sequence[int]],
        retry: dict[int, str],
    ) -> RetryLater | Misconfigured | None:
        """Note what one answer says of its documents; the failure that ends the batch."""
        settled = self._settled
        if isinstance(outcome, TooLarge):
            if len(part) == 1:
                settled.rejected[positions[part[0]]] = outcome.reason
            else:
                middle = len(part) // 2
                todo.extendleft([part[middle:], part[:middle]])
            return None
        if not isinstance(outcome, BulkAnswer):
            return outcome
        if not outcome.retry and not outcome.rejected:  # the common answer: all stored
            settled.stored.update(map(positions.__getitem__, part))
        else:
            for j, k in enumerate(part):
                if j in outcome.retry:
                    retry[positions[k]] = outcome.retry[j]
                elif j in outcome.rejected:
                    settled.rejected[positions[k]] = outcome.rejected[j]
                else:
                    settled.stored.add(positions[k])
        if outcome.misconfigured is not None:
            return Misconfigured(outcome.misconfigured)
        return None

    async def _post(self, body: bytes, ids: Sequence[str]) -> _Outcome:
        if self._config.gzip:
            body = gzip_body(body)
        with classify_as_peer_failure(self._peer):
            session = self._open()
            async with session.post(
                self._bulk_url,
                data=body,
                headers=self._headers,
                allow_redirects=False,
                server_hostname=self._config.tls.server_name,
            ) as response:
                answer = await read_bounded(
                    response, 65_536 + _ANSWER_BYTES_PER_DOCUMENT * len(ids)
                )
                return classify_bulk_response(
                    response.status,
                    response.headers,
                    answer,
                    ids=ids,
                    op_type=self._config.op_type,
                    secrets=self._secrets,
                )

    async def check(self) -> DeliveryResult:
        """Probe the cluster with `GET /` and the credential (no document is sent).

        200 with a JSON object is `Delivered`; so is 403, which a credential that is
        accepted but may only write documents (no cluster `monitor` privilege) gets. 401 is
        `Misconfigured` (the credential is refused); 408, 429, 5xx `RetryLater`; a redirect,
        another 4xx or an answer that is not JSON (not a cluster) `Misconfigured`.
        """
        return scrub_result(await self._check(), self._secrets)

    async def _check(self) -> DeliveryResult:
        try:
            with classify_as_peer_failure(self._peer):
                session = self._open()
                async with session.get(
                    self._root_url,
                    headers={"Accept": "application/json", **self._auth},
                    allow_redirects=False,
                    server_hostname=self._config.tls.server_name,
                ) as response:
                    status = response.status
                    headers = response.headers
                    answer = await read_bounded(response, 16_384)
        except PeerFailure as failure:
            return failure.result
        if status == 403:
            return Delivered()
        if status == 200:
            try:
                info = orjson.loads(answer)
            except orjson.JSONDecodeError:
                info = None
            if isinstance(info, dict):
                return Delivered()
            text = peer_text(answer, 120, secrets=self._secrets)
            return Misconfigured(
                f"{self._peer} answered GET / with something other than a cluster's JSON: {text}"
            )
        result = classify_bulk_response(status, headers, answer, ids=(), op_type="create")
        if isinstance(result, RetryLater | Misconfigured):
            return result
        return Misconfigured(f"{self._peer} answered GET / with HTTP {status}")

    async def aclose(self) -> None:
        """Close the connection pool; never raises."""
        session, self._session = self._session, None
        await close_session(session)


if TYPE_CHECKING:

    def _implements_transport(transport: ElasticsearchTransport) -> Transport:
        return transport
