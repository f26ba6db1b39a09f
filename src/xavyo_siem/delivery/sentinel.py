"""Microsoft Sentinel transport: the Azure Monitor Logs Ingestion API, authenticated with a
Microsoft Entra ID client-credentials token; and the config of a sentinel destination
(`SentinelConfig`).

A batch goes as JSON arrays of the records (JSON objects: formats `json`, `ecs`, `ocsf`),
each object given a `TimeGenerated` from the event's own time, POSTed gzip-compressed to
`{endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01`
with `Authorization: Bearer <token>`. The pure parts are in `sentinel_protocol.py`.

The token comes from `{authority_host}/{tenant}/oauth2/v2.0/token` (client id, the
destination's secret as client secret, scope `{audience}/.default`). It is kept in memory
only, renewed five minutes before it expires, never logged, and removed from every reason.

One `send` may make several requests, and none of them is a retry of a failure:

* the batch is cut into arrays of at most `batch_max_bytes` (≤ 1,000,000) uncompressed
  bytes, under the service's 1 MB per call; a single record larger than that is rejected;
* a request answered 413 is sent again as two halves; a request answered 400 about its
  data is halved until the bad record is alone, which is then rejected with the answer;
* a request answered 401 or 403 is sent once more with a newly fetched token; a second
  refusal is `Misconfigured` (the secret, or the app's role on the rule);
* anything else that is not 2xx ends the batch (429 and 5xx `RetryLater`, honouring
  `Retry-After`), and the pipeline sends the whole batch again: arrays accepted before
  arrive twice.

Up to `max_requests_in_flight` arrays of one batch are on the wire at once (default 2), so
the next is built and compressed while the service reads the previous; 1 sends them one
after another. A table orders rows by `TimeGenerated`, not by arrival.

`Delivered` means the Logs Ingestion API answered 204 for every array; rows a rule's
transformation drops afterwards are not seen here. Every record carries its `event_id`, so
a query can drop duplicates.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

import aiohttp
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
from xavyo_siem.delivery.endpoints import check_host, split_url
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
    read_bounded,
    refuse_plain_http,
    send_classified,
)
from xavyo_siem.delivery.option_values import (
    BATCH_OPTIONS,
    OptionReader,
    Parser,
    integer,
    option_field,
    parse_bool,
    seconds,
    show,
    text,
)
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.delivery.sentinel_protocol import (
    API_VERSION,
    MAX_CALL_BYTES,
    BadData,
    NotAccepted,
    Token,
    array_body,
    classify_ingestion,
    ingestion_item,
    read_token_reply,
    token_form,
)
from xavyo_siem.delivery.tls import TlsConfig
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType, ExportFormat

__all__ = [
    "SENTINEL_FORMATS",
    "SENTINEL_OPTIONS",
    "SentinelConfig",
    "SentinelTransport",
    "check_client_secret",
]

# The formats whose records are JSON objects, the only ones a stream's columns can take (of
# these, the ones this version has).
SENTINEL_FORMATS: Final = frozenset(("json", "ecs", "ocsf")) & {f.value for f in ExportFormat}
SENTINEL_OPTIONS: Final = frozenset(
    (
        *BATCH_OPTIONS,
        "ca_file",
        "tls_verify",
        "dcr_immutable_id",
        "stream",
        "tenant",
        "client_id",
        "authority_host",
        "audience",
        "gzip",
        "timeout_s",
        "max_requests_in_flight",
    )
)
_GUID: Final = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
_DCR_ID: Final = re.compile(r"dcr-[0-9A-Fa-f]{32}")
_STREAM: Final = re.compile(r"(?:Custom|Microsoft)-[A-Za-z][A-Za-z0-9_-]{0,199}")
_timeout: Final = seconds(0.1, 300)
_max_requests_in_flight: Final = integer(1, 8)
_short_text: Final = text(256)
_url_text: Final = text(2048)


def _matching(pattern: re.Pattern[str], rule: str) -> Parser[str]:
    """A parser of a short string that matches `pattern` whole; `rule` says what it is."""

    def parse(name: str, value: object) -> str:
        found = _short_text(name, value)
        if not pattern.fullmatch(found):
            raise InvalidDestination(option_field(name), f"{rule}; got {show(value)}")
        return found

    return parse


_dcr_id: Final = _matching(
    _DCR_ID,
    "must be the rule's immutable id, dcr- and 32 hexadecimal digits (the rule's JSON view,"
    " properties.immutableId)",
)
_stream: Final = _matching(
    _STREAM,
    "must name a stream the rule declares, Custom-<Name> (e.g. Custom-XavyoAudit_CL) or"
    " Microsoft-<Table>",
)
_client_id: Final = _matching(
    _GUID, "must be the application (client) id of the app registration, a GUID"
)


def _tenant(name: str, value: object) -> str:
    tenant = _short_text(name, value)
    if _GUID.fullmatch(tenant) or (
        "." in tenant and all(re.fullmatch(r"[A-Za-z0-9-]{1,63}", p) for p in tenant.split("."))
    ):
        return tenant
    raise InvalidDestination(
        option_field(name),
        "must be the directory (tenant) id, a GUID, or its domain name (contoso.onmicrosoft"
        f".com); got {show(value)}",
    )


def _origin_url(*, development: bool, what: str) -> Parser[str]:
    """A parser of an https:// origin (no path, query or fragment), as `scheme://host[:port]`."""

    def parse(name: str, value: object) -> str:
        raw = _url_text(name, value)
        try:
            scheme, host, _port, rest, _url = split_url(raw)
            check_host(host, raw)
        except InvalidDestination as exc:
            raise InvalidDestination(option_field(name), exc.reason) from None
        if scheme != "https" and not (scheme == "http" and development):
            raise InvalidDestination(
                option_field(name),
                f"must be an https:// URL (plain http only when XAVYO_SIEM_ENV=development)"
                f" of {what}",
            )
        if rest not in ("", "/"):
            raise InvalidDestination(
                option_field(name), f"must be the origin of {what} only, without a path or query"
            )
        return raw.rstrip("/")

    return parse


