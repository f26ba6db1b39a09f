"""Webhook transport: HTTPS POST of a batch, signed the Standard Webhooks 1.0 way (PROTOCOLS §7).

A batch is one JSON array (`body="json_array"`) or NDJSON (`body="ndjson"`) of the
records; JSON-format records are embedded as they are, CEF and syslog lines as JSON strings.

* `webhook-id` is `msg_` + the first 32 hex digits of SHA-256 over the batch's event ids
  (newline-joined), so a retry of the same batch carries the same id and a receiver can
  de-duplicate on it; `webhook-timestamp` is the integer Unix time of *this* attempt;
  `webhook-signature` lists one `v1,<base64 HMAC-SHA256>` per configured secret (several
  during a rotation).
* `classify_webhook_status` is the pure table: 2xx delivered; 408, 429 and 5xx retry
  (honouring `Retry-After`); 413 split; 3xx (never followed), 410 and other 4xx
  misconfigured with the body, truncated, as the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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
from xavyo_siem.delivery.options import WebhookConfig
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination

__all__ = [
    "WebhookCredentials",
    "WebhookTransport",
    "classify_webhook_status",
    "sign_webhook",
    "webhook_id",
    "webhook_key",
]

SECRET_PREFIX: Final = "whsec_"
_SECRET_MIN_BYTES: Final = 24
_SECRET_MAX_BYTES: Final = 64
_CONTENT_TYPES: Final = {"json_array": "application/json", "ndjson": "application/x-ndjson"}


# --- Standard Webhooks signing (PROTOCOLS §7.2) ------------------------------------------


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret: the base64-decoded bytes after the prefix.

    Raises `InvalidDestination("secret", ...)` (never quoting the secret) unless the secret
    has the prefix, is base64 (padding optional) and decodes to 24-64 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidDestination(
            "secret", f"a webhook signing secret must start with {SECRET_PREFIX}"
        )
    text = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDestination("secret", "the part after whsec_ must be base64") from None
    if not _SECRET_MIN_BYTES <= len(key) <= _SECRET_MAX_BYTES:
        raise InvalidDestination(
            "secret",
            f"must decode to {_SECRET_MIN_BYTES}-{_SECRET_MAX_BYTES} bytes, got {len(key)}",
        )
    return key


def _sign_with_keys(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode() for key in keys
    )


def sign_webhook(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>` per
    secret, space-separated, in the order given (PROTOCOLS §7.2)."""
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.'")
    return _sign_with_keys([webhook_key(s) for s in secrets], msg_id, timestamp, body)


def webhook_id(event_ids: Sequence[str]) -> str:
    """`msg_` + 32 hex digits of SHA-256 over the event ids: equal for equal batches."""
    digest = hashlib.sha256("\n".join(event_ids).encode()).hexdigest()
    return f"msg_{digest[:32]}"


# --- Classification (PROTOCOLS §7.3) -----------------------------------------------------


def classify_webhook_status(
    status: int, headers: Mapping[str, str] | None, body: bytes, *, now: float | None = None
) -> DeliveryResult | TooLarge:
    """What a webhook receiver's answer means for the batch.

    | status            | result                                          |
    | ----------------- | ----------------------------------------------- |
    | 2xx               | Delivered                                       |
    | 408, 429, 5xx     | RetryLater(after_s from Retry-After)            |
    | 413               | TooLarge (the transport sends the halves)        |
    | 3xx               | Misconfigured (redirects are not followed)      |
    | 410               | Misconfigured (the receiver asks to be disabled) |
    | other 4xx         | Misconfigured, the body (truncated) as reason   |
    | anything else     | RetryLater                                      |
    """
    text = peer_text(body)
    suffix = f": {text}" if text else ""
    if 200 <= status < 300:
        return Delivered()
    if status in (408, 429) or 500 <= status < 600:
        after = parse_retry_after(header(headers, "Retry-After"), now=now)
        return RetryLater(f"webhook receiver answered HTTP {status}{suffix}", after)
    if status == 413:
        return TooLarge(f"webhook receiver answered HTTP 413 (payload too large){suffix}")
    if 300 <= status < 400:
        location = "elsewhere" if header(headers, "Location") else "without a Location"
        return Misconfigured(
            f"webhook receiver redirected (HTTP {status}, {location}); redirects are not "
            "followed: configure the final URL"
        )
    if status == 410:
        return Misconfigured(f"webhook receiver answered HTTP 410 Gone: endpoint disabled{suffix}")
    if 400 <= status < 500:
        return Misconfigured(f"webhook receiver answered HTTP {status}{suffix}")
    return RetryLater(f"webhook receiver answered an unexpected HTTP {status}{suffix}")


