"""What the webhook and Splunk HEC transports share: TLS settings, the aiohttp session, and
the one place where foreign errors become delivery results.

`map_errors` is the edge (httpcore's idiom): inside it, any aiohttp, `ssl`, socket or
timeout error is classified and re-raised as `PeerFailure(result)`, which the transport's
`send`/`check` catches and returns. Nothing else from aiohttp leaves `delivery/`.

Reasons never quote a URL: a webhook URL may carry a credential in its query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import logging
import ssl
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import aiohttp
from yarl import URL

from xavyo_siem.delivery.base import Misconfigured, RetryLater
from xavyo_siem.delivery.options import Fingerprint
from xavyo_siem.egress import EgressDenied, EgressGuard, GuardedResolver
from xavyo_siem.errors import InvalidDestination

__all__ = [
    "PEER_TEXT_MAX_CHARS",
    "PeerFailure",
    "TlsOptions",
    "TooLarge",
    "close_session",
    "cut_spans",
    "describe_peer",
    "gzip_body",
    "header",
    "map_errors",
    "open_session",
    "parse_retry_after",
    "peer_text",
    "read_bounded",
]

log = logging.getLogger("xavyo_siem.delivery")

PEER_TEXT_MAX_CHARS: Final = 300
# gzip level for request bodies: level 1 costs a fifth of the CPU of level 6 for most of
# its ratio on JSON.
_GZIP_LEVEL: Final = 1
USER_AGENT: Final = "xavyo-siem/0.1"


def gzip_body(body: bytes) -> bytes:
    """`body` as a gzip member (`Content-Encoding: gzip`), at the fast level 1."""
    packer = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    return packer.compress(body) + packer.flush()


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


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How an HTTPS transport checks its peer.

    `ca_file` replaces the system trust store; `cert_file`/`key_file` present a client
    certificate; `fingerprint` pins the peer's exact certificate (SHA-256/384/512 of its DER
    form) *instead of* checking the chain and host name, which is how a self-signed Splunk
    certificate is trusted: it is checked right after the handshake, before a byte of the
    request is sent. `server_name` is the name sent in SNI and checked against the
    certificate. `verify=False` is honoured only in development mode.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    fingerprint: Fingerprint | None = None
    server_name: str | None = None
    verify: bool = True


class _PinnedCertificate(aiohttp.Fingerprint):
    """aiohttp's connect-time certificate pin, for SHA-256, SHA-384 and SHA-512."""

    def __init__(self, pin: Fingerprint) -> None:
        self._algorithm = pin.algorithm.lower()
        self._fingerprint = pin.digest
        if hashlib.new(self._algorithm).digest_size != len(pin.digest):
            raise InvalidDestination("options.fingerprint", "the digest length does not match")

    def check(self, transport: asyncio.Transport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is None:
            return
        cert = sslobj.getpeercert(binary_form=True) or b""
        got = hashlib.new(self._algorithm, cert).digest()
        if not hmac.compare_digest(got, self._fingerprint):
            host, port, *_ = transport.get_extra_info("peername")
            raise aiohttp.ServerFingerprintMismatch(self._fingerprint, got, host, port)


def _ssl_for(tls: TlsOptions, *, development: bool) -> ssl.SSLContext | aiohttp.Fingerprint:
    if not tls.verify and not development:
        raise InvalidDestination(
            "options.tls_verify", "may be false only when XAVYO_SIEM_ENV=development"
        )
    if tls.fingerprint is not None and tls.verify and tls.cert_file is None:
        return _PinnedCertificate(tls.fingerprint)
    if tls.fingerprint is not None and tls.verify:
        raise InvalidDestination(
            "options.fingerprint", "cannot be combined with a client certificate over HTTPS"
        )
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file is not None:
            # Never let OpenSSL prompt on the terminal for a pass phrase: an encrypted key
            # fails to load (and the destination is misconfigured) instead of hanging.
            context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_pass_phrase)
    except (OSError, ValueError) as exc:
        field = "options.ca_file" if tls.cert_file is None else "options.cert_file"
        raise InvalidDestination(field, f"cannot be loaded ({type(exc).__name__})") from None
    if not tls.verify:
        log.warning("TLS verification is OFF for an HTTP destination (development mode)")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _no_pass_phrase() -> bytes:
    return b""


def open_session(
    tls: TlsOptions,
    *,
    timeout_s: float,
    development: bool,
    limit: int = 4,
    egress: EgressGuard | None = None,
) -> aiohttp.ClientSession:
    """A session for one destination: its own connection pool, TLS settings and timeout.

    Must be called with a running event loop. Redirects are never followed (callers pass
    `allow_redirects=False`), cookies are not kept, and responses are not decompressed.
    With `egress` (the SSRF guard) host names are resolved through it, so only addresses
    it allows are connected to (SNI, certificate and Host header keep the name).
    """
    connector = aiohttp.TCPConnector(
        ssl=_ssl_for(tls, development=development),
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
def map_errors(peer: str) -> Iterator[None]:
    """Turn every aiohttp, `ssl`, socket and timeout error into `PeerFailure(result)`.

    `peer` (host:port, never a URL) names the destination in the reason. A certificate
    that does not verify, a pinned fingerprint that does not match, a TLS handshake the
    peer refused (wrong protocol version, no shared cipher, a plain-HTTP port) and an
    invalid URL are `Misconfigured`; everything else (refused, reset, a handshake cut short,
    DNS, timeout, a garbled or truncated response) is `RetryLater`.
    """
    try:
        yield
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
            RetryLater(f"{peer} sent an invalid HTTP response ({exc.message[:80]})")
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


def peer_text(body: bytes, limit: int = PEER_TEXT_MAX_CHARS) -> str:
    """A response body as a one-line reason: decoded, controls replaced, truncated."""
    text = body[: limit * 4].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    if len(text) > limit:
        return text[: limit - 1] + "…"
    return text


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
    """`host:port` of a URL, for reasons and logs."""
    return f"{url.host}:{url.port}"


def cut_spans(
    sizes: Sequence[int], start: int, end: int, *, max_events: int, max_bytes: int
) -> list[tuple[int, int]]:
    """Cut `[start, end)` into consecutive spans of at most `max_events` items whose `sizes`
    add up to at most `max_bytes`; an item larger than `max_bytes` travels alone."""
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


async def close_session(session: aiohttp.ClientSession | None) -> None:
    """Close a session and its connections (TLS: close_notify); never raises."""
    if session is not None and not session.closed:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            await session.close()