def check_client_secret(secret: object) -> str:
    """`secret` if it can be a client secret (non-empty, printable, no spaces); otherwise
    InvalidDestination on `secret` (never quoting it). Checked when a destination is saved."""
    if not isinstance(secret, str) or not secret:
        raise InvalidDestination(
            "secret", "a sentinel destination needs the client secret of its app registration"
        )
    if len(secret) > 1024 or any(c.isspace() or not c.isprintable() for c in secret):
        raise InvalidDestination(
            "secret",
            "the client secret must be at most 1024 printable characters without spaces",
        )
    return secret


# --- Config ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SentinelConfig:
    """A Microsoft Sentinel (Logs Ingestion API) destination; the client secret is not here.

    `url` is the data collection endpoint (or the rule's own logs ingestion endpoint), an
    origin; `dcr_immutable_id` and `stream` name the rule and its input stream; `tenant`,
    `client_id` and `authority_host` where and as whom the token is asked for; `audience`
    the resource the token is for (scope `{audience}/.default`); `tls` (`ca_file`,
    `tls_verify`) applies to both hosts. The defaults are these fields' defaults.
    """

    delivery_type: DeliveryType = DeliveryType.SENTINEL
    url: str
    dcr_immutable_id: str
    stream: str
    tenant: str
    client_id: str
    authority_host: str = "https://login.microsoftonline.com"
    audience: str = "https://monitor.azure.com"
    gzip: bool = True
    timeout_s: float = 30.0
    # Arrays of one batch in flight at once: the next is built and compressed while the
    # service reads the previous (1 sends them strictly one after another).
    max_requests_in_flight: int = 2
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch_max_events: int = 2000
    batch_max_bytes: int = MAX_CALL_BYTES
    start: str = "now"

    @property
    def token_url(self) -> str:
        """Where the token is asked for."""
        return f"{self.authority_host}/{self.tenant}/oauth2/v2.0/token"

    @property
    def ingestion_url(self) -> str:
        """Where arrays are posted (the API version in the query)."""
        return (
            f"{self.url}/dataCollectionRules/{self.dcr_immutable_id}/streams/{self.stream}"
            f"?api-version={API_VERSION}"
        )

    @property
    def scope(self) -> str:
        """The token's scope: the audience and `/.default`."""
        return f"{self.audience}/.default"

    @classmethod
    def from_options(
        cls, endpoint: str, options: Mapping[str, object], *, development: bool
    ) -> SentinelConfig:
        """The config of a sentinel destination, or InvalidDestination naming the field.

        `options` holds only names of `SENTINEL_OPTIONS` (checked before).
        """
        try:
            url = _origin_url(development=development, what="the data collection endpoint")(
                "endpoint", endpoint
            )
        except InvalidDestination as exc:
            raise InvalidDestination("endpoint", exc.reason) from None
        for required in ("dcr_immutable_id", "stream", "tenant", "client_id"):
            if options.get(required) is None:
                raise InvalidDestination(
                    option_field(required), "is required for a sentinel destination"
                )
        read = OptionReader(options, cls)
        batch = read.batch()
        if batch["batch_max_bytes"] > MAX_CALL_BYTES:
            raise InvalidDestination(
                option_field("batch_max_bytes"),
                f"must be at most {MAX_CALL_BYTES:,}: the Logs Ingestion API takes 1 MB per call",
            )
        tls = TlsConfig.from_options(
            {k: v for k, v in options.items() if k in ("ca_file", "tls_verify")},
            delivery_type=DeliveryType.SENTINEL,
            endpoint=endpoint,
            development=development,
        )
        return cls(
            url=url,
            dcr_immutable_id=read("dcr_immutable_id", _dcr_id),
            stream=read("stream", _stream),
            tenant=read("tenant", _tenant),
            client_id=read("client_id", _client_id),
            authority_host=read(
                "authority_host", _origin_url(development=development, what="Microsoft Entra ID")
            ),
            audience=read(
                "audience", _origin_url(development=False, what="the Azure Monitor resource")
            ),
            gzip=read("gzip", parse_bool),
            timeout_s=read("timeout_s", _timeout),
            max_requests_in_flight=read("max_requests_in_flight", _max_requests_in_flight),
            tls=tls,
            **batch,
        )


