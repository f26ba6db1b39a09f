"""Syslog transports against peers that misbehave on purpose (plain asyncio/socket servers).

Each test is named after the fault and asserts the result and the transport's state
afterwards: the connection is dropped after a failure, the next batch reconnects, and the
batch that failed is delivered whole when sent again.
"""

from __future__ import annotations

import asyncio
import gc
import re
import socket
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trustme

from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.syslog import SyslogTransport
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.syslog_errors import classify_error

from peers.resetting_collector import ResettingCollector

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def records(count: int, tag: str = "r", size: int = 0) -> list[Record]:
    pad = "p" * size
    return [Record(f"{tag}{i}", i, f"<14>1 - h app - - - {tag} {i} {pad}") for i in range(count)]


def frames(data: bytes) -> list[bytes]:
    """Split an octet-counted stream into its messages (the stream must be complete)."""
    out = []
    while data:
        match = re.match(rb"([1-9][0-9]*) ", data)
        assert match is not None, data[:40]
        end = match.end() + int(match.group(1))
        out.append(data[match.end() : end])
        data = data[end:]
    return out


def texts(batch: list[Record]) -> list[bytes]:
    return [r.text.encode() for r in batch]


def sender(port: int, scheme: str = "tcp", **options: object) -> SyslogTransport:
    kind = {"tcp": "syslog_tcp", "tls": "syslog_tls", "udp": "syslog_udp"}[scheme]
    config = validate_destination(
        kind, f"{scheme}://127.0.0.1:{port}", {"timeout_s": 2, **options}, development=False
    )
    assert isinstance(config, SyslogConfig)
    return SyslogTransport(config)


class FaultPeer:
    """An asyncio TCP server; `handler(reader, writer, n)` decides how connection n behaves."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.received: dict[int, bytes] = {}
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        try:
            await self.handler(reader, writer, number)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_all(self, reader: asyncio.StreamReader, number: int) -> None:
        """Read until the client closes, keeping what connection `number` sent."""
        while chunk := await reader.read(65536):
            self.received[number] = self.received.get(number, b"") + chunk


@pytest.fixture
async def fault_peer() -> AsyncIterator[Callable[[Handler], Awaitable[FaultPeer]]]:
    servers: list[tuple[asyncio.Server, FaultPeer]] = []

    async def start(handler: Handler) -> FaultPeer:
        peer = FaultPeer(handler)
        server = await asyncio.start_server(peer._serve, "127.0.0.1", 0)
        servers.append((server, peer))
        peer.port = server.sockets[0].getsockname()[1]
        return peer

    yield start
    for server, peer in servers:
        server.close()
        for writer in peer.writers:
            writer.transport.abort()
        await asyncio.gather(*peer.tasks, return_exceptions=True)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A listening socket that never accepts: the kernel completes connections, nobody reads."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


# -- peer down ------------------------------------------------------------------------------


async def test_syslog_peer_down_is_retry_later() -> None:
    """Nobody listening: check() and send() both say RetryLater (refused), nothing raises."""
    tcp = sender(free_port())
    check, result = await tcp.check(), await tcp.send(records(3))
    for outcome in (check, result):
        assert isinstance(outcome, RetryLater)
        assert "refused" in outcome.reason
    assert not tcp.connected


async def test_syslog_udp_peer_down_is_retry_later() -> None:
    """UDP to a closed port: the ICMP port-unreachable makes the batch RetryLater."""
    udp = sender(free_port(socket.SOCK_DGRAM), "udp")
    result = await udp.send(records(3))
    assert isinstance(result, RetryLater)
    assert "refused" in result.reason
    assert not udp.connected


async def test_syslog_connect_timeout_is_retry_later() -> None:
    """A peer whose accept queue is full never completes the connect: RetryLater on time."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))
        try:
            result = await sender(port, timeout_s=0.3).send(records(1))
        finally:
            filler.close()
    assert isinstance(result, RetryLater)
    assert "no answer within 0.3 s" in result.reason


async def test_syslog_unresolvable_host_is_retry_later() -> None:
    """A host name that does not resolve gives RetryLater naming the resolution failure."""
    config = validate_destination(
        "syslog_tcp", "tcp://no-such-host.invalid:514", {"timeout_s": 3}, development=False
    )
    assert isinstance(config, SyslogConfig)
    result = await SyslogTransport(config).send(records(1))
    assert isinstance(result, RetryLater)


