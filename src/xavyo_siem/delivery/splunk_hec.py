"""Splunk HTTP Event Collector transport: `/services/collector/event`, gzip, indexer acks
(PROTOCOLS §6 and §10).

A batch is written as envelopes `{"time":<sec>.<µs>,"host":…,"source":…,"sourcetype":…,
"index":…,"event":…}`, one per line (not a JSON array; §6.4 allows newlines between them).
JSON-format records are embedded as the event object as they are; CEF and syslog lines
become string events.

The pure parts are `hec_time`, `HecEnvelope` and the three classifiers:
`classify_hec_response` (event replies, the table of §6.6), `classify_hec_ack` (`/ack`
answers; one that cannot be parsed is never success) and `classify_hec_health`.

One `send` may make several requests, and none of them is a retry of a failure:

* the batch is cut by `batch_max_events` and `batch_max_bytes` (uncompressed);
* a part answered 413 is sent again as two halves; one record still too large is rejected;
* a part answered with a data error (codes 6, 12, 13, 15) and `invalid-event-number` i
  has record i rejected and the records after i sent on in a new request (Splunk stopped
  reading at i). Records before i count as accepted, as §6.6 reports, except with `ack`:
  an error reply carries no ackId, so nothing of that request is acknowledged and the
  records before i are sent again too. Without a usable index the part is halved until
  the bad record is alone.

Up to `max_requests_in_flight` requests of one batch are in flight at once, so the next
body is built and compressed while HEC parses the previous one (1 keeps arrival order).
The first part that fails otherwise (busy, auth, ack timeout, ...) decides the result, and
the pipeline resends the whole batch: parts already accepted arrive twice. Delivery is
at least once; every event carries its `event_id` for de-duplication.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

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
from xavyo_siem.delivery.http import (
    PeerFailure,
    TlsOptions,
    TooLarge,
    close_session,
    cut_spans,
    describe_peer,
    gzip_body,
    header,
    map_errors,
    open_session,
    parse_retry_after,
    peer_text,
    read_bounded,
)
from xavyo_siem.delivery.options import HecConfig
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination

__all__ = [
    "HEC_CODES",
    "Accepted",
    "HecEnvelope",
    "HecOutcome",
    "HecTransport",
    "InvalidEvent",
    "classify_hec_ack",
    "classify_hec_health",
    "classify_hec_response",
    "hec_time",
]

EVENT_PATH: Final = "/services/collector/event"
ACK_PATH: Final = "/services/collector/ack"
HEALTH_PATH: Final = "/services/collector/health"


# --- Replies (PROTOCOLS §6.6) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """HEC took the request (code 0); `ack_id` is set when the token has indexer acks."""

    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """HEC refused the request for one event's data (codes 6, 12, 13, 15).

    `index` is the zero-based `invalid-event-number`, when the reply carried a usable one.
    """

    index: int | None
    reason: str


HecOutcome = Accepted | InvalidEvent | TooLarge | RetryLater | Misconfigured


class _Action(Enum):
    """What an HEC error code asks the exporter to do (PROTOCOLS §6.6, §10.6)."""

    RETRY = "retry"
    CONFIG = "config"
    DATA = "data"


# code: (what to do, the documented text, what the operator should do)
HEC_CODES: Final[Mapping[int, tuple[_Action, str, str]]] = {
    1: (_Action.CONFIG, "Token disabled", "enable the HEC token"),
    2: (_Action.CONFIG, "Token is required", "set the HEC token"),
    3: (_Action.CONFIG, "Invalid authorization", "check the HEC token"),
    4: (_Action.CONFIG, "Invalid token", "check the HEC token"),
    5: (
        _Action.CONFIG,
        "No data",
        "the request body did not reach Splunk; check proxies on the way",
    ),
    6: (_Action.DATA, "Invalid data format", ""),
    7: (_Action.CONFIG, "Incorrect index", "allow the index for this token or change `index`"),
    8: (_Action.RETRY, "Internal server error", ""),
    9: (_Action.RETRY, "Server is busy", ""),
    10: (_Action.CONFIG, "Data channel is missing", "the token needs a channel (set `ack`)"),
    11: (_Action.CONFIG, "Invalid data channel", "the channel must be a GUID"),
    12: (_Action.DATA, "Event field is required", ""),
    13: (_Action.DATA, "Event field cannot be blank", ""),
    14: (_Action.CONFIG, "ACK is disabled", "set `ack` to false or enable acks on the token"),
    15: (_Action.DATA, "Error in handling indexed fields", ""),
    16: (_Action.CONFIG, "Query string authorization is not enabled", "check the endpoint URL"),
    17: (_Action.RETRY, "HEC is healthy", ""),
    18: (_Action.RETRY, "HEC is unhealthy, queues are full", ""),
    19: (_Action.RETRY, "HEC is unhealthy, ack service unavailable", ""),
    20: (_Action.RETRY, "HEC is unhealthy, queues are full, ack service unavailable", ""),
}


def _reply(body: bytes) -> dict[str, Any] | None:
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return reply if isinstance(reply, dict) else None


def _int_field(reply: Mapping[str, Any], key: str) -> int | None:
    value = reply.get(key)
    if type(value) is int and value >= 0:
        return value
    return None


def classify_hec_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None, *, now: float | None = None
) -> HecOutcome:
    """What an HEC reply to an event request means (PROTOCOLS §6.6, §10).

    | reply                                  | outcome                                   |
    | -------------------------------------- | ----------------------------------------- |
    | 2xx, code 0                            | Accepted(ackId or None)                   |
    | HTTP 413                               | TooLarge                                  |
    | codes 6, 12, 13, 15                    | InvalidEvent(invalid-event-number)        |
    | codes 1-5, 7, 10, 11, 14, 16           | Misconfigured (token, index, channel, …)  |
    | codes 8, 9, 17-20                      | RetryLater(Retry-After)                   |
    | no known code: 2xx                     | RetryLater (never success unparsed)       |
    | no known code: 408, 429, 5xx           | RetryLater(Retry-After)                   |
    | no known code: 3xx, other 4xx          | Misconfigured                             |
    """
    reply = _reply(body)
    code = None if reply is None else _int_field(reply, "code")
    peer_says = ""
    if reply is not None and isinstance(reply.get("text"), str):
        peer_says = peer_text(reply["text"].encode())
    if status == 413:
        return TooLarge(f"HEC answered HTTP 413 (request too large){_colon(peer_says)}")
    if reply is not None and code == 0 and 200 <= status < 300:
        return Accepted(_int_field(reply, "ackId"))
    if reply is not None and code is not None and code in HEC_CODES:
        kind, text, advice = HEC_CODES[code]
        reason = f"HEC code {code} ({peer_says or text})" + (f": {advice}" if advice else "")
        if kind is _Action.DATA:
            return InvalidEvent(_int_field(reply, "invalid-event-number"), reason)
        if kind is _Action.CONFIG:
            return Misconfigured(reason)
        return RetryLater(reason, parse_retry_after(header(headers, "Retry-After"), now=now))
    what = peer_says or peer_text(body)
    if 200 <= status < 300:
        return RetryLater(f"HTTP {status} without an HEC success reply{_colon(what)}")
    if status in (408, 429) or 500 <= status < 600:
        after = parse_retry_after(header(headers, "Retry-After"), now=now)
        return RetryLater(f"HEC answered HTTP {status}{_colon(what)}", after)
    if 300 <= status < 400:
        return Misconfigured(
            f"HEC answered a redirect (HTTP {status}); redirects are not followed: "
            "configure the final URL"
        )
    if 400 <= status < 500:
        return Misconfigured(f"HEC answered HTTP {status}{_colon(what)}")
    return RetryLater(f"HEC answered an unexpected HTTP {status}{_colon(what)}")


def _colon(text: str) -> str:
    return f": {text}" if text else ""


def classify_hec_ack(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    asked: Collection[int],
    now: float | None = None,
) -> frozenset[int] | RetryLater | Misconfigured:
    """The ackIds among `asked` that the `/ack` answer marks indexed, or why there are none.

    Only a 200 of the exact form `{"acks": {"<id>": true|false, ...}}` counts; anything else
    that parses as an HEC error is classified like an event reply (code 14 →
    `Misconfigured`), and an answer that cannot be parsed is `RetryLater`, never success.
    """
    if status != 200:
        outcome = classify_hec_response(status, body, headers, now=now)
        if isinstance(outcome, RetryLater | Misconfigured):
            return outcome
        return RetryLater(f"HEC answered /ack with HTTP {status}")
    reply = _reply(body)
    acks = None if reply is None else reply.get("acks")
    if not isinstance(acks, dict):
        return RetryLater(f"HEC sent an /ack answer that cannot be parsed: {peer_text(body, 80)}")
    done: set[int] = set()
    for key, value in acks.items():
        if (
            not (isinstance(key, str) and key.isascii() and key.isdigit())
            or type(value) is not bool
        ):
            return RetryLater(
                f"HEC sent an /ack answer that cannot be parsed: {peer_text(body, 80)}"
            )
        if value:
            done.add(int(key))
    return frozenset(done.intersection(asked))


def classify_hec_health(status: int, body: bytes) -> Delivered | RetryLater | Misconfigured:
    """What `/services/collector/health` says: 200 healthy; 5xx (codes 18-20) retry later;
    auth and other 4xx answers are classified like event replies."""
    if status == 200:
        return Delivered()
    outcome = classify_hec_response(status, body)
    if isinstance(outcome, RetryLater | Misconfigured):
        return outcome
    return RetryLater(f"HEC health answered HTTP {status}")


# --- Envelopes (PROTOCOLS §6.3, §10.5) ---------------------------------------------------


def hec_time(timestamp_us: int) -> str:
    """HEC `time`: epoch seconds with six fraction digits, never an exponent, never a float.

    Exact for every microsecond; before 1970 the sign applies to the whole number.
    """
    sign, us = ("-", -timestamp_us) if timestamp_us < 0 else ("", timestamp_us)
    return f"{sign}{us // 1_000_000}.{us % 1_000_000:06d}"


class HecEnvelope:
    """Writes one record as one HEC envelope; the metadata part is built once per destination."""

    def __init__(
        self,
        *,
        event_is_json: bool,
        host: str | None = None,
        source: str | None = None,
        sourcetype: str | None = None,
        index: str | None = None,
    ) -> None:
        fields = (("host", host), ("source", source), ("sourcetype", sourcetype), ("index", index))
        meta = "".join(f',"{k}":{orjson.dumps(v).decode()}' for k, v in fields if v)
        self._middle = meta + ',"event":'
        self._event_is_json = event_is_json

    def __call__(self, record: Record) -> bytes:
        """The envelope of `record`; raises `UnicodeEncodeError`/`TypeError` for bad text."""
        us = record.timestamp_us
        event = record.text if self._event_is_json else orjson.dumps(record.text).decode()
        if us < 0:
            return f'{{"time":{hec_time(us)}{self._middle}{event}}}'.encode()
        seconds, micros = divmod(us, 1_000_000)
        return f'{{"time":{seconds}.{micros:06d}{self._middle}{event}}}'.encode()


_Reply = tuple[int, bytes, Mapping[str, str]]


@dataclass(slots=True)
class _Batch:
    """What one `send` still has to do: parts to send, ackIds to await, envelopes refused."""

    todo: deque[Sequence[int]]
    pending: dict[int, float] = field(default_factory=dict)  # ackId -> when issued
    rejected: dict[int, str] = field(default_factory=dict)  # by envelope index


def _collector_base(url: URL) -> URL:
    path = url.path.rstrip("/")
    for suffix in (EVENT_PATH, "/services/collector"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return url.with_path(path or "/")


# --- Transport ---------------------------------------------------------------------------


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
        if base.scheme != "https" and not development:
            raise InvalidDestination("endpoint", "must be https:// (http only in development)")
        if not token or not token.isprintable() or any(c.isspace() for c in token):
            raise InvalidDestination("secret", "the HEC token is required, without spaces")
        if channel is not None:
            try:
                uuid.UUID(channel)
            except ValueError:
                raise InvalidDestination("channel", "must be a GUID") from None
        self._config = config
        self._development = development
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
        self._tls = TlsOptions(
            ca_file=config.ca_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
            fingerprint=config.fingerprint,
            server_name=config.server_name,
            verify=config.tls_verify,
        )

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(
                self._tls,
                timeout_s=self._config.timeout_s,
                development=self._development,
                limit=self._config.max_requests_in_flight + 1,  # + the /ack poll
                egress=self._egress,
            )
        return self._session

    async def _request(
        self, method: str, url: URL, body: bytes | None, headers: Mapping[str, str]
    ) -> _Reply:
        session = self._open()
        with map_errors(self._peer):
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                server_hostname=self._config.server_name,
            ) as response:
                return response.status, await read_bounded(response), response.headers

    def _compress(self, body: bytes) -> bytes:
        if not self._config.gzip:
            return body
        return gzip_body(body)

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Send `records` (in parts if needed), wait for acks if enabled, and classify."""
        if not records:
            return Delivered()
        try:
            return await self._send(records)
        except PeerFailure as failure:
            return failure.result

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
        batch = _Batch(todo=deque(range(start, end) for start, end in spans))
        in_flight: dict[asyncio.Future[_Reply], Sequence[int]] = {}
        try:
            while batch.todo or in_flight:
                while batch.todo and len(in_flight) < config.max_requests_in_flight:
                    if config.ack and len(batch.pending) + len(in_flight) >= config.ack_max_pending:
                        break
                    part = batch.todo.popleft()
                    body = self._compress(b"\n".join([items[k] for k in part]))
                    request = self._request("POST", self._event_url, body, self._post_headers)
                    in_flight[asyncio.ensure_future(request)] = part
                    await asyncio.sleep(0)  # let it start sending before the next is built
                if not in_flight:  # every slot is taken by an unacknowledged request
                    failure = await self._wait_for_acks(
                        batch.pending, keep=config.ack_max_pending - 1
                    )
                    if failure is not None:
                        return failure
                    continue
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: in_flight[f][0]):
                    part = in_flight.pop(future)
                    failure = await self._settle(
                        part, classify_hec_response(*future.result()), batch
                    )
                    if failure is not None:
                        return failure
        finally:  # a batch that ended early leaves nothing running or unobserved
            for future in in_flight:
                future.cancel()
            if in_flight:
                await asyncio.wait(in_flight)
            for future in in_flight:
                if not future.cancelled():
                    future.exception()
        if batch.pending:
            failure = await self._wait_for_acks(batch.pending, keep=0)
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
            batch.pending[outcome.ack_id] = self._monotonic()
            return None
        bad = outcome.index if isinstance(outcome, InvalidEvent) else None
        if bad is not None and bad < len(part):
            batch.rejected[part[bad]] = outcome.reason
            rest = [part[bad + 1 :]]
            if config.ack:  # an error reply acknowledges nothing: resend the prefix too
                rest.insert(0, part[:bad])
            batch.todo.extendleft(reversed([r for r in rest if r]))
            return None
        if isinstance(outcome, InvalidEvent | TooLarge):
            if len(part) == 1:
                batch.rejected[part[0]] = outcome.reason
            else:
                middle = len(part) // 2
                batch.todo.extendleft([part[middle:], part[:middle]])
            return None
        return outcome

    async def _wait_for_acks(
        self, pending: dict[int, float], *, keep: int
    ) -> RetryLater | Misconfigured | None:
        """Poll `/ack` until at most `keep` ackIds are pending; None when done.

        Waiting between polls is pacing, not retrying: nothing is resent here. An ackId
        older than `ack_timeout_s` makes the batch `RetryLater` (the pipeline resends it).
        """
        config = self._config
        while len(pending) > keep:
            asked = sorted(pending)
            status, answer, headers = await self._request(
                "POST", self._ack_url, orjson.dumps({"acks": asked}), self._headers
            )
            outcome = classify_hec_ack(status, answer, headers, asked=asked)
            if not isinstance(outcome, frozenset):
                return outcome
            for ack_id in outcome:
                del pending[ack_id]
            if len(pending) <= keep:
                break
            if self._monotonic() - min(pending.values()) >= config.ack_timeout_s:
                return RetryLater(
                    f"HEC did not acknowledge {len(pending)} request(s) within "
                    f"ack_timeout_s={config.ack_timeout_s:g}"
                )
            await asyncio.sleep(config.ack_poll_interval_s)
        return None

    async def check(self) -> DeliveryResult:
        """Probe `/health` (with `?ack=true` when acks are on), then the token.

        The token is checked with an empty event request, which HEC answers with code 5
        ("No data") only once the token (and channel) passed; no event is sent.
        """
        health_url = self._health_url.with_query(ack="true") if self._config.ack else None
        try:
            status, answer, _ = await self._request(
                "GET", health_url or self._health_url, None, self._headers
            )
            health = classify_hec_health(status, answer)
            if isinstance(health, RetryLater) or status in (401, 403):
                return health
            status, answer, headers = await self._request(
                "POST", self._event_url, b"", self._headers
            )
        except PeerFailure as failure:
            return failure.result
        reply = _reply(answer)
        if reply is not None and _int_field(reply, "code") in (0, 5):
            return Delivered()
        outcome = classify_hec_response(status, answer, headers)
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
