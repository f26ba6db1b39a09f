"""A syslog collector that resets its connection (RST) after every N messages it has read.

It reads RFC 6587 octet-counted frames on a blocking socket in its own thread and keeps every
complete message it read; after at least `every` messages on one connection it closes that
connection with `SO_LINGER 0`, so the kernel sends a reset and drops whatever was received
but not read: what a collector restart, a crash or a load balancer does to a sender. The
messages read in the partial chunk that crossed the limit are kept too (a collector that read
them would have written them).
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from types import TracebackType

__all__ = ["ResettingCollector"]

_FRAME = re.compile(rb"([1-9][0-9]{0,8}) ")


class ResettingCollector:
    """Listens on 127.0.0.1 (`port`); `messages` holds every message read, in order."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.messages: list[bytes] = []
        self.connections = 0
        self.resets = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="resetting-collector")

    def __enter__(self) -> ResettingCollector:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.2)
                self._read(conn)

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        count = 0
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while (match := _FRAME.match(buffer)) is not None:
                end = match.end() + int(match.group(1))
                if end > len(buffer):
                    break
                self.messages.append(buffer[match.end() : end])
                buffer = buffer[end:]
                count += 1
            if count >= self.every:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.resets += 1
                return  # the `with` closes it: a reset, the unread bytes dropped
