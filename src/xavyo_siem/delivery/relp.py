"""Syslog over RELP (rsyslog imrelp, librelp): every record acknowledged by the receiver.

One persistent connection carries one RELP session (`relp_protocol.py`): `open`, then one
`syslog` command per record, at most `window` unanswered, then `close`. `send(records)`
returns `Delivered` only when every record of the batch was answered `200 OK`. It
classifies and never sleeps between attempts or retries; the pipeline sends the whole batch
again after `RetryLater`. The transport remembers which records of the batch that failed
were answered 200, and when the same batch comes again it sends only the others: after a
break only the unanswered records go again (at least once: a record whose answer the break
cut off arrives twice), and a receiver that drops its session after every N messages still
gets every record, even when N is smaller than a batch.

* The connection breaks, the receiver sends `serverclose`, or no answer comes within
  `timeout_s` (a receiver that stops answering): `RetryLater` with the reason; the
  connection is dropped and the next batch opens a new session.
* The receiver answers anything but 200 to a syslog command, or refuses `open` (or does not
  offer the syslog command): `Misconfigured` with its text, a configuration alarm.
* The receiver breaks RELP (garbage, an answer out of order): `Misconfigured` with what
  was wrong.
* A record longer than `max_message_bytes` is `Rejected` with the reason and never sent:
  imrelp cuts a message longer than its `maxDataSize` and still answers 200.

With the `tls` option the connection is TLS from the first byte (librelp has no STARTTLS),
verified with the TLS options of `tls.py`; an anonymous TLS receiver (no certificate) fails
the handshake. Connecting (the SSRF guard), the fingerprint pin and the translation of
foreign errors are shared with the syslog TCP/TLS transport (`syslog_stream.py`,
`syslog_errors.py`). A session is closed and a new one opened long before its transaction
numbers run out. What the peer says reaches a reason only scrubbed (`scrub.py`): a receiver
that echoes the client key's password, or anything shaped like a credential, never puts it
into health, dead letters or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl
from collections.abc import Sequence
from importlib import metadata
from typing import Final

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
)
from xavyo_siem.delivery.framing import encode_utf8
from xavyo_siem.delivery.relp_protocol import (
    REOPEN_AFTER_TXNR,
    Acknowledged,
    CloseAnswered,
    Opened,
    Refused,
    RelpEvent,
    RelpProtocolError,
    RelpSession,
    ServerClosed,
    SessionState,
)
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.syslog_errors import SyslogFailure, capture_failure
from xavyo_siem.delivery.syslog_stream import check_fingerprint, open_tcp
from xavyo_siem.delivery.tls import client_context
from xavyo_siem.egress import EgressGuard

__all__ = ["RelpTransport"]

log = logging.getLogger("xavyo_siem.delivery")

# Unread answers kept before the connection stops reading (answers are a few bytes each, and
# at most `window` are due; only a misbehaving peer sends more).
_MAX_UNREAD_BYTES: Final = 1 << 20
# How many loop turns to wait, at most, for bytes the socket holds to reach the session.
_CATCH_UP_TURNS: Final = 8
_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)


def _software() -> str:
    try:
        version = metadata.version("xavyo-siem")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "0"
    return f"xavyo-siem,{version}"


class _Wire(asyncio.Protocol):
    """The bytes a RELP connection receives, kept until the transport reads them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.error: BaseException | None = None
        self.eof = False
        self._chunks: list[bytes] = []
        self._unread = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._sock: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._sock = transport.get_extra_info("socket")
        self._ack_quickly()

    def _ack_quickly(self) -> None:
        """Acknowledge the peer's next segment at once (Linux TCP_QUICKACK; the kernel
        clears it again, so it is set after every read). librelp writes its small answers
        with Nagle's algorithm on: without this, the answers that end a batch wait for our
        delayed ACK (about 40 ms per batch)."""
        if _QUICKACK is not None and self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def data_received(self, data: bytes) -> None:
        self._ack_quickly()
        self._chunks.append(data)
        self._unread += len(data)
        if self._unread > _MAX_UNREAD_BYTES and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def has_input(self) -> bool:
        """Whether bytes, an end of stream or an error arrived and were not looked at yet."""
        return bool(self._chunks) or self.gone

    @property
    def gone(self) -> bool:
        """Whether the peer closed or the connection broke (unread bytes may remain)."""
        return self.eof or self.closed.done()

    def take(self) -> bytes:
        """Everything received and not read yet."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._unread = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, timeout_s: float) -> None:
        """Return when bytes arrived or the connection ended, or after `timeout_s`."""
        if self._chunks or self.gone:
            return
        waiter = self._waiter = self.loop.create_future()
        await asyncio.wait((waiter,), timeout=timeout_s)


class _Connection:
    """One connection and the RELP session on it."""

    def __init__(
        self, wire: _Wire, tcp: asyncio.Transport, app: asyncio.Transport, session: RelpSession
    ) -> None:
        self.wire = wire
        self.tcp = tcp
        self.app = app
        self.session = session

    def abort(self) -> None:
        self.app.abort()
        if self.app is not self.tcp:
            self.tcp.abort()


class RelpTransport:
    """Sends RFC 5424 records to one RELP receiver (see the module docstring).

    `config` is a validated `syslog_relp` config; `key_password` decrypts an encrypted client
    key; `egress` is the SSRF guard (None only for tests and benchmarks on loopback).
    `sessions_opened` counts the sessions this transport opened.
    """

    def __init__(
        self,
        config: SyslogConfig,
        *,
        key_password: str | bytes | None = None,
        egress: EgressGuard | None = None,
        reopen_after_txnr: int = REOPEN_AFTER_TXNR,
    ) -> None:
        if config.protocol != "relp":
            raise ValueError(f"RelpTransport needs a syslog_relp config, got {config.protocol}")
        self.config = config
        self.egress = egress
        self.key_password = key_password
        # removed from every reason, with whatever the peer sent (scrub.py)
        self._secrets = (
            (key_password.decode("utf-8", "replace"),)
            if isinstance(key_password, bytes)
            else (key_password,)
        )
        self.reopen_after_txnr = reopen_after_txnr
        tls = " over TLS" if config.tls is not None else ""
        self.where = f"RELP {config.endpoint}{tls}"
        self.sessions_opened = 0
        self._software = _software()
        self._lock = asyncio.Lock()
        # The last batch that failed (its event ids) and its records answered 200 OK.
        self._answered_batch: tuple[str, ...] = ()
        self._answered: set[int] = set()
        self._conn: _Connection | None = None
        self._context: ssl.SSLContext | None = None

    @property
    def connected(self) -> bool:
        """Whether a session is open."""
        return self._conn is not None

    # -- the Transport interface -----------------------------------------------------------

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Send `records` in order as one batch; see the module docstring for the results."""
        if not records:
            return Delivered()
        limit = self.config.max_message_bytes
        messages: list[tuple[int, bytes]] = []
        rejected: dict[int, str] = {}
        batch = tuple(record.event_id for record in records)
        if batch != self._answered_batch:
            self._answered_batch, self._answered = batch, set()
        answered = self._answered
        for index, record in enumerate(records):
            if index in answered:
                continue  # the receiver acknowledged it before the session broke
            data = encode_utf8(record.text)
            if not data:
                rejected[index] = "empty record: a syslog message needs at least one octet"
            elif len(data) > limit:
                rejected[index] = (
                    f"the record is {len(data)} bytes, longer than max_message_bytes ({limit}):"
                    " a RELP receiver cuts a longer message and still acknowledges it; raise"
                    " max_message_bytes together with the receiver's maxMessageSize and"
                    " maxDataSize"
                )
            else:
                messages.append((index, data))
        if messages:
            async with self._lock:
                try:
                    with capture_failure(f"send to {self.where}") as failure:
                        await self._deliver(messages, records)
                except BaseException:  # cancelled, or a bug: the session's state is unknown
                    self._drop()
                    raise
                if failure.result is not None:
                    self._drop()
                    return scrub_result(failure.result, self._secrets)
        self._answered_batch, self._answered = (), set()
        return Rejected(rejected) if rejected else Delivered()

    async def check(self) -> DeliveryResult:
        """Connect and open a RELP session (TLS: handshake and verification) without an event."""
        async with self._lock:
            with capture_failure(f"connect to {self.where}") as failure:
                await self._live_connection()
            if failure.result is not None:
                self._drop()
                return scrub_result(failure.result, self._secrets)
        return Delivered()

    async def aclose(self) -> None:
        """Close the session (`close`, its answer, the server's close); never raises."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await self._close(conn)

    # -- sending ---------------------------------------------------------------------------

    async def _deliver(self, messages: list[tuple[int, bytes]], records: Sequence[Record]) -> None:
        """Send every message as a syslog command and wait until each one is answered 200."""
        conn = await self._live_connection()
        session = conn.session
        frames: list[bytes] = []  # written together: one write per window, not per record
        for index, data in messages:
            if not session.can_send:
                conn.app.write(b"".join(frames))
                frames.clear()
                while not session.can_send:
                    await self._answers(conn, records)
            frames.append(session.syslog(index, data))
        if frames:
            conn.app.write(b"".join(frames))
        while session.in_flight:
            await self._answers(conn, records)

    async def _answers(self, conn: _Connection, records: Sequence[Record]) -> None:
        """Wait for answers to the syslog commands in flight (at least one, or fail)."""
        session = conn.session
        for event in await self._receive(conn, "answer"):
            if isinstance(event, Acknowledged):
                self._answered.add(event.index)
                continue
            if isinstance(event, Refused) and event.index is not None:
                raise SyslogFailure(
                    Misconfigured(
                        f"{self.where}: the receiver refused event"
                        f" {records[event.index].event_id}: {event.reason[:200]}"
                    )
                )
            if isinstance(event, ServerClosed):
                raise SyslogFailure(
                    RetryLater(
                        f"{self.where}: the receiver closed the session (serverclose) with"
                        f" {session.in_flight} commands unanswered"
                    )
                )
            raise SyslogFailure(  # pragma: no cover - the session orders answers
                Misconfigured(f"{self.where}: unexpected {event} while sending")
            )

    async def _receive(self, conn: _Connection, what: str) -> list[RelpEvent]:
        """The next events from the peer: waits up to `timeout_s` for at least one frame."""
        wire, session = conn.wire, conn.session
        timeout_s = self.config.timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                events = session.receive(wire.take())
            except RelpProtocolError as exc:
                raise SyslogFailure(
                    Misconfigured(f"{self.where}: the peer does not speak RELP as expected: {exc}")
                ) from None
            if events:
                return events
            if wire.gone:
                if wire.error is not None and not isinstance(wire.error, ConnectionResetError):
                    raise wire.error  # classified by capture_failure (TLS alerts, ...)
                raise SyslogFailure(
                    RetryLater(
                        f"{self.where}: the connection "
                        + ("was reset" if wire.error is not None else "was closed by the peer")
                        + f" before the {what} ({session.in_flight} commands unanswered)"
                    )
                )
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise SyslogFailure(
                    RetryLater(
                        f"{self.where}: no {what} within {timeout_s:g} s"
                        f" ({session.in_flight} commands unanswered, window"
                        f" {session.window}): the receiver stopped answering"
                    )
                )
            await wire.wait(remaining)

    # -- the connection and its session -----------------------------------------------------

    async def _live_connection(self) -> _Connection:
        """The open session, or a new one if there is none, the peer closed it or it is worn."""
        conn = self._conn
        if conn is not None:
            await self._catch_up(conn)
            reason = self._gone_reason(conn)
            if reason is None and conn.session.worn_out:
                self._conn = None
                await self._close(conn)
                reason = "its transaction numbers are nearly spent; opening a new session"
            if reason is None:
                return conn
            log.info("%s: %s; opening a new session", self.where, reason)
            self._drop()
        self._conn = await self._open()
        return self._conn

    async def _catch_up(self, conn: _Connection) -> None:
        """Let the event loop deliver what the peer sent since the last batch (a serverclose,
        a FIN): while the socket is readable and nothing has reached the session yet, yield."""
        sock = conn.tcp.get_extra_info("socket")
        for _ in range(_CATCH_UP_TURNS):
            if conn.wire.has_input or sock is None:
                return
            try:
                readable, _, _ = select.select([sock.fileno()], [], [], 0)
            except (OSError, ValueError):
                return
            if not readable:
                return
            await asyncio.sleep(0)

    def _gone_reason(self, conn: _Connection) -> str | None:
        """Why an idle session cannot carry the next batch, or None."""
        try:
            events = conn.session.receive(conn.wire.take())
        except RelpProtocolError as exc:
            raise SyslogFailure(
                Misconfigured(f"{self.where}: the peer does not speak RELP as expected: {exc}")
            ) from None
        if any(isinstance(event, ServerClosed) for event in events):
            return "the receiver closed the session (serverclose)"
        if events:
            raise SyslogFailure(
                Misconfigured(f"{self.where}: unexpected answer between batches: {events[0]}")
            )
        if conn.wire.gone:
            return "the receiver closed the connection"
        return None

    async def _open(self) -> _Connection:
        """Connect (TLS: handshake, pinned fingerprint) and open a session."""
        config = self.config
        loop = asyncio.get_running_loop()
        wire = _Wire(loop)
        started = loop.time()
        try:
            tcp = await asyncio.wait_for(
                open_tcp(loop, wire, config.host, config.port, self.egress), config.timeout_s
            )
        except TimeoutError:
            raise SyslogFailure(
                RetryLater(f"connect to {self.where}: no answer within {config.timeout_s:g} s")
            ) from None
        app = tcp
        conn: _Connection | None = None
        try:
            if config.tls is not None:
                if self._context is None:
                    self._context = client_context(config.tls, key_password=self.key_password)
                upgraded = await loop.start_tls(
                    tcp,
                    wire,
                    self._context,
                    server_hostname=config.tls.server_name or config.host,
                    ssl_handshake_timeout=max(0.1, config.timeout_s - (loop.time() - started)),
                    ssl_shutdown_timeout=config.timeout_s,
                )
                if upgraded is None:  # pragma: no cover - only for a closed transport
                    raise ConnectionResetError("connection closed during the TLS handshake")
                app = upgraded
                wire.transport = app
                check_fingerprint(config.tls, app, self.where)
            session = RelpSession(
                software=self._software,
                window=config.window,
                reopen_after_txnr=self.reopen_after_txnr,
            )
            conn = _Connection(wire, tcp, app, session)
            app.write(session.open())
            await self._opened(conn)
        except BaseException:
            app.abort()
            tcp.abort()
            raise
        self.sessions_opened += 1
        return conn

    async def _opened(self, conn: _Connection) -> None:
        """Wait for the answer to `open`.

        Over TLS, a receiver that ends the connection or the session before answering has
        refused our client certificate (librelp checks it after the handshake): that is
        Misconfigured, not a transient failure.
        """
        events: list[RelpEvent] = []
        with capture_failure(f"open a session with {self.where}") as failure:
            events = await self._receive(conn, "answer to open")
        refused_us = (
            "over TLS this is how a receiver refuses our client certificate (set or fix"
            " cert_file/key_file, or the receiver's permitted peers)"
        )
        if failure.result is not None:
            if self.config.tls is not None and isinstance(failure.result, RetryLater):
                raise SyslogFailure(Misconfigured(f"{failure.result.reason}; {refused_us}"))
            raise SyslogFailure(failure.result)
        event = events[0]
        if isinstance(event, Opened):
            if len(events) > 1:
                raise SyslogFailure(
                    Misconfigured(f"{self.where}: unexpected {events[1]} after the open answer")
                )
            return
        if isinstance(event, Refused):
            raise SyslogFailure(
                Misconfigured(f"{self.where}: the receiver refused the session: {event.reason}")
            )
        reason = f"{self.where}: the receiver closed the session instead of opening it"
        if self.config.tls is not None:
            raise SyslogFailure(Misconfigured(f"{reason}; {refused_us}"))
        raise SyslogFailure(RetryLater(reason))

    async def _close(self, conn: _Connection) -> None:
        """Close the session and the connection; never raises."""
        timeout_s = self.config.timeout_s
        try:
            session = conn.session
            if session.state is SessionState.OPEN and not conn.wire.gone:
                conn.app.write(session.close())
                with contextlib.suppress(SyslogFailure, RelpProtocolError):
                    answered = False
                    while not session.ended:
                        events = await self._receive(conn, "answer to close")
                        answered = answered or any(isinstance(e, CloseAnswered) for e in events)
                    if not answered:
                        log.info(
                            "%s: the receiver closed the session without answering close",
                            self.where,
                        )
            conn.app.close()
            await asyncio.wait((conn.wire.closed,), timeout=timeout_s)
        except Exception:  # never raise from close; the connection is gone either way
            log.debug("%s: error while closing", self.where, exc_info=True)
        finally:
            if not conn.wire.closed.done():
                conn.abort()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
