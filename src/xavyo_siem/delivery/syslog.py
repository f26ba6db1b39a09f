"""Syslog transports: RFC 6587 over TCP, RFC 5425 over TLS and RFC 5426 over UDP.

`SyslogTransport(config)` speaks the protocol its `SyslogConfig` (`syslog_config.py`) names.
It classifies and never sleeps between attempts, retries or counts failures; the pipeline
does that.

TCP and TLS keep one persistent connection (`syslog_stream.py`). A batch is reported
`Delivered` only once every byte of it has been acknowledged by the receiver's TCP stack,
so a receiver that goes away with part of a batch still in our buffers makes the batch
`RetryLater` instead of silently losing it. Before each batch the connection is checked
without blocking: a peer that closed (FIN), reset (RST) or sent bytes (a syslog receiver
never answers) is noticed before anything is written into a dead connection, and a new
connection is opened. What a receiver had acknowledged but not yet read when it closed is
the one loss that TCP cannot report; docs/delivery.md states the window.

UDP sends one message per datagram, without acknowledgement. A message longer than
`max_datagram_bytes` is `Rejected` (it goes to dead letters with the reason) unless the
destination sets `truncate`: then it is sent cut to fit, counted and logged with its event id.

Every foreign error (`OSError`, `ssl.SSLError`, `TimeoutError`) is translated in one place,
`syslog_errors.capture_failure`, into `RetryLater` or `Misconfigured`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Sequence
from typing import Any

from xavyo_siem.delivery.base import Delivered, DeliveryResult, Record, Rejected, RetryLater
from xavyo_siem.delivery.framing import FramingError, fit_datagram
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.syslog_errors import capture_failure
from xavyo_siem.delivery.syslog_stream import StreamSender
from xavyo_siem.egress import EgressGuard, check_egress

__all__ = ["SyslogTransport"]

log = logging.getLogger("xavyo_siem.delivery")


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
        with capture_failure(f"send to {self.where}") as failure:
            sock = await self._socket()
            loop = asyncio.get_running_loop()
            for index, record in enumerate(records):
                try:
                    payload, truncated = fit_datagram(record.text, limit)
                except FramingError as exc:
                    rejected[index] = str(exc)
                    continue
                if truncated:
                    if not self.config.truncate:
                        rejected[index] = (
                            f"the record is longer than max_datagram_bytes ({limit}) and would be"
                            " cut; set the truncate option to send it cut, raise"
                            " max_datagram_bytes, or use syslog over TCP or TLS"
                        )
                        continue
                    self.truncated_count += 1
                    log.warning(
                        "%s: event %s cut to %d bytes to fit one datagram (truncate option)",
                        self.where,
                        record.event_id,
                        limit,
                    )
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
        with capture_failure(f"connect to {self.where}") as failure:
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
        # removed from every reason, with whatever the peer sent (scrub.py)
        self._secrets = (
            (key_password.decode("utf-8", "replace"),)
            if isinstance(key_password, bytes)
            else (key_password,)
        )
        self._lock = asyncio.Lock()
        self._datagram: _DatagramSender | None = None
        self._stream: StreamSender | None = None
        if config.protocol == "udp":
            self._datagram = _DatagramSender(config, egress)
        else:
            self._stream = StreamSender(config, key_password, egress)

    @property
    def truncated_count(self) -> int:
        """How many UDP messages were truncated to fit `max_datagram_bytes`."""
        return 0 if self._datagram is None else self._datagram.truncated_count

    @property
    def possibly_lost(self) -> int:
        """Records acknowledged by the receiver's TCP that could be neither confirmed nor sent
        again (TCP and TLS; see `syslog_stream.py`)."""
        return 0 if self._stream is None else self._stream.possibly_lost

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
                result = await self._stream.send(records)
            else:
                assert self._datagram is not None
                result = await self._datagram.send(records)
        return scrub_result(result, self._secrets)

    async def check(self) -> DeliveryResult:
        """Connect (TLS: handshake, fingerprint, client acceptance) without sending an event.

        For UDP this only resolves the address and reports a pending ICMP error.
        """
        async with self._lock:
            if self._stream is not None:
                result = await self._stream.check()
            else:
                assert self._datagram is not None
                result = await self._datagram.check()
        return scrub_result(result, self._secrets)

    async def aclose(self) -> None:
        """Wait for what is in flight, then close (TLS: close_notify); never raises."""
        async with self._lock:
            if self._stream is not None:
                await self._stream.aclose()
            elif self._datagram is not None:
                await self._datagram.aclose()
