"""Splunk HTTP Event Collector transport: `/services/collector/event`, gzip, indexer acks;
and the config of an HEC destination (`HecConfig`).

A batch is written as envelopes `{"time":<sec>.<µs>,"host":…,"source":…,"sourcetype":…,
"index":…,"event":…}`, one per line (not a JSON array: HEC reads concatenated envelopes,
with or without newlines between them). JSON and ECS records are embedded as the event
object as they are; CEF, syslog and LEEF lines become string events. The pure parts (envelopes,
the reply classifiers) are in `hec_replies.py`, indexer acknowledgement in `hec_acks.py`.

One `send` may make several requests, and none of them is a retry of a failure:

* the batch is cut by `batch_max_events` and `batch_max_bytes` (uncompressed);
* a part answered 413 is sent again as two halves; one record still too large is rejected;
* a part answered with a data error (codes 6, 12, 13, 15) and `invalid-event-number` i
  has record i rejected and the records after i sent on in a new request (Splunk stopped
  reading at i). Records before i count as accepted, as Splunk documents for these codes,
  except with `ack`: an error reply carries no ackId, so nothing of that request is
  acknowledged and the records before i are sent again too. Without a usable index the
  part is halved until the bad record is alone.

Up to `max_requests_in_flight` requests of one batch are in flight at once, so the next
body is built and compressed while HEC parses the previous one (1 keeps arrival order).
The first part that fails otherwise (busy, auth, ack timeout, ...) decides the result, and
the pipeline resends the whole batch: parts already accepted arrive twice. Delivery is
at least once; every event carries its `event_id` for de-duplication.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from xavyo_siem.delivery.hec_acks import PendingAcks
from xavyo_siem.delivery.hec_replies import (
    Accepted,
    HecEnvelope,
    HecEventRejected,
    HecOutcome,
    HecReply,
    classify_hec_health,
    classify_hec_response,
    hec_reply_code,
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
    read_bounded,
    read_http_target,
    refuse_plain_http,
    send_classified,
)
from xavyo_siem.delivery.option_values import (
    BATCH_OPTIONS,
    OptionReader,
    integer,
    parse_bool,
    seconds,
    text,
)
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.delivery.tls import TLS_OPTIONS, TlsConfig
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["HEC_OPTIONS", "HecConfig", "HecTransport", "check_hec_token"]

EVENT_PATH: Final = "/services/collector/event"
ACK_PATH: Final = "/services/collector/ack"
HEALTH_PATH: Final = "/services/collector/health"

HEC_OPTIONS: Final = frozenset(
    (
        *BATCH_OPTIONS,
        *TLS_OPTIONS,
        "gzip",
        "ack",
        "index",
        "source",
        "sourcetype",
        "host",
        "timeout_s",
        "ack_timeout_s",
        "ack_poll_interval_s",
        "ack_max_pending",
        "max_requests_in_flight",
    )
)
_timeout: Final = seconds(0.1, 300)
_ack_timeout: Final = seconds(0.01, 3600)
_ack_poll_interval: Final = seconds(0.01, 60)
_ack_max_pending: Final = integer(1, 1000)
_max_requests_in_flight: Final = integer(1, 8)
_index: Final = text(80)
_source: Final = text(allow_empty=True)
_sourcetype: Final = text(256, allow_empty=True)
DEFAULT_SOURCE: Final = "xavyo-siem"
DEFAULT_SOURCETYPE: Final = "xavyo:identity:events"
_host: Final = text(256)


# --- Config ------------------------------------------------------------------------------

# Splunk documents an HEC token as a GUID (it generates one per token; inputs.conf requires
# that form); it travels as `Authorization: Splunk <token>`.
_HEC_TOKEN: Final = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def _check_token_characters(token: object) -> str:
    """A token that can travel in a header: present, without spaces or controls."""
    if not isinstance(token, str) or not token:
        raise InvalidDestination("secret", "a Splunk HEC destination needs its token")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise InvalidDestination(
            "secret", "the HEC token must not contain spaces, line breaks or control characters"
        )
    return token


def check_hec_token(token: object) -> str:
    """`token` if it has the documented shape of an HEC token, a GUID; otherwise
    InvalidDestination on `secret` saying why (never quoting the token).

    Checked when a destination is saved. A transport checks only that the token can travel
    in a header, so a token stored before this rule keeps working.
    """
    token = _check_token_characters(token)
    if not _HEC_TOKEN.fullmatch(token):
        raise InvalidDestination(
            "secret",
            "a Splunk HEC token is a GUID: 8-4-4-4-12 hexadecimal digits, as Splunk"
            f" generates it (got {len(token)} characters of another form)",
        )
    return token


@dataclass(frozen=True, slots=True, kw_only=True)
class HecConfig:
    """A Splunk HTTP Event Collector destination (the token is the secret, not here).

    `index`, `source`, `sourcetype` and `host` are written into every envelope when set
    (unset: HEC's defaults for the token). `source` and `sourcetype` have defaults of their
    own, `xavyo-siem` and `xavyo:identity:events`, so searches find the events whatever the
    token's defaults; an empty string leaves them to the token. `timeout_s` bounds one
    request; `tls` applies over https://. The defaults are these fields' defaults.
    """

    delivery_type: DeliveryType = DeliveryType.SPLUNK_HEC
    url: str
    gzip: bool = True
    ack: bool = False
    index: str | None = None
    source: str | None = DEFAULT_SOURCE
    sourcetype: str | None = DEFAULT_SOURCETYPE
    host: str | None = None
    timeout_s: float = 30.0
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch_max_events: int = 500
    batch_max_bytes: int = 1 << 20
    start: str = "now"
    # Indexer acknowledgement (hec_acks.py): how long a batch may stay unacknowledged,
    # how often /ack is polled, how many requests may await their ack.
    ack_timeout_s: float = 120.0
    ack_poll_interval_s: float = 1.0
    ack_max_pending: int = 16
    # Requests of one batch in flight at once (1 keeps strict arrival order).
    max_requests_in_flight: int = 3

    @classmethod
    def from_options(
        cls, endpoint: str, options: Mapping[str, object], *, development: bool
    ) -> HecConfig:
        """The config of an HEC destination, or InvalidDestination naming the field.

        `options` holds only names of `HEC_OPTIONS` (checked before).
        """
        url, tls = read_http_target(
            DeliveryType.SPLUNK_HEC, endpoint, options, development=development
        )
        read = OptionReader(options, cls)
        return cls(
            url=url,
            gzip=read("gzip", parse_bool),
            ack=read("ack", parse_bool),
            index=read.optional("index", _index),
            source=read.optional("source", _source) or None,
            sourcetype=read.optional("sourcetype", _sourcetype) or None,
            host=read.optional("host", _host),
            timeout_s=read("timeout_s", _timeout),
            tls=tls,
            ack_timeout_s=read("ack_timeout_s", _ack_timeout),
            ack_poll_interval_s=read("ack_poll_interval_s", _ack_poll_interval),
            ack_max_pending=read("ack_max_pending", _ack_max_pending),
            max_requests_in_flight=read("max_requests_in_flight", _max_requests_in_flight),
            **read.batch(),
        )


# --- Transport ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """What one `send` still has to do: parts to send, ackIds to await, envelopes refused."""

    todo: deque[Sequence[int]]
    acks: PendingAcks
    rejected: dict[int, str] = field(default_factory=dict)  # by envelope index


def _collector_base(url: URL) -> URL:
    path = url.path.rstrip("/")
    for suffix in (EVENT_PATH, "/services/collector"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return url.with_path(path or "/")


class HecTransport:
    """Sends batches to one Splunk HEC and classifies its answers (see the module docstring)."""

    def __init__(
        self,
        config: HecConfig,
        *,
        token: str,
        event_is_json: bool,
        development: bool = False,
        channel: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        egress: EgressGuard | None = None,
    ) -> None:
        base = _collector_base(URL(config.url))
        refuse_plain_http(base, development=development)
        _check_token_characters(token)
        if channel is not None:
            try:
                uuid.UUID(channel)
            except ValueError:
                raise InvalidDestination("channel", "must be a GUID") from None
        self._config = config
        self._secrets = (token,)  # removed from every reason (scrub.py)
        self._monotonic = monotonic
        prefix = base.path.rstrip("/")
        self._event_url = base.with_path(prefix + EVENT_PATH)
        self._ack_url = base.with_path(prefix + ACK_PATH)
        self._health_url = base.with_path(prefix + HEALTH_PATH)
        self._peer = describe_peer(base)
        self.channel = channel or str(uuid.uuid4())
        self._ack_url = self._ack_url.with_query(channel=self.channel)
        self._envelope = HecEnvelope(
            event_is_json=event_is_json,
            host=config.host,
            source=config.source,
            sourcetype=config.sourcetype,
            index=config.index,
        )
        self._headers = {
            "Authorization": f"Splunk {token}",
            "Content-Type": "application/json",
            "X-Splunk-Request-Channel": self.channel,
        }
        self._post_headers = dict(self._headers)
        if config.gzip:
            self._post_headers["Content-Encoding"] = "gzip"
        self._session: aiohttp.ClientSession | None = None
        self._egress = egress  # the SSRF guard (xavyo_siem.egress); None in some tests

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(
                self._config.tls,
                timeout_s=self._config.timeout_s,
                limit=self._config.max_requests_in_flight + 1,  # + the /ack poll
                egress=self._egress,
            )
        return self._session

    async def _request(
        self, method: str, url: URL, body: bytes | None, headers: Mapping[str, str]
    ) -> HecReply:
        with classify_as_peer_failure(self._peer):
            session = self._open()
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                server_hostname=self._config.tls.server_name,
            ) as response:
                return response.status, await read_bounded(response), response.headers

    def _compress(self, body: bytes) -> bytes:
        if not self._config.gzip:
            return body
        return gzip_body(body)

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Send `records` (in parts if needed), wait for acks if enabled, and classify."""
        return await send_classified(self._send, records, self._secrets)

    async def _send(self, records: Sequence[Record]) -> DeliveryResult:
        config = self._config
        rejected: dict[int, str] = {}  # by position in `records`
        items: list[bytes] = []
        positions: list[int] = []  # items[k] is the envelope of records[positions[k]]
        for position, record in enumerate(records):
            try:
                items.append(self._envelope(record))
            except (UnicodeEncodeError, TypeError):
                rejected[position] = "the record is not valid UTF-8 text"
                continue
            positions.append(position)
        spans = cut_spans(
            [len(item) for item in items],
            0,
            len(items),
            max_events=config.batch_max_events,
            max_bytes=config.batch_max_bytes,
        )
        batch = _Batch(
            todo=deque(range(start, end) for start, end in spans),
            acks=PendingAcks(
                post_ack=self._post_ack,
                timeout_s=config.ack_timeout_s,
                poll_interval_s=config.ack_poll_interval_s,
                monotonic=self._monotonic,
                secrets=self._secrets,
            ),
        )
        in_flight: dict[asyncio.Future[HecReply], Sequence[int]] = {}
        try:
            while batch.todo or in_flight:
                while batch.todo and len(in_flight) < config.max_requests_in_flight:
                    if config.ack and len(batch.acks) + len(in_flight) >= config.ack_max_pending:
                        break
                    part = batch.todo.popleft()
                    body = self._compress(b"\n".join([items[k] for k in part]))
                    request = self._request("POST", self._event_url, body, self._post_headers)
                    in_flight[asyncio.ensure_future(request)] = part
                    await asyncio.sleep(0)  # let it start sending before the next is built
                if not in_flight:  # every slot is taken by an unacknowledged request
                    failure = await batch.acks.wait(keep=config.ack_max_pending - 1)
                    if failure is not None:
                        return failure
                    continue
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: in_flight[f][0]):
                    part = in_flight.pop(future)
                    failure = await self._settle(
                        part, classify_hec_response(*future.result(), secrets=self._secrets), batch
                    )
                    if failure is not None:
                        return failure
        finally:  # a batch that ended early leaves nothing running or unobserved
            await cancel_all(in_flight)
        failure = await batch.acks.wait(keep=0)
        if failure is not None:
            return failure
        for k, reason in batch.rejected.items():
            rejected[positions[k]] = reason
        return Rejected(dict(sorted(rejected.items()))) if rejected else Delivered()

    async def _settle(
        self, part: Sequence[int], outcome: HecOutcome, batch: _Batch
    ) -> RetryLater | Misconfigured | None:
        """Apply one reply to the batch: record its ackId, queue what must still be sent,
        note rejected envelopes; return the failure that ends the batch, if any."""
        config = self._config
        if isinstance(outcome, Accepted):
            if not config.ack:
                return None
            if outcome.ack_id is None:
                return Misconfigured(
                    "ack is on but HEC returned no ackId: enable indexer "
                    "acknowledgement on the token or set `ack` to false"
                )
            batch.acks.add(outcome.ack_id)
            return None
        bad = outcome.index if isinstance(outcome, HecEventRejected) else None
        if bad is not None and bad < len(part):
            batch.rejected[part[bad]] = outcome.reason
            rest = [part[bad + 1 :]]
            if config.ack:  # an error reply acknowledges nothing: resend the prefix too
                rest.insert(0, part[:bad])
            batch.todo.extendleft(reversed([r for r in rest if r]))
            return None
        if isinstance(outcome, HecEventRejected | TooLarge):
            if len(part) == 1:
                batch.rejected[part[0]] = outcome.reason
            else:
                middle = len(part) // 2
                batch.todo.extendleft([part[middle:], part[:middle]])
            return None
        return outcome

    async def _post_ack(self, body: bytes) -> HecReply:
        return await self._request("POST", self._ack_url, body, self._headers)

    async def check(self) -> DeliveryResult:
        """Probe `/health` (with `?ack=true` when acks are on), then the token.

        The token is checked with an empty event request, which HEC answers with code 5
        ("No data") only once the token (and channel) passed; no event is sent.
        """
        return scrub_result(await self._check(), self._secrets)

    async def _check(self) -> DeliveryResult:
        health_url = self._health_url.with_query(ack="true") if self._config.ack else None
        try:
            status, answer, _ = await self._request(
                "GET", health_url or self._health_url, None, self._headers
            )
            health = classify_hec_health(status, answer, secrets=self._secrets)
            if isinstance(health, RetryLater) or status in (401, 403):
                return health
            status, answer, headers = await self._request(
                "POST", self._event_url, b"", self._headers
            )
        except PeerFailure as failure:
            return failure.result
        if hec_reply_code(answer) in (0, 5):
            return Delivered()
        outcome = classify_hec_response(status, answer, headers, secrets=self._secrets)
        if isinstance(outcome, RetryLater | Misconfigured):
            return outcome
        return Misconfigured(f"HEC answered the token probe with HTTP {status}")

    async def aclose(self) -> None:
        """Close the connection pool; never raises. Unacknowledged batches were already
        reported `RetryLater` by their `send`."""
        session, self._session = self._session, None
        await close_session(session)


if TYPE_CHECKING:

    def _implements_transport(transport: HecTransport) -> Transport:
        return transport
