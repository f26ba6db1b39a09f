"""Syslog over one persistent TCP (RFC 6587) or TLS (RFC 5425) connection.

A batch is framed (`framing.py`), written in one piece, and reported `Delivered` only once
the receiver's TCP has acknowledged every byte of it (`syslog_connection.py`). Before each
batch the connection is checked without blocking, and a new one is opened if the peer
closed, reset or sent bytes. Over TLS, a connection is ready once the handshake is done,
the pinned fingerprint (if any) matches, and the peer has had a moment to refuse our client
certificate.

Acknowledged is not read: a receiver that closes or resets right after its TCP acknowledged a
batch may never have read it, or read it and not yet written it anywhere. So the last batch
stays *pending* until the connection is seen alive after it: the next batch acknowledged on
the same connection, or a check `confirm_after_s` after its acknowledgement. When the receiver
closes or resets first, the pending batch is sent again, first thing on the new connection (at
least once; at most that one batch twice). A pending batch that can no longer be sent (the
transport closes while the receiver is away) is counted in `possibly_lost` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Sequence
from typing import Final, NamedTuple

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
)
from xavyo_siem.delivery.framing import FramingError, encode_utf8, frame_lf, frame_octet
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.syslog_connection import StreamConnection, StreamWatcher
from xavyo_siem.delivery.syslog_errors import SyslogFailure, capture_failure
from xavyo_siem.delivery.tls import TlsConfig, client_context
from xavyo_siem.egress import EgressGuard, check_egress

__all__ = ["StreamSender", "check_fingerprint", "open_tcp"]

log = logging.getLogger("xavyo_siem.delivery")

# After a TLS handshake, how long to watch for a peer that refuses our client certificate:
# TLS 1.3 (and rsyslog's gtls driver even on TLS 1.2) decide *after* the client's side of
# the handshake is complete and then close without an alert. At least this long, or three
# times the handshake's own duration, capped by the configured timeout.
_TLS_SETTLE_MIN_S: Final = 0.1
_TLS_SETTLE_MAX_S: Final = 1.0


class _Pending(NamedTuple):
    """A batch the receiver's TCP acknowledged, kept until the receiver is seen alive after."""

    acknowledged_at: float  # loop time
    payload: bytes
    records: int