# -- peer closes ----------------------------------------------------------------------------


async def test_syslog_reset_mid_batch_then_resend_delivers_whole_batch(
    fault_peer: Callable[[Handler], Awaitable[FaultPeer]],
) -> None:
    """Peer reads part of a batch and resets: RetryLater; the resend arrives whole."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await reader.readexactly(1000)
            writer.transport.abort()  # RST with the rest of the batch unread
            return
        await peer.read_all(reader, n)

    peer = await fault_peer(handler)
    batch = records(20_000, size=40)
    tcp = sender(peer.port)
    result = await tcp.send(batch)
    assert isinstance(result, RetryLater)
    assert not tcp.connected
    assert await tcp.send(batch) == Delivered()
    await tcp.aclose()
    await asyncio.sleep(0.05)
    assert frames(peer.received[1]) == texts(batch)


async def test_syslog_peer_closed_between_batches_is_noticed(
    fault_peer: Callable[[Handler], Awaitable[FaultPeer]],
) -> None:
    """A peer that closed right after a batch is noticed before the next write: the batch,
    not confirmed yet, goes again first on the new connection, then the next one."""
    first_done = asyncio.Event()
    first, second = records(5, "a"), records(5, "b")
    expected_first = sum(len(str(len(t))) + 1 + len(t) for t in texts(first))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            peer.received[0] = await reader.readexactly(expected_first)
            writer.close()
            await writer.wait_closed()
            first_done.set()
            return
        await peer.read_all(reader, n)

    peer = await fault_peer(handler)
    tcp = sender(peer.port)
    assert await tcp.send(first) == Delivered()
    await first_done.wait()
    assert await tcp.send(second) == Delivered()
    await tcp.aclose()
    await asyncio.sleep(0.05)
    assert frames(peer.received[0]) == texts(first)
    assert frames(peer.received[1]) == texts(first + second)
    assert peer.connections == 2


async def test_syslog_peer_stops_reading_times_out_with_bounded_memory(
    silent_listener: socket.socket,
) -> None:
    """Back-pressure: a peer that stops reading makes the send time out; memory stays bounded."""
    port = silent_listener.getsockname()[1]
    tcp = sender(port, timeout_s=0.3)
    batch = records(40_000, size=150)  # about 7 MB, more than the socket buffers hold
    payload_bytes = sum(len(r.text) + 6 for r in batch)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            result = await tcp.send(batch)
            assert isinstance(result, RetryLater)
            assert "did not acknowledge" in result.reason
            assert not tcp.connected
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1 << 20  # nothing of the three attempts is kept
    assert peak - before < 3 * payload_bytes  # one batch in flight at a time


async def test_syslog_tls_handshake_never_answered_is_retry_later(
    silent_listener: socket.socket,
) -> None:
    """A peer that accepts TCP but never answers the TLS handshake: RetryLater after timeout."""
    port = silent_listener.getsockname()[1]
    result = await sender(port, "tls", timeout_s=0.3).send(records(1))
    assert isinstance(result, RetryLater)
    assert "handshake" in result.reason


@pytest.mark.parametrize("every", [1000, 333])
async def test_syslog_collector_resetting_after_every_n_messages_loses_nothing(every: int) -> None:
    """A collector that resets after every N messages read gets every record (at least once);
    a reset sends at most two batches again: the pending one, and the one it cut short."""
    batch_size, total = 1000, 20_000
    sent = records(total, "z")
    with ResettingCollector(every) as collector:
        tcp = sender(collector.port)
        for start in range(0, total, batch_size):
            batch = sent[start : start + batch_size]
            for _ in range(100):
                if await tcp.send(batch) == Delivered():
                    break
        await tcp.aclose()
        await asyncio.sleep(0.3)  # the collector reads what the close left
    received = collector.messages
    assert set(received) >= set(texts(sent)), f"{len(set(texts(sent)) - set(received))} lost"
    assert len(received) - total <= collector.resets * 2 * batch_size
    assert tcp.possibly_lost == 0


async def test_syslog_pending_batch_that_cannot_be_resent_at_close_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing while the receiver is gone: the pending batch is counted as possibly lost."""
    with ResettingCollector(every=5) as collector:
        tcp = sender(collector.port)
        assert await tcp.send(records(5)) == Delivered()
        for _ in range(100):  # the collector reads the five messages, then resets
            if collector.resets:
                break
            await asyncio.sleep(0.01)
    await tcp.aclose()  # the collector is gone: the batch cannot be sent again
    assert tcp.possibly_lost == 5
    assert "possibly lost" in caplog.text


