"""The pure part of the Azure Monitor Logs Ingestion API (Microsoft Sentinel) and of the
Microsoft Entra ID client-credentials token: request bodies and what the answers mean.

* `ingestion_item`: one JSON-object record as one element of the request's array, with
  `TimeGenerated` set from the event's own time; `array_body` joins elements into the body
  (always a JSON array, UTF-8);
* `token_form` and `read_token_reply`: the OAuth 2.0 client-credentials request (RFC 6749
  §4.4) and Entra ID's answer, `{"token_type":"Bearer","expires_in":3599,...}`;
* `classify_ingestion`: an ingestion answer by HTTP status, as the Logs Ingestion API
  documents them (204 accepted; 401/403 the token or its role; 413 too large; 429 and 5xx
  later, honouring `Retry-After`; 400 the data, or the request when it names the stream or
  rule).

No I/O, no clock: the transport (`sentinel.py`) passes the time in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Final
from urllib.parse import urlencode

import orjson

from xavyo_siem.delivery.base import Delivered, Misconfigured, RetryLater
from xavyo_siem.delivery.http import TooLarge, header, parse_retry_after, peer_text
from xavyo_siem.speedups import EPOCH

__all__ = [
    "API_VERSION",
    "MAX_CALL_BYTES",
    "TIME_GENERATED",
    "BadData",
    "IngestionOutcome",
    "NotAccepted",
    "Token",
    "array_body",
    "azure_error",
    "classify_ingestion",
    "ingestion_item",
    "read_token_reply",
    "time_generated",
    "token_form",
]

API_VERSION: Final = "2023-01-01"
# The service limit is "1 MB per call"; its 413 names 1,048,576 bytes. Keeping the
# uncompressed array at or under 1,000,000 bytes satisfies every reading of it.
MAX_CALL_BYTES: Final = 1_000_000
TIME_GENERATED: Final = "TimeGenerated"
_TIME_KEY: Final = b'"TimeGenerated"'
# A token is renewed this long before it expires (at half its life when it lives shorter).
RENEW_BEFORE_S: Final = 300.0
# 400 answers whose error names the request, not a record: the stream, the rule, the API
# version, the body's encoding or type. Sending any record again would get the same answer.
_REQUEST_ERRORS: Final = (
    "stream",
    "datacollectionrule",
    "data collection rule",
    "apiversion",
    "api-version",
    "api version",
    "contentencoding",
    "content-encoding",
    "contenttype",
    "content-type",
    "gzip",
)


# --- Records -----------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _second_text(epoch_s: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of a whole epoch second (cached: a batch's events share few)."""
    t = EPOCH + timedelta(seconds=epoch_s)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def time_generated(timestamp_us: int) -> str:
    """Epoch microseconds as ISO 8601 UTC with exactly six fraction digits and `Z`
    (`2026-01-05T13:20:11.123456Z`), the form every table plan accepts."""
    seconds, micros = divmod(timestamp_us, 1_000_000)
    return f"{_second_text(seconds)}.{micros:06d}Z"


def ingestion_item(text: str, timestamp_us: int) -> bytes:
    """One record (a JSON object's text) as an element of the request array, UTF-8.

    `TimeGenerated` is put first, from the event's time, unless the object has a top-level
    `TimeGenerated` of its own. Raises `ValueError` when `text` is not one JSON object (a
    text format) and `UnicodeEncodeError` when it is not valid UTF-8.
    """
    raw = text.encode()
    if not (raw.startswith(b"{") and raw.endswith(b"}")):
        raise ValueError("the record is not a JSON object")
    if _TIME_KEY in raw:
        value = orjson.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("the record is not a JSON object")
        if TIME_GENERATED in value:
            return raw
    stamp = b'{"TimeGenerated":"' + time_generated(timestamp_us).encode() + b'"'
    inner = raw[1:-1].strip()
    return stamp + (b"," + raw[1:] if inner else b"}")


def array_body(items: Sequence[bytes]) -> bytes:
    """The request body: the elements as one JSON array."""
    return b"[" + b",".join(items) + b"]"


# --- Token -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """An access token, and when (on the caller's monotonic clock) to fetch the next one."""

    access_token: str
    renew_at: float


def token_form(*, client_id: str, client_secret: str, scope: str) -> bytes:
    """The form body of a client-credentials token request (x-www-form-urlencoded)."""
    return urlencode(
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "client_credentials",
            "scope": scope,
        }
    ).encode()