class StreamSender:
    """RFC 6587 (TCP) and RFC 5425 (TLS) over one persistent connection.

    `possibly_lost` counts records that were acknowledged by the receiver's TCP, then could be
    neither confirmed nor sent again (see the module docstring).
    """

    def __init__(
        self,
        config: SyslogConfig,
        key_password: str | bytes | None,
        egress: EgressGuard | None = None,
    ) -> None:
        self.config = config
        self.egress = egress
        self.tls = (config.tls or TlsConfig()) if config.protocol == "tls" else None
        self.frame = frame_lf if config.framing == "lf" else frame_octet
        self.key_password = key_password
        self.where = f"syslog {config.endpoint}"
        self.conn: StreamConnection | None = None
        self._context: ssl.SSLContext | None = None
        self._pending: _Pending | None = None
        self.possibly_lost = 0

    # -- connection --------------------------------------------------------------------------

    def _ssl_context(self, tls: TlsConfig) -> ssl.SSLContext:
        if self._context is None:
            self._context = client_context(tls, key_password=self.key_password)
        return self._context

    async def _connect(self) -> StreamConnection:
        loop = asyncio.get_running_loop()
        config = self.config
        protocol = StreamWatcher(loop)
        context = self._ssl_context(self.tls) if self.tls is not None else None
        started = loop.time()
        try:
            tcp = await asyncio.wait_for(self._open_tcp(loop, protocol), config.timeout_s)
        except TimeoutError:
            raise SyslogFailure(
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
                conn = StreamConnection(protocol, tcp, app, probe, tls=True)
                self._check_fingerprint(conn)
                await self._settle(conn, loop.time() - handshake_started)
                return conn
            return StreamConnection(protocol, tcp, app, probe, tls=False)
        except BaseException:
            app.abort()
            tcp.abort()
            probe.close()
            raise

    async def _open_tcp(
        self, loop: asyncio.AbstractEventLoop, protocol: StreamWatcher
    ) -> asyncio.Transport:
        return await open_tcp(loop, protocol, self.config.host, self.config.port, self.egress)

    def _check_fingerprint(self, conn: StreamConnection) -> None:
        assert self.tls is not None
        check_fingerprint(self.tls, conn.app, self.where)

    async def _settle(self, conn: StreamConnection, handshake_s: float) -> None:
        """Give a peer that refuses our client certificate the chance to say so."""
        settle_s = min(
            max(_TLS_SETTLE_MIN_S, 3 * handshake_s), _TLS_SETTLE_MAX_S, self.config.timeout_s
        )
        await asyncio.wait((conn.protocol.closed,), timeout=settle_s)
        if conn.protocol.closed.done() or conn.protocol.eof:
            client = "our client certificate" if self.tls and self.tls.cert_file else "a client"
            raise SyslogFailure(
                Misconfigured(
                    f"{self.where}: the peer closed the TLS connection right after the handshake:"
                    f" it does not accept {client} (set or fix cert_file/key_file, or the"
                    " receiver's list of permitted peers)"
                )
            )
        if conn.protocol.received:
            raise SyslogFailure(conn.garbage())

    async def _live_connection(self) -> StreamConnection:
        conn = self.conn
        if conn is not None:
            try:
                reason = conn.gone_reason()
                if reason is None and conn.tls_input_pending:
                    # Let the TLS layer read what is waiting (a close_notify, say) first.
                    for _ in range(3):
                        await asyncio.sleep(0)
                    reason = conn.gone_reason()
            except SyslogFailure:
                self._drop()
                raise
            if reason is None:
                if not conn.fresh:  # the connection the pending batch went over
                    self._confirm()
                return conn
            self._report_gone(reason)
            self._drop()
        self.conn = await self._connect()
        return self.conn

    def _confirm(self) -> None:
        """Forget the pending batch if it was acknowledged `confirm_after_s` ago (alive now)."""
        pending = self._pending
        if pending is not None:
            settled = asyncio.get_running_loop().time() - self.config.confirm_after_s
            if pending.acknowledged_at <= settled:
                self._pending = None

    def _report_gone(self, reason: str) -> None:
        records = 0 if self._pending is None else self._pending.records
        if records:
            log.warning(
                "%s: %s within %g s of acknowledging the last batch (%d records) and before"
                " the next one; sending it again on a new connection (it may arrive twice)",
                self.where,
                reason,
                self.config.confirm_after_s,
                records,
            )
        elif "reset" in reason:
            log.warning(
                "%s: %s; earlier batches were confirmed and are not sent again: what it had"
                " acknowledged and not yet read when it reset is lost (TCP loss window)",
                self.where,
                reason,
            )
        else:
            log.info("%s: %s; reconnecting before the next batch", self.where, reason)

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
            payload = b"".join(parts)
            count = len(parts)
            parts.clear()  # one copy of the batch in memory while it is in flight, not two
            with capture_failure(f"send to {self.where}") as failure:
                await self._write(payload, count)
            if failure.result is not None:
                self._drop()
                return failure.result
        return Rejected(rejected) if rejected else Delivered()

    async def _write(self, payload: bytes, records: int) -> None:
        """Write `payload` on a live connection and wait until the receiver's TCP has
        acknowledged all of it; on a new connection, the pending batch goes first."""
        conn = await self._live_connection()
        loop = asyncio.get_running_loop()
        resent = self._pending if conn.fresh else None
        if resent is not None:
            conn.app.write(resent.payload)
        if payload:
            conn.app.write(payload)
        await conn.flushed(loop.time() + self.config.timeout_s)
        conn.fresh = False
        now = loop.time()
        if records and self.config.confirm_after_s > 0:
            self._pending = _Pending(now, payload, records)  # the one before is confirmed
        elif records:
            self._pending = None
        elif resent is not None:  # acknowledged again: its wait for confirmation starts over
            self._pending = resent._replace(acknowledged_at=now)

    async def check(self) -> DeliveryResult:
        with capture_failure(f"connect to {self.where}") as failure:
            await self._live_connection()
        if failure.result is not None:
            self._drop()
            return failure.result
        return Delivered()

    async def aclose(self) -> None:
        """Close cleanly after the last batch is acknowledged (TLS: close_notify).

        The pending batch is sent again first if the receiver went away since; if the receiver
        resets the connection at our close, it counts as possibly lost.
        """
        if self._pending is not None:
            with capture_failure(f"send to {self.where}") as failure:
                await self._write(b"", 0)
            if failure.result is not None:
                self._drop()
        conn, self.conn = self.conn, None
        reset = conn is None
        if conn is not None:
            try:
                loop = asyncio.get_running_loop()
                with contextlib.suppress(SyslogFailure, OSError):
                    await conn.flushed(loop.time() + self.config.timeout_s)
                await conn.close(self.config.timeout_s)
                reset = isinstance(conn.protocol.error, ConnectionResetError)
            except Exception:  # never raise from close; the connection is gone either way
                conn.abort()
                reset = True
        pending, self._pending = self._pending, None
        if reset and pending is not None:
            self.possibly_lost += pending.records
            log.warning(
                "%s: closing while the receiver is away or resets the connection: the last"
                " batch (%d records), acknowledged %.3g s ago, may not have been read"
                " (possibly lost)",
                self.where,
                pending.records,
                asyncio.get_running_loop().time() - pending.acknowledged_at,
            )


async def open_tcp(
    loop: asyncio.AbstractEventLoop,
    protocol: asyncio.Protocol,
    host: str,
    port: int,
    egress: EgressGuard | None,
) -> asyncio.Transport:
    """Connect `protocol` to host:port; with the SSRF guard, only to addresses of this
    resolution that it allows (also used by the RELP transport)."""
    if egress is None:
        tcp, _ = await loop.create_connection(lambda: protocol, host, port)
        return tcp
    failure: OSError | None = None
    for family, kind, proto, _, address in await check_egress(host, port, egress):
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


def check_fingerprint(tls: TlsConfig, app: asyncio.BaseTransport, where: str) -> None:
    """Raise `SyslogFailure(Misconfigured)` unless the TLS peer's certificate on `app`
    matches the pinned fingerprint, if one is pinned (also used by the RELP transport)."""
    pinned = tls.fingerprint
    if pinned is None:
        return
    ssl_object = app.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise SyslogFailure(Misconfigured(f"{where}: the TLS peer sent no certificate"))
    seen = pinned.of_certificate(der)
    if not pinned.matches(seen):
        raise SyslogFailure(
            Misconfigured(
                f"{where}: the peer's certificate {seen}"
                " does not match the pinned fingerprint option"
            )
        )
