"""Syslog transports: RFC 6587 over TCP, RFC 5425 over TLS and RFC 5426 over UDP.

`SyslogTransport(config)` speaks the protocol its `SyslogConfig` names. It classifies and
never sleeps between attempts, retries or counts failures; the pipeline does that.

TCP and TLS keep one persistent connection. A batch is framed (`framing.py`), written in
one piece, and reported `Delivered` only once every byte of it has been acknowledged by the
receiver's TCP stack (the socket's send queue, `SIOCOUTQ`, is empty), so a receiver that
goes away with part of a batch still in our buffers makes the batch `RetryLater` instead of
silently losing it. Before each batch the connection is checked without blocking: a peer
that closed (FIN), reset (RST) or sent bytes (a syslog receiver never answers) is noticed
before anything is written into a dead connection, and a new connection is opened. What a
receiver had acknowledged but not yet read when it closed is the one loss that TCP cannot
report; docs/delivery.md states the window.

Every foreign error (`OSError`, `ssl.SSLError`, `TimeoutError`) is translated in one place,
`map_errors`, into `RetryLater` (the peer may accept the same batch later: refused, reset,
timed out, unreachable, name not resolved) or `Misconfigured` (nothing will be accepted
until someone changes a setting: certificate chain, host name, expiry, pinned fingerprint,
a TLS alert or close by the peer refusing our client certificate, unreadable key files, a
peer that answers with data and so is not a syslog receiver).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import hmac
import logging
import os
import socket
import ssl
import struct
import termios
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any, Final

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
)
from xavyo_siem.delivery.framing import (
    FramingError,
    encode_utf8,
    fit_datagram,
    frame_lf,
    frame_octet,
)
from xavyo_siem.delivery.options import SyslogConfig, TlsClientConfig
from xavyo_siem.egress import EgressDenied, EgressGuard, check_egress

__all__ = ["SyslogTransport", "classify_error", "map_errors"]

log = logging.getLogger("xavyo_siem.delivery")

# Polling for "every byte acknowledged": first yield to the loop, then back off to this cap.
_POLL_FIRST_S: Final = 0.0002
_POLL_MAX_S: Final = 0.01
# After a TLS handshake, how long to watch for a peer that refuses our client certificate:
# TLS 1.3 (and rsyslog's gtls driver even on TLS 1.2) decide *after* the client's side of
# the handshake is complete and then close without an alert. At least this long, or three
# times the handshake's own duration, capped by the configured timeout.
_TLS_SETTLE_MIN_S: Final = 0.1
_TLS_SETTLE_MAX_S: Final = 1.0
_GARBAGE_SHOWN: Final = 40

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


class _Failure(Exception):
    """A condition this module detected itself, carrying its classified result."""

    def __init__(self, result: RetryLater | Misconfigured) -> None:
        super().__init__(result.reason)
        self.result = result


def classify_error(exc: BaseException, where: str) -> RetryLater | Misconfigured | None:
    """The result for a foreign error raised while `where` (e.g. "connect to tcp://h:514").

    Returns None for anything that is not an I/O error (a bug must not pass as a result).
    """
    if isinstance(exc, _Failure):
        return exc.result
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
    if isinstance(exc, ConnectionError):
        detail = exc.strerror or str(exc) or type(exc).__name__
        return RetryLater(f"{where}: connection lost: {detail}")
    if isinstance(exc, OSError):
        return RetryLater(f"{where}: {exc.strerror or exc}")
    return None


class map_errors:
    """Translate foreign errors raised in a `with` block into a result (httpcore style).

    After the block, `result` holds the classified `RetryLater` / `Misconfigured`, or None
    if the block finished normally. Errors that are not I/O errors propagate unchanged.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.result: RetryLater | Misconfigured | None = None

    def __enter__(self) -> map_errors:
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


class _StreamProtocol(asyncio.Protocol):
    """Watches a syslog connection: it should never receive a byte, only FIN or errors."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.closed: asyncio.Future[None] = loop.create_future()
        self.error: BaseException | None = None
        self.eof = False
        self.received = 0
        self.first_bytes = b""

    def data_received(self, data: bytes) -> None:
        if len(self.first_bytes) < _GARBAGE_SHOWN:
            self.first_bytes += data[: _GARBAGE_SHOWN - len(self.first_bytes)]
        self.received += len(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None  # let the transport close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        if not self.closed.done():
            self.closed.set_result(None)


def _unsent_bytes(sock: socket.socket) -> int:
    """Bytes in the kernel send queue not yet acknowledged by the peer (Linux SIOCOUTQ)."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    value: int = struct.unpack("i", raw)[0]
    return value