def _oauth_error(body: bytes, secrets: Sequence[str]) -> str:
    """`error: error_description` of an OAuth error answer (RFC 6749 §5.2), or the body."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        description = value.get("error_description")
        text = value["error"] + (f": {description}" if isinstance(description, str) else "")
        return peer_text(text.encode(), secrets=secrets)
    return peer_text(body, secrets=secrets)


def read_token_reply(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None,
    *,
    now: float,
    secrets: Sequence[str] = (),
) -> Token | RetryLater | Misconfigured:
    """What the token endpoint's answer means.

    | answer                                     | result                               |
    | ------------------------------------------ | ------------------------------------ |
    | 200 with `access_token` and `expires_in`   | Token, renewed 5 min before expiry   |
    | 200 without them (not a token endpoint?)   | RetryLater                           |
    | 400, 401, 403, 404 (client, secret, scope, tenant) | Misconfigured, the OAuth error |
    | 408, 429, 5xx                              | RetryLater (Retry-After)             |
    | anything else                              | RetryLater                           |

    `now` is the caller's monotonic time; `expires_in` may be a number or a decimal string.
    """
    where = "the token endpoint (Microsoft Entra ID)"
    if status == 200:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = None
        token = value.get("access_token") if isinstance(value, dict) else None
        expires = value.get("expires_in") if isinstance(value, dict) else None
        if isinstance(expires, str) and expires.strip().isdigit():
            expires = int(expires)
        kind = value.get("token_type", "Bearer") if isinstance(value, dict) else None
        usable = isinstance(token, str) and token and token.isprintable() and " " not in token
        if (
            usable
            and isinstance(kind, str)
            and kind.lower() == "bearer"
            and isinstance(expires, int | float)
            and not isinstance(expires, bool)
            and expires > 0
        ):
            lifetime = float(expires)
            renew_in = max(lifetime - RENEW_BEFORE_S, lifetime / 2)
            return Token(str(token), now + renew_in)
        return RetryLater(f"{where} answered 200 without a bearer token and its lifetime")
    reason = _oauth_error(body, secrets)
    suffix = f": {reason}" if reason else ""
    if status in (408, 429) or 500 <= status < 600:
        after = parse_retry_after(header(headers, "Retry-After"))
        return RetryLater(f"{where} answered HTTP {status}{suffix}", after)
    if status in (400, 401, 403, 404):
        return Misconfigured(
            f"{where} refused the client credentials (HTTP {status}){suffix}; check options"
            " tenant, client_id and authority_host, and the secret"
        )
    return RetryLater(f"{where} answered an unexpected HTTP {status}{suffix}")


# --- Ingestion answers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotAccepted:
    """401 or 403: the token, or the app's role on the rule; fetch a new token once."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class BadData:
    """400 about the data: a record is at fault; the transport halves the request to find it."""

    reason: str


IngestionOutcome = Delivered | RetryLater | Misconfigured | TooLarge | NotAccepted | BadData


def azure_error(body: bytes) -> tuple[str, str]:
    """`(code, message)` of an Azure error body `{"error":{"code":…,"message":…}}`, or
    empty strings."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", ""
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else "",
        message if isinstance(message, str) else "",
    )


def _is_request_error(code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    return any(word in text for word in _REQUEST_ERRORS)


def classify_ingestion(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    now: float | None = None,
    secrets: Sequence[str] = (),
) -> IngestionOutcome:
    """What a Logs Ingestion API answer means for the request.

    | status        | result                                                         |
    | ------------- | -------------------------------------------------------------- |
    | 2xx (204)     | Delivered                                                      |
    | 400           | Misconfigured if the error names the stream, rule, API version,  |
    |               | content type or encoding; else BadData (a record's data)         |
    | 401, 403      | NotAccepted (the transport renews the token once)              |
    | 404           | Misconfigured (no such rule or endpoint)                       |
    | 413           | TooLarge (the transport sends the halves)                      |
    | 408, 429, 5xx | RetryLater, after Retry-After                                  |
    | 3xx           | Misconfigured (redirects are not followed)                     |
    | other 4xx     | Misconfigured                                                  |
    | anything else | RetryLater                                                     |

    Reasons quote the error's code and message (or the body) through `peer_text`.
    """
    code, message = azure_error(body)
    said = f"{code}: {message}" if code and message else code or message
    detail = peer_text(said.encode() if said else body, secrets=secrets)
    suffix = f" ({detail})" if detail else ""
    what = f"the Logs Ingestion API answered HTTP {status}{suffix}"
    if 200 <= status < 300:
        return Delivered()
    if status in (408, 429) or 500 <= status < 600:
        return RetryLater(what, parse_retry_after(header(headers, "Retry-After"), now=now))
    if status == 413:
        return TooLarge(what)
    if status in (401, 403):
        return NotAccepted(status, what)
    if status == 400:
        if _is_request_error(code, message):
            return Misconfigured(f"{what}; check options dcr_immutable_id and stream")
        return BadData(what)
    if status == 404:
        return Misconfigured(f"{what}; check the endpoint and option dcr_immutable_id")
    if 300 <= status < 400:
        return Misconfigured(f"{what}; redirects are not followed: configure the final endpoint")
    if 400 <= status < 500:
        return Misconfigured(what)
    return RetryLater(what)