# --- Transport ---------------------------------------------------------------------------


class SentinelTransport:
    """Posts batches to one Logs Ingestion API stream and classifies the answers (see the
    module docstring); fetches and renews its token from Microsoft Entra ID."""

    def __init__(
        self,
        config: SentinelConfig,
        *,
        client_secret: str,
        development: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        egress: EgressGuard | None = None,
    ) -> None:
        self._ingestion_url = URL(config.ingestion_url)
        self._token_url = URL(config.token_url)
        refuse_plain_http(self._ingestion_url, development=development)
        refuse_plain_http(self._token_url, development=development)
        check_client_secret(client_secret)
        self._config = config
        self._secret = client_secret
        self._monotonic = monotonic
        self._token: Token | None = None
        self._issued: deque[str] = deque(maxlen=4)  # the latest tokens, for scrubbing
        self._token_lock = asyncio.Lock()  # one token fetch at a time
        self._ingest_peer = describe_peer(self._ingestion_url)
        self._token_peer = describe_peer(self._token_url)
        self._form = token_form(
            client_id=config.client_id, client_secret=client_secret, scope=config.scope
        )
        self._session: aiohttp.ClientSession | None = None
        self._egress = egress  # the SSRF guard (xavyo_siem.egress); None in some tests
        self._headers = {"Content-Type": "application/json"}
        if config.gzip:
            self._headers["Content-Encoding"] = "gzip"

    @property
    def _secrets(self) -> tuple[str, ...]:
        """What no reason may show: the client secret and the latest tokens (an answer to a
        request sent with the previous one may quote it)."""
        return (self._secret, *self._issued)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(
                self._config.tls,
                timeout_s=self._config.timeout_s,
                limit=self._config.max_requests_in_flight + 1,  # + the token endpoint
                egress=self._egress,
            )
        return self._session

    async def _fetch_token(self) -> Token:
        """A new token from the token endpoint; raises PeerFailure when none is issued (its
        reason starts with "the token endpoint")."""
        try:
            with classify_as_peer_failure(self._token_peer):
                session = self._open()
                async with session.post(
                    self._token_url,
                    data=self._form,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    allow_redirects=False,
                ) as response:
                    status, body = response.status, await read_bounded(response, 16_384)
                    headers = response.headers
        except PeerFailure as failure:
            reason = f"the token endpoint (Microsoft Entra ID): {failure.result.reason}"
            raise PeerFailure(replace(failure.result, reason=reason)) from None
        reply = read_token_reply(
            status, body, headers, now=self._monotonic(), secrets=self._secrets
        )
        if not isinstance(reply, Token):
            raise PeerFailure(reply)
        self._token = reply
        self._issued.append(reply.access_token)
        return reply

    async def _bearer(self, *, refused: str | None = None, force: bool = False) -> str:
        """The token to send: the cached one, or a new one when there is none, it is due for
        renewal, `force`, or it is `refused` (the one a 401/403 answered; when several
        requests are refused at once, the token is fetched once)."""
        async with self._token_lock:
            token = self._token
            if (
                force
                or token is None
                or self._monotonic() >= token.renew_at
                or token.access_token == refused
            ):
                token = await self._fetch_token()
            return token.access_token

    async def _post(self, body: bytes, bearer: str) -> tuple[int, Mapping[str, str], bytes]:
        """POST one array body with `bearer`: (status, headers, the answer's first 16 KiB)."""
        headers = dict(self._headers)
        headers["Authorization"] = f"Bearer {bearer}"
        headers["x-ms-client-request-id"] = str(uuid.uuid4())
        with classify_as_peer_failure(self._ingest_peer):
            session = self._open()
            async with session.post(
                self._ingestion_url, data=body, headers=headers, allow_redirects=False
            ) as response:
                answer = await read_bounded(response, 16_384)
                return response.status, response.headers, answer

    async def _upload(self, items: Sequence[bytes]) -> DeliveryResult | TooLarge | BadData:
        """Post one array; on 401/403 once more with a new token."""
        body = array_body(items)
        if self._config.gzip:
            body = gzip_body(body)
        bearer = await self._bearer()
        outcome = classify_ingestion(*await self._post(body, bearer), secrets=self._secrets)
        if not isinstance(outcome, NotAccepted):
            return outcome
        bearer = await self._bearer(refused=bearer)
        outcome = classify_ingestion(*await self._post(body, bearer), secrets=self._secrets)
        if not isinstance(outcome, NotAccepted):
            return outcome
        return Misconfigured(
            f"{outcome.reason} with a new token; check the app's Monitoring Metrics Publisher"
            " role on the data collection rule (a new assignment can take 30 minutes) and the"
            " audience"
        )

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Post `records` (as several arrays if needed) and classify the outcome."""
        return await send_classified(self._send, records, self._secrets)

    async def _send(self, records: Sequence[Record]) -> DeliveryResult:
        limit = self._config.batch_max_bytes
        rejected: dict[int, str] = {}
        items: list[bytes] = []
        positions: list[int] = []  # items[k] is the element of records[positions[k]]
        for position, record in enumerate(records):
            try:
                item = ingestion_item(record.text, record.timestamp_us)
            except UnicodeEncodeError:
                rejected[position] = "the record is not valid UTF-8 text"
                continue
            except ValueError:
                rejected[position] = (
                    "the record is not a JSON object; a sentinel destination takes the formats "
                    + ", ".join(sorted(SENTINEL_FORMATS))
                )
                continue
            if len(item) + 2 > limit:
                rejected[position] = (
                    f"the record is {len(item):,} bytes, over the {limit:,} bytes one call to"
                    " the Logs Ingestion API may carry"
                )
                continue
            items.append(item)
            positions.append(position)
        spans = cut_spans(
            [len(item) + 1 for item in items],
            0,
            len(items),
            max_events=len(items) or 1,
            max_bytes=limit - 1,
        )
        todo: deque[Sequence[int]] = deque(range(start, end) for start, end in spans)
        in_flight: dict[asyncio.Future[DeliveryResult | TooLarge | BadData], Sequence[int]] = {}
        try:
            while todo or in_flight:
                while todo and len(in_flight) < self._config.max_requests_in_flight:
                    part = todo.popleft()
                    upload = asyncio.ensure_future(self._upload([items[k] for k in part]))
                    in_flight[upload] = part
                    await asyncio.sleep(0)  # let it build and send before the next is made
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: in_flight[f][0]):
                    part = in_flight.pop(future)
                    outcome = future.result()  # a PeerFailure ends the batch (see `send`)
                    if isinstance(outcome, TooLarge | BadData):
                        if len(part) == 1:
                            rejected[positions[part[0]]] = outcome.reason
                        else:
                            middle = len(part) // 2
                            todo.extendleft([part[middle:], part[:middle]])
                    elif not isinstance(outcome, Delivered):
                        return outcome
        finally:
            await cancel_all(in_flight)
        return Rejected(dict(sorted(rejected.items()))) if rejected else Delivered()

    async def check(self) -> DeliveryResult:
        """Fetch a new token (the client credentials and the authority), then reach the
        ingestion endpoint with an `OPTIONS` request (no event is sent).

        A refused token is `Misconfigured`; any HTTP answer of the ingestion endpoint other
        than 408, 429, 5xx or a redirect proves DNS, TCP and TLS there. Whether the app may
        write to the rule shows when an event is sent.
        """
        return scrub_result(await self._check(), self._secrets)

    async def _check(self) -> DeliveryResult:
        try:
            await self._bearer(force=True)
            with classify_as_peer_failure(self._ingest_peer):
                session = self._open()
                async with session.options(self._ingestion_url, allow_redirects=False) as response:
                    status = response.status
                    answer = await read_bounded(response, 16_384)
                    headers = response.headers
        except PeerFailure as failure:
            return failure.result
        outcome = classify_ingestion(status, headers, answer, secrets=self._secrets)
        if isinstance(outcome, RetryLater):
            return outcome
        if 300 <= status < 400:
            return Misconfigured(f"the ingestion endpoint redirected (HTTP {status})")
        return Delivered()

    async def aclose(self) -> None:
        """Close the connection pool and forget the token; never raises."""
        session, self._session = self._session, None
        self._token = None
        await close_session(session)


if TYPE_CHECKING:

    def _implements_transport(transport: SentinelTransport) -> Transport:
        return transport
