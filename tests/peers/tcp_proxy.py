"""A TCP proxy for tests: forwards a free loopback port to a target port, and can refuse a while.

`TcpProxy(target_port)` listens on 127.0.0.1 and forwards each connection it accepts to
127.0.0.1:target_port, bytes both ways. While it *refuses* (`refuse(seconds)`, or
`refusing = True` until set back to False) it cuts every open connection and resets each
new one as soon as it is accepted: a client such as psycopg sees its server vanish and its
reconnects fail ("connection reset" / "server closed the connection unexpectedly"), as if
the server were down, while the server stays up for everyone connected to it directly.

It runs in threads of the test process: one accepts, two pump each connection. `stop()`
(or leaving the `with` block) cuts everything and joins them.

    with TcpProxy(cluster.port) as proxy:
        worker_url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/siem"
        proxy.refuse(10)
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType

__all__ = ["TcpProxy"]


@dataclass(eq=False, slots=True)
class _Link:
    """One proxied connection: the client's socket and ours to the target."""

    client: socket.socket
    upstream: socket.socket
    pumps_running: int = 2


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset rather than an orderly FIN."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` until stopped."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # the accept loop looks at the stop flag this often
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._pumps: list[threading.Thread] = []
        self._refuse_until = 0.0
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name=f"proxy:{self.port}")

    @property
    def refusing(self) -> bool:
        return time.monotonic() < self._refuse_until

    @refusing.setter
    def refusing(self, refuse: bool) -> None:
        self._refuse_until = math.inf if refuse else 0.0
        if refuse:
            self._cut_all()

    def refuse(self, seconds: float) -> None:
        """Cut every open connection and refuse new ones for `seconds`, then forward again."""
        self._refuse_until = time.monotonic() + seconds
        self._cut_all()

    def start(self) -> None:
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting, cut every connection, join the threads."""
        self._stopping.set()
        if self._acceptor.is_alive():
            self._acceptor.join(10)
        self._listener.close()
        self._cut_all()
        with self._lock:
            pumps = list(self._pumps)
        for pump in pumps:
            pump.join(10)

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            if self.refusing:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            link = _Link(client, upstream)
            pumps = [
                threading.Thread(target=self._pump, args=(link, client, upstream)),
                threading.Thread(target=self._pump, args=(link, upstream, client)),
            ]
            with self._lock:
                self._links.add(link)
                self._pumps = [p for p in self._pumps if p.is_alive()] + pumps
            for pump in pumps:
                pump.start()
            if self.refusing:  # refuse() began after the check above: cut this one too
                self._cut(link)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._cut(link)
            with self._lock:
                link.pumps_running -= 1
                last = link.pumps_running == 0
                self._links.discard(link)
            if last:  # the other pump no longer uses the sockets
                _reset(link.client)
                link.upstream.close()

    def _cut(self, link: _Link) -> None:
        """End both directions; the pumps wake up, and the last one closes the sockets."""
        for sock in (link.client, link.upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _cut_all(self) -> None:
        with self._lock:
            links = list(self._links)
        for link in links:
            self._cut(link)
