"""What the webhook and Splunk HEC transports share: their endpoint and TLS rules, the
aiohttp session, and the one place where foreign errors become delivery results.

`classify_as_peer_failure` is the edge (httpcore's idiom): inside it, any aiohttp, `ssl`,
socket or timeout error is classified and re-raised as `PeerFailure(result)`, which the
transport's `send`/`check` catches and returns. Nothing else from aiohttp leaves
`delivery/`.

Reasons never quote a URL: a webhook URL may carry a credential in its query string. What
the peer said is quoted only through `peer_text` (or, for a garbled response, whole), and
each transport passes every result through `scrub.scrub_result` with its own secrets, which
also cuts reasons to length.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from isal import isal_zlib
from yarl import URL

from xavyo_siem.delivery.base import Delivered, DeliveryResult, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.endpoints import check_host, split_url
from xavyo_siem.delivery.option_values import option_field
from xavyo_siem.delivery.scrub import scrub_reason, scrub_result
from xavyo_siem.delivery.tls import Fingerprint, TlsConfig, TlsFileError, client_context
from xavyo_siem.egress import EgressDenied, EgressGuard, GuardedResolver
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = [
    "PEER_TEXT_MAX_CHARS",
    "PeerFailure",
    "TooLarge",
    "cancel_all",
    "classify_as_peer_failure",
    "close_session",
    "cut_spans",
    "describe_peer",
    "gzip_body",
    "header",
    "open_session",
    "parse_retry_after",
    "peer_text",
    "read_bounded",
    "read_http_target",
    "refuse_plain_http",
    "send_classified",
]

PEER_TEXT_MAX_CHARS: Final = 300
# gzip level for request bodies, by ISA-L (levels 0-3): its level 1 takes about a fifth of
# the CPU of zlib's fastest level on audit JSON, and its output is smaller.
_GZIP_LEVEL: Final = 1
USER_AGENT: Final = "xavyo-siem/0.1"


def gzip_body(body: bytes) -> bytes:
    """`body` as one gzip member (`Content-Encoding: gzip`), by ISA-L at its level 1."""
    return isal_zlib.compress(body, _GZIP_LEVEL, 31)


@dataclass(frozen=True, slots=True)
class TooLarge:
    """The peer refused a request for its size (HTTP 413); the transport sends it in halves.

    Not a `DeliveryResult`: it never leaves a transport. A single record that is still too
    large becomes `Rejected`.
    """

    reason: str


class PeerFailure(Exception):
    """A foreign error, already classified; the transport returns `result`."""

    def __init__(self, result: RetryLater | Misconfigured) -> None:
        super().__init__(result)
        self.result = result


async def send_classified(
    send: Callable[[Sequence[Record]], Awaitable[DeliveryResult]],
    records: Sequence[Record],
    secrets: Iterable[str | None],
) -> DeliveryResult:
    """What an HTTP transport's `send` answers: nothing to send is `Delivered`; otherwise
    `send(records)`'s result, a `PeerFailure` it raised taken as its result, with `secrets`
    (and whatever the peer echoed of them) scrubbed from every reason."""
    if not records:
        return Delivered()
    try:
        result = await send(records)
    except PeerFailure as failure:
        result = failure.result
    return scrub_result(result, secrets)


def read_http_target(
    delivery_type: DeliveryType,
    endpoint: str,
    options: Mapping[str, object],
    *,
    development: bool,
) -> tuple[str, TlsConfig]:
    """The URL and TLS config of a webhook or HEC destination, checked.

    The URL is https:// (plain http:// in development mode only), with a host and
    without a fragment. The TLS options are those of `TlsConfig.from_options`, plus the
    HTTPS rule: a pinned `fingerprint` replaces the chain check (the session checks either
    a pin or a context, not both), so it cannot be combined with `ca_file` or `cert_file`.
    """
    scheme, host, _port, _rest, _url = split_url(endpoint)
    if scheme not in ("https", "http"):
        raise InvalidDestination(
            "endpoint", f"a {delivery_type.value} destination needs an https:// URL"
        )
    if scheme == "http" and not development:
        raise InvalidDestination(
            "endpoint",
            "must use https://; plain http is allowed only when XAVYO_SIEM_ENV=development",
        )
    if "#" in endpoint:
        raise InvalidDestination("endpoint", "must not contain a fragment (#...)")
    check_host(host, endpoint)
    tls = TlsConfig.from_options(
        options, delivery_type=delivery_type, endpoint=endpoint, development=development
    )
    if tls.fingerprint is not None and (tls.cert_file or tls.ca_file):
        raise InvalidDestination(
            option_field("fingerprint"),
            "over HTTPS a pinned certificate replaces the chain check: it cannot be"
            " combined with ca_file or cert_file",
        )
    return endpoint, tls


def refuse_plain_http(url: URL, *, development: bool) -> None:
    """Refuse to open a transport to a plain http:// URL outside development mode.

    Validation refused it already; this guards the one case validation cannot see, a
    config validated in development mode handed to a process that is not.
    """
    if url.scheme != "https" and not development:
        raise InvalidDestination("endpoint", "must be https:// (http only in development)")


class _PinnedCertificate(aiohttp.Fingerprint):
    """aiohttp's connect-time certificate pin, for SHA-256, SHA-384 and SHA-512."""

    def __init__(self, pin: Fingerprint) -> None:
        self._pin = pin
        self._fingerprint = pin.digest

    def check(self, transport: asyncio.Transport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is None:
            return
        seen = self._pin.of_certificate(sslobj.getpeercert(binary_form=True) or b"")
        if not self._pin.matches(seen):
            host, port, *_ = transport.get_extra_info("peername")
            raise aiohttp.ServerFingerprintMismatch(self._pin.digest, seen.digest, host, port)


def _peer_check(tls: TlsConfig) -> ssl.SSLContext | aiohttp.Fingerprint:
    """How the session checks its peer: a pinned certificate (when verifying), or the
    context of `tls.client_context`. Raises `TlsFileError` for a file that cannot load."""
    if tls.fingerprint is not None and tls.verify:
        return _PinnedCertificate(tls.fingerprint)
    return client_context(tls)


def open_session(
    tls: TlsConfig,
    *,
    timeout_s: float,
    limit: int = 4,
    egress: EgressGuard | None = None,
) -> aiohttp.ClientSession:
    """A session for one destination: its own connection pool, TLS settings and timeout.

    Must be called with a running event loop, inside `classify_as_peer_failure` (a CA or
    client certificate file that cannot be loaded is `Misconfigured`). Redirects are never
    followed (callers pass `allow_redirects=False`), cookies are not kept, and responses
    are not decompressed. With `egress` (the SSRF guard) host names are resolved through
    it, so only addresses it allows are connected to (SNI, certificate and Host header
    keep the name).
    """
    connector = aiohttp.TCPConnector(
        ssl=_peer_check(tls),
        limit=limit,
        enable_cleanup_closed=False,
        resolver=None if egress is None else GuardedResolver(egress),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT},
        skip_auto_headers=("Accept-Encoding",),
    )


