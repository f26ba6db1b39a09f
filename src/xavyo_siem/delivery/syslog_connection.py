"""One open syslog TCP or TLS connection, and watching it: a syslog receiver never answers,
so any byte, FIN or RST it sends is noticed, and a batch counts as written only once the
receiver's TCP has acknowledged every byte of it.

Acknowledgement is read from the socket's kernel send queue (`SIOCOUTQ`, Linux); where that
cannot be measured only the user-space buffers are trusted. What a receiver had acknowledged
but not yet read when it closed is the one loss TCP cannot report.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from typing import Final

from xavyo_siem.delivery.base import Misconfigured, RetryLater
from xavyo_siem.delivery.scrub import scrub_reason
from xavyo_siem.delivery.syslog_errors import SyslogFailure

__all__ = ["StreamConnection", "StreamWatcher"]

# Polling for "every byte acknowledged": first yield to the loop, then back off to this cap.
_POLL_FIRST_S: Final = 0.0002
_POLL_MAX_S: Final = 0.01
_GARBAGE_SHOWN: Final = 40  # characters of what the peer sent quoted in the reason
_GARBAGE_KEPT: Final = 1024  # bytes kept to scrub before quoting (a credential cut in two)


class StreamWatcher(asyncio.Protocol):
    """Watches a syslog connection: it should never receive a byte, only FIN or errors."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.closed: asyncio.Future[None] = loop.create_future()
        self.error: BaseException | None = None
        self.eof = False
        self.received = 0
        self.first_bytes = b""

    def data_received(self, data: bytes) -> None:
        if len(self.first_bytes) < _GARBAGE_KEPT:
            self.first_bytes += data[: _GARBAGE_KEPT - len(self.first_bytes)]
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


class StreamConnection:
    """One open TCP or TLS connection and what is needed to watch it."""

    def __init__(
        self,
        protocol: StreamWatcher,
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
        self.fresh = True  # nothing written on it yet

    def gone_reason(self) -> str | None:
        """Why the connection cannot carry another batch, or None if it looks healthy.

        Non-blocking: looks at what the event loop saw, then peeks at the socket itself,
        so a FIN or RST that arrived since the last batch is seen even if the loop has not
        run the transport's callbacks yet.
        """
        proto = self.protocol
        self.tls_input_pending = False
        if proto.received:
            raise SyslogFailure(self.garbage())
        if proto.closed.done() or proto.eof:
            error = proto.error
            return "peer closed the connection" if error is None else f"connection lost: {error}"
        try:
            peek = self.probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            return "peer reset the connection"
        except OSError as exc:
            return f"connection broken: {exc.strerror or exc}"
        if peek == b"":
            return "peer closed the connection"
        if not self.tls:
            with contextlib.suppress(OSError):
                peek = self.probe.recv(_GARBAGE_KEPT, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            raise SyslogFailure(self.garbage(peek))
        self.tls_input_pending = True  # TLS records (an alert, a ticket) not yet processed
        return None

    def garbage(self, peeked: bytes = b"") -> Misconfigured:
        proto = self.protocol
        said = (proto.first_bytes or peeked).decode("utf-8", "replace")
        shown = scrub_reason(said, limit=_GARBAGE_SHOWN)
        return Misconfigured(
            f"the peer sent data ({shown!r}); a syslog receiver never answers,"
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
                raise SyslogFailure(
                    RetryLater(
                        "peer closed the connection before acknowledging the whole batch"
                        if error is None
                        else f"connection lost before the whole batch was acknowledged: {error}"
                    )
                )
            if proto.received:
                raise SyslogFailure(self.garbage())
            if self.pending_bytes() == 0:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                unacknowledged = self.pending_bytes()
                raise SyslogFailure(
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