# --- Credentials -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookCredentials:
    """The secret part of a webhook destination, checked on construction.

    `signing_secrets` are `whsec_` secrets, newest first (several during a rotation; empty
    means unsigned, though `webhook-id` and `webhook-timestamp` are still sent).
    Authentication is at most one of `bearer_token`, `basic_user` + `basic_password`, or
    the custom `auth_headers`. `repr` never shows a value.
    """

    signing_secrets: tuple[str, ...] = ()
    bearer_token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None
    auth_headers: tuple[tuple[str, str], ...] = ()
    keys: tuple[bytes, ...] = field(init=False, compare=False)

    def __repr__(self) -> str:
        return f"WebhookCredentials(<{len(self.signing_secrets)} signing secret(s), redacted>)"

    def __post_init__(self) -> None:
        schemes = (
            self.bearer_token is not None,
            self.basic_user is not None,
            bool(self.auth_headers),
        )
        if sum(schemes) > 1:
            raise InvalidDestination("secret", "use one of bearer, basic or custom-header auth")
        if (self.basic_user is None) != (self.basic_password is None):
            raise InvalidDestination("secret", "basic auth needs both a user and a password")
        for value in (self.bearer_token, self.basic_user, self.basic_password):
            if value is not None and (not value or not _one_line(value)):
                raise InvalidDestination("secret", "credentials must be non-empty single lines")
        if self.basic_user is not None and ":" in self.basic_user:
            raise InvalidDestination("secret", "a basic-auth user name may not contain ':'")
        for name, value in self.auth_headers:
            if not name or not name.isascii() or any(c in name for c in ":\r\n \t"):
                raise InvalidDestination("secret", "a custom auth header needs a valid name")
            if not _one_line(value):
                raise InvalidDestination("secret", f"custom header {name[:40]!r} must be one line")
            if name.lower().startswith("webhook-") or name.lower() in _RESERVED_HEADERS:
                raise InvalidDestination("secret", f"custom header {name[:40]!r} is reserved")
        object.__setattr__(self, "keys", tuple(webhook_key(s) for s in self.signing_secrets))

    @classmethod
    def from_secret(cls, secret: str | None) -> WebhookCredentials:
        """Read a destination's `secret`: whitespace-separated `whsec_` secrets, or a JSON
        object `{"signing_secrets": [...], "bearer_token": "...", "basic": {"user": "...",
        "password": "..."}, "headers": {"X-Api-Key": "..."}}` (every key optional)."""
        if secret is None or not secret.strip():
            return cls()
        text = secret.strip()
        if not text.startswith("{"):
            return cls(signing_secrets=tuple(text.split()))
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise InvalidDestination(
                "secret", "is neither whsec_ secrets nor a JSON object"
            ) from None
        if not isinstance(data, dict) or not data.keys() <= _SECRET_KEYS:
            raise InvalidDestination(
                "secret", f"a JSON secret may hold only {', '.join(sorted(_SECRET_KEYS))}"
            )
        basic = data.get("basic") or {}
        headers = data.get("headers") or {}
        signing = data.get("signing_secrets") or []
        if (
            not isinstance(basic, dict)
            or not isinstance(headers, dict)
            or not isinstance(signing, list)
            or not all(isinstance(v, str) for v in (*signing, *headers.values()))
            or not all(isinstance(v, str) for v in basic.values())
            or not isinstance(data.get("bearer_token", ""), str)
        ):
            raise InvalidDestination("secret", "a JSON secret holds strings only")
        return cls(
            signing_secrets=tuple(signing),
            bearer_token=data.get("bearer_token"),
            basic_user=basic.get("user"),
            basic_password=basic.get("password"),
            auth_headers=tuple(headers.items()),
        )


def _one_line(value: str) -> bool:
    return value.isprintable()


_RESERVED_HEADERS: Final = frozenset(("content-type", "content-encoding", "content-length", "host"))
_SECRET_KEYS: Final = frozenset(("signing_secrets", "bearer_token", "basic", "headers"))


# --- Transport ---------------------------------------------------------------------------