# -- garbage --------------------------------------------------------------------------------


async def test_syslog_garbage_response_is_misconfigured(
    fault_peer: Callable[[Handler], Awaitable[FaultPeer]],
) -> None:
    """A peer that answers (an HTTP server, say) is not a syslog receiver: Misconfigured."""
    answered = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.read(10)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        answered.set()
        await peer.read_all(reader, n)

    peer = await fault_peer(handler)
    tcp = sender(peer.port)
    first = await tcp.send(records(1))
    await answered.wait()
    second = await tcp.send(records(1))
    result = second if first == Delivered() else first
    assert isinstance(result, Misconfigured)
    assert "HTTP/1.1 400" in result.reason
    assert "not a syslog listener" in result.reason
    assert not tcp.connected


async def test_syslog_tls_to_a_plain_text_peer_is_misconfigured(
    fault_peer: Callable[[Handler], Awaitable[FaultPeer]],
) -> None:
    """TLS to a peer that answers the ClientHello with plain text is Misconfigured."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.read(10)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()

    peer = await fault_peer(handler)
    tls = sender(peer.port, "tls")
    for result in (await tls.check(), await tls.send(records(1))):
        assert isinstance(result, Misconfigured), result
        assert "WRONG_VERSION_NUMBER" in result.reason or "record" in result.reason


# -- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(111, "Connection refused"), RetryLater),
        (ConnectionResetError(104, "Connection reset by peer"), RetryLater),
        (BrokenPipeError(32, "Broken pipe"), RetryLater),
        (TimeoutError(), RetryLater),
        (socket.gaierror(-2, "Name or service not known"), RetryLater),
        (OSError(113, "No route to host"), RetryLater),
    ],
)
def test_classify_error_table(exc: BaseException, kind: type) -> None:
    """Refused, reset, timed out, unreachable and unresolvable are all RetryLater."""
    assert isinstance(classify_error(exc, "send"), kind)


def test_classify_error_leaves_bugs_alone() -> None:
    """A programming error is not an I/O result: classify_error returns None for it."""
    assert classify_error(TypeError("bug"), "send") is None


# -- TLS peer that says goodbye --------------------------------------------------------------


async def test_syslog_tls_close_notify_between_batches_is_noticed(
    fault_peer: Callable[[Handler], Awaitable[FaultPeer]], tmp_path: Path
) -> None:
    """A TLS peer that sends close_notify right after a batch is noticed; that batch goes again
    on the new connection, then the next one."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    first, second = records(5, "a"), records(5, "b")
    expected_first = sum(len(str(len(t))) + 1 + len(t) for t in texts(first))
    first_done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            peer.received[0] = await reader.readexactly(expected_first)
            writer.close()  # close_notify, then FIN
            await writer.wait_closed()
            first_done.set()
            return
        await peer.read_all(reader, n)

    peer = FaultPeer(handler)
    server = await asyncio.start_server(peer._serve, "127.0.0.1", 0, ssl=server_context)
    try:
        peer.port = server.sockets[0].getsockname()[1]
        tls = sender(peer.port, "tls", ca_file=str(tmp_path / "ca.pem"))
        assert await tls.send(first) == Delivered()
        await first_done.wait()
        assert await tls.send(second) == Delivered()
        await tls.aclose()
        await asyncio.sleep(0.05)
        assert frames(peer.received[0]) == texts(first)
        assert frames(peer.received[1]) == texts(first + second)  # `first` was unconfirmed
    finally:
        server.close()
        for writer in peer.writers:
            writer.transport.abort()
        await asyncio.gather(*peer.tasks, return_exceptions=True)