def _os_detail(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror
    return type(exc).__name__


@contextmanager
def classify_as_peer_failure(peer: str) -> Iterator[None]:
    """Turn every aiohttp, `ssl`, socket and timeout error into `PeerFailure(result)`.

    `peer` (host:port, never a URL) names the destination in the reason. A certificate
    that does not verify, a pinned fingerprint that does not match, a TLS handshake the
    peer refused (wrong protocol version, no shared cipher, a plain-HTTP port), a CA or
    client certificate file that cannot be loaded and an invalid URL are `Misconfigured`;
    everything else (refused, reset, a handshake cut short, DNS, timeout, a garbled or
    truncated response) is `RetryLater`.
    """
    try:
        yield
    except TlsFileError as exc:
        raise PeerFailure(Misconfigured(str(exc))) from None
    except aiohttp.ServerFingerprintMismatch:
        raise PeerFailure(
            Misconfigured(f"TLS: the certificate of {peer} does not match the pinned fingerprint")
        ) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        detail = getattr(exc.certificate_error, "verify_message", None) or "not trusted"
        raise PeerFailure(
            Misconfigured(f"TLS: the certificate of {peer} does not verify ({detail})")
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise PeerFailure(
            Misconfigured(f"TLS: the certificate of {peer} does not verify ({exc.verify_message})")
        ) from None
    except aiohttp.ClientConnectorSSLError as exc:
        if isinstance(exc.os_error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            raise PeerFailure(
                RetryLater(f"{peer} closed the connection during the TLS handshake")
            ) from None
        reason = getattr(exc.os_error, "reason", None) or _os_detail(exc.os_error)
        raise PeerFailure(Misconfigured(f"TLS handshake with {peer} failed ({reason})")) from None
    except aiohttp.InvalidURL:
        raise PeerFailure(Misconfigured("the endpoint is not a valid URL")) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, EgressDenied):
            raise PeerFailure(Misconfigured(f"{peer}: {exc.os_error.reason}")) from None
        raise PeerFailure(
            RetryLater(f"cannot connect to {peer} ({_os_detail(exc.os_error)})")
        ) from None
    except aiohttp.ServerDisconnectedError:
        raise PeerFailure(RetryLater(f"{peer} closed the connection before answering")) from None
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise PeerFailure(RetryLater(f"{peer} did not answer in time")) from None
    except aiohttp.ClientPayloadError:
        raise PeerFailure(RetryLater(f"{peer} sent a truncated or garbled response body")) from None
    except aiohttp.ClientResponseError as exc:
        raise PeerFailure(
            RetryLater(f"{peer} sent an invalid HTTP response ({exc.message})")
        ) from None
    except aiohttp.ClientOSError as exc:
        raise PeerFailure(RetryLater(f"connection to {peer} failed ({_os_detail(exc)})")) from None
    except aiohttp.ClientError as exc:
        raise PeerFailure(RetryLater(f"HTTP to {peer} failed ({type(exc).__name__})")) from None
    except OSError as exc:
        raise PeerFailure(RetryLater(f"connection to {peer} failed ({_os_detail(exc)})")) from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None.

    A date in the past gives 0; a value that is neither form is ignored (None).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def peer_text(body: bytes, limit: int = PEER_TEXT_MAX_CHARS, *, secrets: Sequence[str] = ()) -> str:
    """A response body as a one-line reason: decoded, the transport's `secrets` and every
    credential shape removed (`scrub_reason`, over the whole body before it is cut), controls
    replaced, truncated to `limit` characters."""
    return scrub_reason(body.decode("utf-8", "replace"), secrets, limit=limit)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header value by case-insensitive name from any mapping (multidict or dict)."""
    if headers is None:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def describe_peer(url: URL) -> str:
    """`host:port` of a URL, for reasons and logs: the host in the ASCII form aiohttp
    connects to (`raw_host`; decoding an invalid IDNA label such as `xn--zz` would raise)."""
    return f"{url.raw_host}:{url.port}"


def cut_spans(
    sizes: Sequence[int], start: int, end: int, *, max_events: int, max_bytes: int
) -> list[tuple[int, int]]:
    """Cut `[start, end)` into consecutive spans of at most `max_events` items whose `sizes`
    add up to at most `max_bytes`; an item larger than `max_bytes` travels alone."""
    if sum(sizes[start:end]) <= max_bytes:  # only the count cuts
        return [(first, min(first + max_events, end)) for first in range(start, end, max_events)]
    out: list[tuple[int, int]] = []
    first = start
    total = 0
    for index in range(start, end):
        size = sizes[index]
        if index > first and (index - first >= max_events or total + size > max_bytes):
            out.append((first, index))
            first = index
            total = 0
        total += size
    if first < end:
        out.append((first, end))
    return out


async def read_bounded(response: aiohttp.ClientResponse, limit: int = 65_536) -> bytes:
    """The response body, or its first `limit` bytes when a peer sends more."""
    parts: list[bytes] = []
    total = 0
    while total < limit:
        part = await response.content.read(limit - total)
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


async def cancel_all(requests: Collection[asyncio.Future[Any]]) -> None:
    """Cancel the requests of a batch still in flight, wait until they stopped, and observe
    each one's exception (so none is logged as never retrieved)."""
    for future in requests:
        future.cancel()
    if requests:
        await asyncio.wait(requests)
    for future in requests:
        if not future.cancelled():
            future.exception()


async def close_session(session: aiohttp.ClientSession | None) -> None:
    """Close a session and its connections (TLS: close_notify); never raises."""
    if session is not None and not session.closed:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            await session.close()