class WebhookTransport:
    """Posts batches to one webhook receiver and classifies its answers.

    A `send` may make several requests: the batch is cut by `batch_max_events` and
    `batch_max_bytes` (uncompressed), and a part answered with 413 is sent again as two
    halves (a different request, not a retry; a single record still too large is
    rejected). The first part that fails otherwise decides the result, and the pipeline
    resends the whole batch: parts already accepted then arrive again, with the same
    `webhook-id`, so a receiver that de-duplicates drops them.

    `event_is_json` is True for the `json` format (records are JSON objects) and False
    for `cef`/`syslog` (records are lines, sent as JSON strings). With `gzip`, the body is
    sent with `Content-Encoding: gzip` and the signature covers the uncompressed body,
    which is what the receiver's application reads.
    """

    def __init__(
        self,
        config: WebhookConfig,
        *,
        event_is_json: bool,
        credentials: WebhookCredentials | None = None,
        development: bool = False,
        clock: Callable[[], float] = time.time,
        egress: EgressGuard | None = None,
    ) -> None:
        url = URL(config.url)
        if url.scheme != "https" and not development:
            raise InvalidDestination("endpoint", "must be https:// (http only in development)")
        self._config = config
        self._credentials = credentials or WebhookCredentials()
        self._event_is_json = event_is_json
        self._ndjson = config.body == "ndjson"
        self._url = url
        self._peer = describe_peer(url)
        self._development = development
        self._clock = clock
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
        self._auth = self._auth_headers(self._credentials)
        self._headers = {"Content-Type": _CONTENT_TYPES[config.body], **self._auth}
        if config.gzip:
            self._headers["Content-Encoding"] = "gzip"

    @staticmethod
    def _auth_headers(credentials: WebhookCredentials) -> dict[str, str]:
        if credentials.bearer_token is not None:
            return {"Authorization": f"Bearer {credentials.bearer_token}"}
        if credentials.basic_user is not None and credentials.basic_password is not None:
            pair = f"{credentials.basic_user}:{credentials.basic_password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return dict(credentials.auth_headers)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(
                self._tls,
                timeout_s=self._config.timeout_s,
                development=self._development,
                egress=self._egress,
            )
        return self._session

    def _encode(self, record: Record) -> bytes:
        if not self._event_is_json:
            return orjson.dumps(record.text)
        item = record.text.encode()
        if self._ndjson and (b"\n" in item or b"\r" in item):
            item = orjson.dumps(orjson.loads(item))  # one line per event, whatever came in
        return item

    def _body(self, items: Sequence[bytes]) -> bytes:
        if self._ndjson:
            return b"\n".join(items) + b"\n"
        return b"[" + b",".join(items) + b"]"

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Post `records` (in parts if needed) and classify the outcome."""
        if not records:
            return Delivered()
        try:
            return await self._send(records)
        except PeerFailure as failure:
            return failure.result

    async def _send(self, records: Sequence[Record]) -> DeliveryResult:
        config = self._config
        rejected: dict[int, str] = {}
        items: list[bytes] = []
        positions: list[int] = []  # items[k] is the encoding of records[positions[k]]
        for position, record in enumerate(records):
            try:
                items.append(self._encode(record))
            except (UnicodeEncodeError, orjson.JSONDecodeError, TypeError):
                rejected[position] = "the record is not valid UTF-8 text or JSON"
                continue
            positions.append(position)
        sizes = [len(item) + 1 for item in items]
        todo: deque[Sequence[int]] = deque(
            range(start, end)
            for start, end in cut_spans(
                sizes,
                0,
                len(items),
                max_events=config.batch_max_events,
                max_bytes=config.batch_max_bytes,
            )
        )
        while todo:
            part = todo.popleft()
            msg_id = webhook_id([records[positions[k]].event_id for k in part])
            outcome = await self._post(msg_id, self._body([items[k] for k in part]))
            if isinstance(outcome, TooLarge):
                if len(part) == 1:
                    rejected[positions[part[0]]] = outcome.reason
                else:
                    middle = len(part) // 2
                    todo.extendleft([part[middle:], part[:middle]])
            elif not isinstance(outcome, Delivered):
                return outcome
        return Rejected(rejected) if rejected else Delivered()

    async def _post(self, msg_id: str, body: bytes) -> DeliveryResult | TooLarge:
        timestamp = int(self._clock())
        headers = dict(self._headers)
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        if self._credentials.keys:
            headers["webhook-signature"] = _sign_with_keys(
                self._credentials.keys, msg_id, timestamp, body
            )
        if self._config.gzip:
            body = gzip_body(body)
        session = self._open()
        with map_errors(self._peer):
            async with session.post(
                self._url,
                data=body,
                headers=headers,
                allow_redirects=False,
                server_hostname=self._config.server_name,
            ) as response:
                answer = await read_bounded(response, 16_384)
                return classify_webhook_status(response.status, response.headers, answer)

    async def check(self) -> DeliveryResult:
        """Probe the receiver with an unsigned `OPTIONS` request (no event is sent).

        Any HTTP answer proves DNS, TCP, TLS and HTTP work: 2xx-4xx is `Delivered`, except
        410 and redirects (`Misconfigured`); 408, 429 and 5xx are `RetryLater`.
        """
        session = self._open()
        try:
            with map_errors(self._peer):
                async with session.options(
                    self._url,
                    headers=self._auth,
                    allow_redirects=False,
                    server_hostname=self._config.server_name,
                ) as response:
                    answer = await read_bounded(response, 16_384)
                    status = response.status
                    headers = response.headers
        except PeerFailure as failure:
            return failure.result
        result = classify_webhook_status(status, headers, answer)
        if isinstance(result, RetryLater):
            return result
        if isinstance(result, Misconfigured) and (status == 410 or 300 <= status < 400):
            return result
        return Delivered()

    async def aclose(self) -> None:
        """Close the connection pool; never raises."""
        session, self._session = self._session, None
        await close_session(session)


if TYPE_CHECKING:

    def _implements_transport(transport: WebhookTransport) -> Transport:
        return transport
