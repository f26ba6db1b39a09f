"""Webhook transport: HTTPS POST of a batch, signed the Standard Webhooks 1.0 way, and the
config of a webhook destination (`WebhookConfig`).

A batch is one JSON array (`body="json_array"`) or NDJSON (`body="ndjson"`) of the
records; JSON and ECS records are embedded as they are, other lines as JSON strings.

* `webhook-id` is `msg_` + the first 32 hex digits of SHA-256 over the batch's event ids
  (newline-joined), so a retry of the same batch carries the same id and a receiver can
  de-duplicate on it; `webhook-timestamp` is the integer Unix time of *this* attempt;
  `webhook-signature` lists one `v1,<base64 HMAC-SHA256>` per configured secret (several
  during a rotation). Signing and credentials are in `webhook_auth.py`.
* `classify_webhook_status` is the pure table: 2xx delivered; 408, 429 and 5xx retry
  (honouring `Retry-After`); 413 split; 3xx (never followed), 410 and other 4xx
  misconfigured with the body, truncated, as the reason.
"""

from __future__ import annotations

import base64
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, get_args

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
    TooLarge,
    classify_as_peer_failure,
    close_session,
    cut_spans,
    describe_peer,
    gzip_body,
    header,
    open_session,
    parse_retry_after,
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
    parse_bool,
    seconds,
)
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.delivery.tls import TLS_OPTIONS, TlsConfig
from xavyo_siem.delivery.webhook_auth import WebhookCredentials, sign_with_keys, webhook_id
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import DeliveryType

__all__ = [
    "WEBHOOK_OPTIONS",
    "WebhookConfig",
    "WebhookCredentials",
    "WebhookTransport",
    "classify_webhook_status",
]

WebhookBody = Literal["json_array", "ndjson"]

WEBHOOK_OPTIONS: Final = frozenset((*BATCH_OPTIONS, *TLS_OPTIONS, "body", "gzip", "timeout_s"))
_CONTENT_TYPES: Final[Mapping[WebhookBody, str]] = {
    "json_array": "application/json",
    "ndjson": "application/x-ndjson",
}
_body_choice: Final[Parser[WebhookBody]] = choice(*get_args(WebhookBody))
_timeout: Final = seconds(0.1, 300)


# --- Config ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """A webhook destination (the secret signs and authenticates; it is not here).

    `body` is the batch's shape, `gzip` compresses the request body, `timeout_s` bounds one
    request; `tls` applies over https://. The defaults are these fields' defaults.
    """

    delivery_type: DeliveryType = DeliveryType.WEBHOOK
    url: str
    body: WebhookBody = "json_array"
    gzip: bool = False
    timeout_s: float = 30.0
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch_max_events: int = 100
    batch_max_bytes: int = 256 << 10
    start: str = "now"

    @classmethod
    def from_options(
        cls, endpoint: str, options: Mapping[str, object], *, development: bool
    ) -> WebhookConfig:
        """The config of a webhook destination, or InvalidDestination naming the field.

        `options` holds only names of `WEBHOOK_OPTIONS` (checked before).
        """
        url, tls = read_http_target(
            DeliveryType.WEBHOOK, endpoint, options, development=development
        )
        read = OptionReader(options, cls)
        return cls(
            url=url,
            body=read("body", _body_choice),
            gzip=read("gzip", parse_bool),
            timeout_s=read("timeout_s", _timeout),
            tls=tls,
            **read.batch(),
        )


# --- Classification ---------------------------------------------------------------------


def classify_webhook_status(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    now: float | None = None,
    secrets: Sequence[str] = (),
) -> DeliveryResult | TooLarge:
    """What a webhook receiver's answer means for the batch.

    | status            | result                                          |
    | ----------------- | ----------------------------------------------- |
    | 2xx               | Delivered                                       |
    | 408, 429, 5xx     | RetryLater(after_s from Retry-After)            |
    | 413               | TooLarge (the transport sends the halves)        |
    | 3xx               | Misconfigured (redirects are not followed)      |
    | 410               | Misconfigured, disable (the receiver asks to be disabled) |
    | other 4xx         | Misconfigured, the body (truncated) as reason   |
    | anything else     | RetryLater                                      |

    The body is quoted through `peer_text`, without `secrets` (the transport's credentials)
    or anything shaped like a credential.
    """
    text = peer_text(body, secrets=secrets)
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
        return Misconfigured(
            f"webhook receiver answered HTTP 410 Gone: endpoint disabled{suffix}", disable=True
        )
    if 400 <= status < 500:
        return Misconfigured(f"webhook receiver answered HTTP {status}{suffix}")
    return RetryLater(f"webhook receiver answered an unexpected HTTP {status}{suffix}")


# --- Transport ---------------------------------------------------------------------------


class WebhookTransport:
    """Posts batches to one webhook receiver and classifies its answers.

    A `send` may make several requests: the batch is cut by `batch_max_events` and
    `batch_max_bytes` (uncompressed), and a part answered with 413 is sent again as two
    halves (a different request, not a retry; a single record still too large is
    rejected). The first part that fails otherwise decides the result, and the pipeline
    resends the whole batch: parts already accepted then arrive again, with the same
    `webhook-id`, so a receiver that de-duplicates drops them.

    `event_is_json` is True for the `json` and `ecs` formats (records are JSON objects) and
    False for `cef`/`syslog`/`leef` (records are lines, sent as JSON strings). With `gzip`,
    the body is sent with `Content-Encoding: gzip` and the signature covers the uncompressed
    body, which is what the receiver's application reads.
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
        refuse_plain_http(url, development=development)
        self._config = config
        self._credentials = credentials or WebhookCredentials()
        self._event_is_json = event_is_json
        self._ndjson = config.body == "ndjson"
        self._url = url
        self._peer = describe_peer(url)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._egress = egress  # the SSRF guard (xavyo_siem.egress); None in some tests
        self._auth = self._auth_headers(self._credentials)
        # removed from every reason (scrub.py), with the header values as sent
        self._secrets = (*self._credentials.secret_values(), *self._auth.values())
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
                self._config.tls, timeout_s=self._config.timeout_s, egress=self._egress
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
        return await send_classified(self._send, records, self._secrets)

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
            headers["webhook-signature"] = sign_with_keys(
                self._credentials.keys, msg_id, timestamp, body
            )
        if self._config.gzip:
            body = gzip_body(body)
        with classify_as_peer_failure(self._peer):
            session = self._open()
            async with session.post(
                self._url,
                data=body,
                headers=headers,
                allow_redirects=False,
                server_hostname=self._config.tls.server_name,
            ) as response:
                answer = await read_bounded(response, 16_384)
                return classify_webhook_status(
                    response.status, response.headers, answer, secrets=self._secrets
                )

    async def check(self) -> DeliveryResult:
        """Probe the receiver with an unsigned `OPTIONS` request (no event is sent).

        Any HTTP answer proves DNS, TCP, TLS and HTTP work: 2xx-4xx is `Delivered`, except
        410 and redirects (`Misconfigured`); 408, 429 and 5xx are `RetryLater`.
        """
        return scrub_result(await self._check(), self._secrets)

    async def _check(self) -> DeliveryResult:
        try:
            with classify_as_peer_failure(self._peer):
                session = self._open()
                async with session.options(
                    self._url,
                    headers=self._auth,
                    allow_redirects=False,
                    server_hostname=self._config.tls.server_name,
                ) as response:
                    answer = await read_bounded(response, 16_384)
                    status = response.status
                    headers = response.headers
        except PeerFailure as failure:
            return failure.result
        result = classify_webhook_status(status, headers, answer, secrets=self._secrets)
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
