"""How the syslog transports turn every foreign error into a delivery result.

`classify_error` is the table: `RetryLater` when the peer may accept the same batch later
(refused, reset, timed out, unreachable, name not resolved), `Misconfigured` when nothing
will be accepted until someone changes a setting (certificate chain, host name, expiry,
pinned fingerprint, a TLS alert or close by the peer refusing our client certificate,
unreadable key files, a peer that answers with data and so is not a syslog receiver, an
address the SSRF guard refuses). `capture_failure` applies it to a `with` block.
"""

from __future__ import annotations

import socket
import ssl
from types import TracebackType
from typing import Final

from xavyo_siem.delivery.base import Misconfigured, RetryLater
from xavyo_siem.delivery.tls import TlsFileError
from xavyo_siem.egress import EgressDenied

__all__ = ["SyslogFailure", "capture_failure", "classify_error"]

# ssl reason codes (OpenSSL) that no retry can fix: the peer or our own settings refuse.
_TLS_CONFIG_REASONS: Final = (
    "CERTIFICATE",
    "UNKNOWN_CA",
    "HANDSHAKE_FAILURE",
    "PROTOCOL_VERSION",
    "WRONG_VERSION_NUMBER",
    "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
    "NO_SHARED_CIPHER",
    "NO_CIPHERS",
    "INSUFFICIENT_SECURITY",
    "ACCESS_DENIED",
    "UNRECOGNIZED_NAME",
    "PEM_LIB",
    "KEY_VALUES_MISMATCH",
    "CA_MD_TOO_WEAK",
    "EE_KEY_TOO_SMALL",
    "DH_KEY_TOO_SMALL",
    "BAD_DECRYPT",
)


class SyslogFailure(Exception):
    """A condition the syslog transport detected itself, carrying its classified result."""

    def __init__(self, result: RetryLater | Misconfigured) -> None:
        super().__init__(result.reason)
        self.result = result


def classify_error(exc: BaseException, where: str) -> RetryLater | Misconfigured | None:
    """The result for a foreign error raised while `where` (e.g. "connect to tcp://h:514").

    Returns None for anything that is not an I/O error (a bug must not pass as a result).
    """
    if isinstance(exc, SyslogFailure):
        return exc.result
    if isinstance(exc, TlsFileError):
        return Misconfigured(str(exc))
    if isinstance(exc, EgressDenied):
        return Misconfigured(f"{where}: {exc.reason}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return Misconfigured(f"{where}: TLS certificate of the peer rejected: {detail}")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if any(code in reason for code in _TLS_CONFIG_REASONS):
            return Misconfigured(f"{where}: TLS refused: {reason}")
        return RetryLater(f"{where}: TLS error: {reason or exc}")
    if isinstance(exc, socket.gaierror):
        return RetryLater(f"{where}: cannot resolve the host name: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return RetryLater(f"{where}: connection refused (no receiver listening)")
    if isinstance(exc, TimeoutError):
        return RetryLater(f"{where}: timed out")
    if isinstance(exc, ConnectionAbortedError) and "SSL handshake" in str(exc):
        # asyncio's own words for a peer that never answered the TLS hello
        return RetryLater(
            f"{where}: the peer did not answer the TLS handshake in time; is it a TLS port? "
            "(a plain TCP receiver waits silently for a message)"
        )
    if isinstance(exc, ConnectionError):
        detail = exc.strerror or str(exc) or type(exc).__name__
        return RetryLater(f"{where}: connection lost: {detail}")
    if isinstance(exc, OSError):
        return RetryLater(f"{where}: {exc.strerror or exc}")
    return None


class capture_failure:
    """Capture a foreign error raised in a `with` block as its classified result.

    Lower-case, like `contextlib.suppress`: it is used as a `with` statement.

    After the block, `result` holds the `RetryLater` / `Misconfigured` of the error the
    block raised, or None if it finished normally. Errors that are not I/O errors
    propagate unchanged.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.result: RetryLater | Misconfigured | None = None

    def __enter__(self) -> capture_failure:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            return False
        self.result = classify_error(exc, self.where)
        return self.result is not None