class _Connection:
    """One open TCP or TLS connection and what is needed to watch it."""

    def __init__(
        self,
        protocol: _StreamProtocol,
        tcp: asyncio.Transport,
        app: asyncio.Transport,
        probe: socket.socket,
        *,
        tls: bool,
    ) -> None:
        self.protocol = protocol
        self.tcp = tcp
        self.app = app
        self.probe = probe
        self.tls = tls
        self.measure_outq = True
        self.tls_input_pending = False

    def gone_reason(self) -> str | None:
        """Why the connection cannot carry another batch, or None if it looks healthy.

        Non-blocking: looks at what the event loop saw, then peeks at the socket itself,
        so a FIN or RST that arrived since the last batch is seen even if the loop has not
        run the transport's callbacks yet.
        """
        proto = self.protocol
        self.tls_input_pending = False
        if proto.received:
            raise _Failure(self.garbage())
        if proto.closed.done() or proto.eof:
            error = proto.error
            return "peer closed the connection" if error is None else f"connection lost: {error}"
        try:
            peek = self.probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            log.warning(
                "syslog receiver reset the connection while idle: anything it had"
                " acknowledged but not yet read when it closed is lost (TCP loss window)"
            )
            return "peer reset the connection"
        except OSError as exc:
            return f"connection broken: {exc.strerror or exc}"
        if peek == b"":
            return "peer closed the connection"
        if not self.tls:
            with contextlib.suppress(OSError):
                peek = self.probe.recv(_GARBAGE_SHOWN, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            raise _Failure(self.garbage(peek))
        self.tls_input_pending = True  # TLS records (an alert, a ticket) not yet processed
        return None

    def garbage(self, peeked: bytes = b"") -> Misconfigured:
        proto = self.protocol
        shown = (proto.first_bytes or peeked)[:_GARBAGE_SHOWN]
        return Misconfigured(
            f"the peer sent data ({shown!r}...); a syslog receiver never answers,"
            " so the endpoint is probably not a syslog listener"
        )

    def kernel_unacknowledged(self) -> int:
        """Bytes the peer's TCP has not acknowledged (-1 when that cannot be measured).

        Still valid after the transport closed: `probe` is a duplicate of the socket's
        descriptor and keeps the socket (and its send queue) alive until it is closed.
        """
        if not self.measure_outq:
            return -1
        try:
            return _unsent_bytes(self.probe)
        except OSError:
            return -1

    def pending_bytes(self) -> int:
        pending = self.app.get_write_buffer_size()
        if self.tls:
            pending += self.tcp.get_write_buffer_size()
        if self.measure_outq:
            try:
                pending += _unsent_bytes(self.probe)
            except OSError:  # not Linux: trust the user-space buffers only
                self.measure_outq = False
        return pending

    async def flushed(self, deadline: float) -> None:
        """Wait until every written byte is acknowledged by the peer's TCP, or fail."""
        loop = asyncio.get_running_loop()
        proto = self.protocol
        delay = 0.0
        while True:
            if proto.closed.done():
                error = proto.error
                if error is None and self.kernel_unacknowledged() == 0:
                    # A clean close (FIN, no RST) after every byte was acknowledged: the
                    # peer read the whole batch before closing. It is delivered.
                    return
                raise _Failure(
                    RetryLater(
                        "peer closed the connection before acknowledging the whole batch"
                        if error is None
                        else f"connection lost before the whole batch was acknowledged: {error}"
                    )
                )
            if proto.received:
                raise _Failure(self.garbage())
            if self.pending_bytes() == 0:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                unacknowledged = self.pending_bytes()
                raise _Failure(
                    RetryLater(
                        f"the peer did not acknowledge the batch in time ({unacknowledged}"
                        " bytes still unacknowledged): it stopped reading or the network stalls"
                    )
                )
            if delay == 0.0:
                await asyncio.sleep(0)
                delay = _POLL_FIRST_S
            else:
                await asyncio.wait((proto.closed,), timeout=min(delay, remaining))
                delay = min(delay * 2, _POLL_MAX_S)

    def abort(self) -> None:
        self.app.abort()
        if self.tls:
            self.tcp.abort()
        self.probe.close()

    async def close(self, timeout_s: float) -> None:
        """Close cleanly (TLS: close_notify after the last record), abort on timeout."""
        try:
            self.app.close()
            await asyncio.wait_for(asyncio.shield(self.protocol.closed), timeout_s)
        except (OSError, TimeoutError):
            pass
        finally:
            if not self.protocol.closed.done():
                self.abort()
            self.probe.close()


class _StreamSender:
    """RFC 6587 (TCP) and RFC 5425 (TLS) over one persistent connection."""

    def __init__(
        self,
        config: SyslogConfig,
        key_password: str | bytes | None,
        egress: EgressGuard | None = None,
    ) -> None:
        self.config = config
        self.egress = egress
        self.tls = (config.tls or TlsClientConfig()) if config.protocol == "tls" else None
        self.frame = frame_lf if config.framing == "lf" else frame_octet
        self.key_password = key_password
        self.where = f"syslog {config.endpoint}"
        self.conn: _Connection | None = None
        self._context: ssl.SSLContext | None = None
        if self.tls is not None and not self.tls.verify:
            log.warning("TLS verification is OFF for %s (development mode only)", self.where)

    # -- connection --------------------------------------------------------------------------

    def _ssl_context(self, tls: TlsClientConfig) -> ssl.SSLContext:
        if self._context is not None:
            return self._context
        pinned_only = tls.fingerprint is not None and tls.ca_file is None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.verify and not pinned_only:
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            if tls.ca_file is not None:
                ctx.load_verify_locations(cafile=tls.ca_file)
            elif ctx.verify_mode == ssl.CERT_REQUIRED:
                ctx.load_default_certs()
        except (OSError, ValueError) as exc:
            raise _Failure(
                Misconfigured(f"ca_file: cannot load {tls.ca_file}: {_describe(exc)}")
            ) from None
        if tls.cert_file is not None:
            try:
                # With no password, answer OpenSSL's pass-phrase request with nothing rather
                # than let it prompt on the terminal: an encrypted key then fails to load.
                password = self.key_password if self.key_password is not None else b""
                ctx.load_cert_chain(tls.cert_file, tls.key_file, password=password)
            except (OSError, ValueError) as exc:
                raise _Failure(
                    Misconfigured(
                        f"cert_file/key_file: cannot load the client certificate"
                        f" {tls.cert_file}: {_describe(exc)}"
                    )
                ) from None
        self._context = ctx
        return ctx

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        config = self.config
        protocol = _StreamProtocol(loop)
        context = self._ssl_context(self.tls) if self.tls is not None else None
        started = loop.time()
        try:
            tcp = await asyncio.wait_for(self._open_tcp(loop, protocol), config.timeout_s)
        except TimeoutError:
            raise _Failure(
                RetryLater(f"connect to {self.where}: no answer within {config.timeout_s:g} s")
            ) from None
        sock = tcp.get_extra_info("socket")
        probe = socket.socket(fileno=os.dup(sock.fileno()))
        app: asyncio.Transport = tcp
        try:
            if self.tls is not None and context is not None:
                handshake_started = loop.time()
                upgraded = await loop.start_tls(
                    tcp,
                    protocol,
                    context,
                    server_hostname=self.tls.server_name or config.host,
                    ssl_handshake_timeout=max(0.1, config.timeout_s - (loop.time() - started)),
                    ssl_shutdown_timeout=config.timeout_s,
                )
                if upgraded is None:  # pragma: no cover - only for a closed transport
                    raise ConnectionResetError("connection closed during the TLS handshake")
                app = upgraded
                conn = _Connection(protocol, tcp, app, probe, tls=True)
                self._check_fingerprint(conn)
                await self._settle(conn, loop.time() - handshake_started)
                return conn
            return _Connection(protocol, tcp, app, probe, tls=False)
        except BaseException:
            app.abort()
            tcp.abort()
            probe.close()
            raise

    async def _open_tcp(
        self, loop: asyncio.AbstractEventLoop, protocol: _StreamProtocol
    ) -> asyncio.Transport:
        """Connect; with the SSRF guard, only to addresses of this resolution that it allows."""
        config = self.config
        if self.egress is None:
            tcp, _ = await loop.create_connection(lambda: protocol, config.host, config.port)
            return tcp
        failure: OSError | None = None
        for family, kind, proto, _, address in await check_egress(
            config.host, config.port, self.egress
        ):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            except BaseException:
                sock.close()
                raise
            tcp, _ = await loop.create_connection(lambda: protocol, sock=sock)
            return tcp
        assert failure is not None
        raise failure

    def _check_fingerprint(self, conn: _Connection) -> None:
        assert self.tls is not None
        pinned = self.tls.fingerprint
        if pinned is None:
            return
        ssl_object = conn.app.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise _Failure(Misconfigured(f"{self.where}: the TLS peer sent no certificate"))
        seen = hashlib.new(pinned.algorithm, der).digest()
        if not hmac.compare_digest(seen, pinned.digest):
            shown = ":".join(f"{b:02X}" for b in seen)
            raise _Failure(
                Misconfigured(
                    f"{self.where}: the peer's certificate {pinned.algorithm.upper()}:{shown}"
                    " does not match the pinned fingerprint option"
                )
            )

    async def _settle(self, conn: _Connection, handshake_s: float) -> None:
        """Give a peer that refuses our client certificate the chance to say so."""
        settle_s = min(
            max(_TLS_SETTLE_MIN_S, 3 * handshake_s), _TLS_SETTLE_MAX_S, self.config.timeout_s
        )
        await asyncio.wait((conn.protocol.closed,), timeout=settle_s)
        if conn.protocol.closed.done() or conn.protocol.eof:
            client = "our client certificate" if self.tls and self.tls.cert_file else "a client"
            raise _Failure(
                Misconfigured(
                    f"{self.where}: the peer closed the TLS connection right after the handshake:"
                    f" it does not accept {client} (set or fix cert_file/key_file, or the"
                    " receiver's list of permitted peers)"
                )
            )
        if conn.protocol.received:
            raise _Failure(conn.garbage())

    async def _live_connection(self) -> _Connection:
        conn = self.conn
        if conn is not None:
            try:
                reason = conn.gone_reason()
                if reason is None and conn.tls_input_pending:
                    # Let the TLS layer read what is waiting (a close_notify, say) first.
                    for _ in range(3):
                        await asyncio.sleep(0)
                    reason = conn.gone_reason()
            except _Failure:
                self._drop()
                raise
            if reason is None:
                return conn
            log.info("%s: %s; reconnecting before the next batch", self.where, reason)
            self._drop()
        self.conn = await self._connect()
        return self.conn

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()

    # -- the Transport interface -----------------------------------------------------------

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        frame = self.frame
        parts: list[bytes] = []
        rejected: dict[int, str] = {}
        for index, record in enumerate(records):
            try:
                parts.append(frame(encode_utf8(record.text)))
            except FramingError as exc:
                rejected[index] = str(exc)
        if parts:
            with map_errors(f"send to {self.where}") as failure:
                conn = await self._live_connection()
                loop = asyncio.get_running_loop()
                conn.app.write(b"".join(parts))
                await conn.flushed(loop.time() + self.config.timeout_s)
            if failure.result is not None:
                self._drop()
                return failure.result
        return Rejected(rejected) if rejected else Delivered()

    async def check(self) -> DeliveryResult:
        with map_errors(f"connect to {self.where}") as failure:
            await self._live_connection()
        if failure.result is not None:
            self._drop()
            return failure.result
        return Delivered()

    async def aclose(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(_Failure, OSError):
                await conn.flushed(loop.time() + self.config.timeout_s)
            await conn.close(self.config.timeout_s)
        except Exception:  # never raise from close; the connection is gone either way
            conn.abort()


class _DatagramSender:
    """RFC 5426: one message per datagram, no acknowledgement."""

    def __init__(self, config: SyslogConfig, egress: EgressGuard | None = None) -> None:
        self.config = config
        self.egress = egress
        self.where = f"syslog {config.endpoint}"
        self.sock: socket.socket | None = None
        self.truncated_count = 0

    async def _socket(self) -> socket.socket:
        if self.sock is not None:
            return self.sock
        loop = asyncio.get_running_loop()
        lookup: Awaitable[Sequence[tuple[Any, ...]]] = (
            loop.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_DGRAM)
            if self.egress is None
            else check_egress(
                self.config.host, self.config.port, self.egress, kind=socket.SOCK_DGRAM
            )
        )
        infos = await asyncio.wait_for(lookup, self.config.timeout_s)
        family, _, proto, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        return sock

    def _drop(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        limit = self.config.max_datagram_bytes
        rejected: dict[int, str] = {}
        with map_errors(f"send to {self.where}") as failure:
            sock = await self._socket()
            loop = asyncio.get_running_loop()
            for index, record in enumerate(records):
                try:
                    payload, truncated = fit_datagram(record.text, limit)
                except FramingError as exc:
                    rejected[index] = str(exc)
                    continue
                if truncated:
                    self.truncated_count += 1
                try:
                    sock.send(payload)
                except BlockingIOError:
                    await asyncio.wait_for(loop.sock_sendall(sock, payload), self.config.timeout_s)
                except OSError as exc:
                    if exc.errno != errno.EMSGSIZE:
                        raise
                    rejected[index] = f"the datagram is too large for the network path: {exc}"
        if failure.result is not None:
            self._drop()
            if isinstance(failure.result, RetryLater) and "refused" in failure.result.reason:
                return RetryLater(
                    failure.result.reason
                    + "; ICMP port unreachable: datagrams sent just before may have been dropped"
                )
            return failure.result
        return Rejected(rejected) if rejected else Delivered()

    async def check(self) -> DeliveryResult:
        with map_errors(f"connect to {self.where}") as failure:
            sock = await self._socket()
            pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if pending:
                raise OSError(pending, os.strerror(pending))
        if failure.result is not None:
            self._drop()
            return failure.result
        return Delivered()

    async def aclose(self) -> None:
        self._drop()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class SyslogTransport:
    """Sends RFC 5424 records to one syslog receiver over TCP, TLS or UDP.

    `config` comes from `validate_destination`; `key_password` decrypts an encrypted client
    key (`key_file`), if any. `truncated_count` counts UDP messages cut to fit
    `max_datagram_bytes` since the transport was made (always 0 for TCP and TLS).
    With `egress` (the SSRF guard, xavyo_siem.egress) every connect resolves the host
    afresh and connects only to addresses the guard allows (TLS still verifies the host
    name); a refused address is `Misconfigured`.
    """

    def __init__(
        self,
        config: SyslogConfig,
        *,
        key_password: str | bytes | None = None,
        egress: EgressGuard | None = None,
    ) -> None:
        self.config = config
        self._lock = asyncio.Lock()
        self._datagram: _DatagramSender | None = None
        self._stream: _StreamSender | None = None
        if config.protocol == "udp":
            self._datagram = _DatagramSender(config, egress)
        else:
            self._stream = _StreamSender(config, key_password, egress)

    @property
    def truncated_count(self) -> int:
        """How many UDP messages were truncated to fit `max_datagram_bytes`."""
        return 0 if self._datagram is None else self._datagram.truncated_count

    @property
    def connected(self) -> bool:
        """Whether a TCP/TLS connection (or a UDP socket) is currently open."""
        if self._stream is not None:
            return self._stream.conn is not None
        return self._datagram is not None and self._datagram.sock is not None

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Send `records` in order as one batch; see the module docstring for the results."""
        if not records:
            return Delivered()
        async with self._lock:
            if self._stream is not None:
                return await self._stream.send(records)
            assert self._datagram is not None
            return await self._datagram.send(records)

    async def check(self) -> DeliveryResult:
        """Connect (TLS: handshake, fingerprint, client acceptance) without sending an event.

        For UDP this only resolves the address and reports a pending ICMP error.
        """
        async with self._lock:
            if self._stream is not None:
                return await self._stream.check()
            assert self._datagram is not None
            return await self._datagram.check()

    async def aclose(self) -> None:
        """Wait for what is in flight, then close (TLS: close_notify); never raises."""
        async with self._lock:
            if self._stream is not None:
                await self._stream.aclose()
            elif self._datagram is not None:
                await self._datagram.aclose()
