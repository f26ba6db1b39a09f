"""The pure part of the Splunk HTTP Event Collector protocol: what its replies mean and how
an event is written.

* `classify_hec_response`: event replies, by Splunk's documented status codes (`HEC_CODES`);
* `classify_hec_ack`: `/ack` answers (one that cannot be parsed is never success);
* `classify_hec_health`: `/services/collector/health` answers;
* `hec_time` and `HecEnvelope`: one record as one HEC event envelope.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import orjson

from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.http import TooLarge, header, parse_retry_after, peer_text

__all__ = [
    "HEC_CODES",
    "Accepted",
    "HecEnvelope",
    "HecEventRejected",
    "HecOutcome",
    "HecReply",
    "classify_hec_ack",
    "classify_hec_health",
    "classify_hec_response",
    "hec_reply_code",
    "hec_time",
]


# --- Replies ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """HEC took the request (code 0); `ack_id` is set when the token has indexer acks."""

    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class HecEventRejected:
    """HEC refused the request for one event's data (codes 6, 12, 13, 15).

    `index` is the zero-based `invalid-event-number`, when the reply carried a usable one.
    """

    index: int | None
    reason: str


HecReply = tuple[int, bytes, Mapping[str, str]]
"""An HEC answer as the classifiers take it: HTTP status, body, headers."""

HecOutcome = Accepted | HecEventRejected | TooLarge | RetryLater | Misconfigured


class _Action(Enum):
    """What an HEC error code asks the exporter to do: retry, fix a setting, or drop the
    event whose data HEC refused."""

    RETRY = "retry"
    CONFIG = "config"
    DATA = "data"


# Splunk's documented HEC status codes.
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


_TOKEN_DISABLED: Final = 1  # the token was switched off in Splunk: switch the destination off


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


def hec_reply_code(body: bytes) -> int | None:
    """The `code` of an HEC JSON reply, or None when the body is not one."""
    reply = _reply(body)
    return None if reply is None else _int_field(reply, "code")


def classify_hec_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
    secrets: Sequence[str] = (),
) -> HecOutcome:
    """What an HEC reply to an event request means (Splunk's HEC status codes, `HEC_CODES`).

    | reply                                  | outcome                                   |
    | -------------------------------------- | ----------------------------------------- |
    | 2xx, code 0                            | Accepted(ackId or None)                   |
    | HTTP 413                               | TooLarge                                  |
    | codes 6, 12, 13, 15                    | HecEventRejected(invalid-event-number)    |
    | codes 1-5, 7, 10, 11, 14, 16           | Misconfigured (token, index, channel, …)  |
    | code 1 (token disabled)                | Misconfigured, disable: switch it off     |
    | codes 8, 9, 17-20                      | RetryLater(Retry-After)                   |
    | no known code: 2xx                     | RetryLater (never success unparsed)       |
    | no known code: 408, 429, 5xx           | RetryLater(Retry-After)                   |
    | no known code: 3xx, other 4xx          | Misconfigured                             |

    What HEC said is quoted through `peer_text`, without `secrets` (the token) or anything
    shaped like a credential.
    """
    reply = _reply(body)
    code = None if reply is None else _int_field(reply, "code")
    peer_says = ""
    if reply is not None and isinstance(reply.get("text"), str):
        peer_says = peer_text(reply["text"].encode(), secrets=secrets)
    if status == 413:
        return TooLarge(f"HEC answered HTTP 413 (request too large){_colon(peer_says)}")
    if reply is not None and code == 0 and 200 <= status < 300:
        return Accepted(_int_field(reply, "ackId"))
    if reply is not None and code is not None and code in HEC_CODES:
        kind, text, advice = HEC_CODES[code]
        reason = f"HEC code {code} ({peer_says or text})" + (f": {advice}" if advice else "")
        if kind is _Action.DATA:
            return HecEventRejected(_int_field(reply, "invalid-event-number"), reason)
        if kind is _Action.CONFIG:
            return Misconfigured(reason, disable=code == _TOKEN_DISABLED)
        return RetryLater(reason, parse_retry_after(header(headers, "Retry-After"), now=now))
    what = peer_says or peer_text(body, secrets=secrets)
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
    secrets: Sequence[str] = (),
) -> frozenset[int] | RetryLater | Misconfigured:
    """The ackIds among `asked` that the `/ack` answer marks indexed, or why there are none.

    Only a 200 of the exact form `{"acks": {"<id>": true|false, ...}}` counts; anything else
    that parses as an HEC error is classified like an event reply (code 14 →
    `Misconfigured`), and an answer that cannot be parsed is `RetryLater`, never success.
    """
    if status != 200:
        outcome = classify_hec_response(status, body, headers, now=now, secrets=secrets)
        if isinstance(outcome, RetryLater | Misconfigured):
            return outcome
        return RetryLater(f"HEC answered /ack with HTTP {status}")
    reply = _reply(body)
    acks = None if reply is None else reply.get("acks")
    if not isinstance(acks, dict):
        return RetryLater(
            f"HEC sent an /ack answer that cannot be parsed: {peer_text(body, 80, secrets=secrets)}"
        )
    done: set[int] = set()
    for key, value in acks.items():
        if (
            not (isinstance(key, str) and key.isascii() and key.isdigit())
            or type(value) is not bool
        ):
            return RetryLater(
                "HEC sent an /ack answer that cannot be parsed:"
                f" {peer_text(body, 80, secrets=secrets)}"
            )
        if value:
            done.add(int(key))
    return frozenset(done.intersection(asked))


def classify_hec_health(
    status: int, body: bytes, *, secrets: Sequence[str] = ()
) -> Delivered | RetryLater | Misconfigured:
    """What `/services/collector/health` says: 200 healthy; 5xx (codes 18-20) retry later;
    auth and other 4xx answers are classified like event replies."""
    if status == 200:
        return Delivered()
    outcome = classify_hec_response(status, body, secrets=secrets)
    if isinstance(outcome, RetryLater | Misconfigured):
        return outcome
    return RetryLater(f"HEC health answered HTTP {status}")


# --- Envelopes --------------------------------------------------------------------------


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
