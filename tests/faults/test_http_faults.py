"""Misbehaving HTTP peers: each fault becomes a result, never an exception, and nothing
is reported delivered that the peer did not accept."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
)
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.splunk_hec import HecConfig, HecTransport
from xavyo_siem.delivery.webhook import WebhookConfig, WebhookTransport

from peers.hec_server import HecFaults, HecServer
from peers.webhook_receiver import WebhookReceiver

TOKEN = "00000000-0000-4000-8000-000000000001"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RESULTS = (Delivered, RetryLater, Rejected, Misconfigured)


def batch(count: int, pad: int = 0) -> list[Record]:
    """`count` JSON records, each padded with `pad` bytes of filler."""
    return [
        Record(
            f"e{i}", 1_700_000_000_000_000 + i, orjson.dumps({"n": i, "pad": "p" * pad}).decode()
        )
        for i in range(count)
    ]


def hec_transport(url: str, **options: Any) -> HecTransport:
    """An HEC transport in development mode (plain HTTP allowed)."""
    cfg = validate_destination("splunk_hec", url, options, development=True)
    assert isinstance(cfg, HecConfig)
    return HecTransport(cfg, token=TOKEN, event_is_json=True, development=True)


def webhook_transport(url: str, **options: Any) -> WebhookTransport:
    """A webhook transport in development mode (plain HTTP allowed)."""
    cfg = validate_destination("webhook", url, options, development=True)
    assert isinstance(cfg, WebhookConfig)
    return WebhookTransport(cfg, event_is_json=True, development=True)


async def send_once(
    sender: HecTransport | WebhookTransport, records: list[Record]
) -> DeliveryResult:
    """Send one batch and close the transport."""
    try:
        return await sender.send(records)
    finally:
        await sender.aclose()


@asynccontextmanager
async def raw_peer(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on a free loopback port running `handler` per connection."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await server.wait_closed()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def answer_with(data: bytes) -> Handler:
    """A handler that reads the request head, writes `data` and closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()

    return handler


async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the connection and then never read nor answer."""
    await asyncio.Event().wait()


GARBAGE = [
    b"garbage\r\n\r\n",
    b"",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\x00\xff\xfe\x00\x01\x02\x03\x04\x05",
    b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
    b"\x16\x03\x01\x00\x05hello",
]


@pytest.mark.parametrize("reply", GARBAGE)
async def test_hec_garbage_responses_are_retry_later(reply: bytes) -> None:
    """Every garbled, truncated or odd HEC answer is RetryLater, never success or a crash."""
    async with raw_peer(await answer_with(reply)) as port:
        result = await send_once(hec_transport(f"http://127.0.0.1:{port}"), batch(3))
    assert isinstance(result, RetryLater)


@pytest.mark.parametrize("reply", GARBAGE)
async def test_webhook_garbage_responses_never_raise(reply: bytes) -> None:
    """Every garbled or truncated webhook answer is RetryLater; a complete 2xx, whatever its
    body, is delivered."""
    async with raw_peer(await answer_with(reply)) as port:
        result = await send_once(webhook_transport(f"http://127.0.0.1:{port}/h"), batch(3))
    assert isinstance(result, RESULTS)
    if reply.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: ") and b"abc" not in reply:
        assert result == Delivered()
    else:
        assert isinstance(result, RetryLater)


async def test_hec_peer_down_is_retry_later() -> None:
    """A refused connection is RetryLater, naming host:port, never the URL."""
    result = await send_once(hec_transport(f"http://127.0.0.1:{closed_port()}"), batch(1))
    assert isinstance(result, RetryLater)
    assert "cannot connect" in result.reason


async def test_webhook_peer_down_is_retry_later() -> None:
    """A refused connection to a webhook is RetryLater, without the URL's query in the reason."""
    url = f"http://127.0.0.1:{closed_port()}/hook?api_key=s3cr3t"
    result = await send_once(webhook_transport(url), batch(1))
    assert isinstance(result, RetryLater)
    assert "s3cr3t" not in result.reason


async def test_hec_peer_closes_mid_batch_then_recovers() -> None:
    """A connection closed while the body is read is RetryLater; the resend lands in full."""
    faults = HecFaults(drop=1, drop_after_bytes=1000)
    async with HecServer(token=TOKEN, faults=faults) as server:
        records = batch(200, pad=500)
        sender = hec_transport(server.url, gzip=False, batch_max_events=1000)
        try:
            first = await sender.send(records)
            second = await sender.send(records)
        finally:
            await sender.aclose()
    assert isinstance(first, RetryLater)
    assert second == Delivered()
    assert [e["n"] for e in server.events()] == list(range(200))


async def test_webhook_peer_closes_mid_batch_then_recovers() -> None:
    """A webhook receiver dropping the connection gives RetryLater; the resend lands once."""
    async with WebhookReceiver(drop=1) as peer:
        records = batch(20, pad=100)
        sender = webhook_transport(peer.url)
        try:
            first = await sender.send(records)
            second = await sender.send(records)
        finally:
            await sender.aclose()
    assert isinstance(first, RetryLater)
    assert second == Delivered()
    assert len(peer.events()) == 20


@pytest.mark.parametrize("kind", ["hec", "webhook"])
async def test_peer_stops_reading_times_out_as_retry_later(kind: str) -> None:
    """A peer that accepts and never reads a multi-megabyte body ends in RetryLater at timeout_s."""
    records = batch(40, pad=100_000)
    async with raw_peer(never_read) as port:
        if kind == "hec":
            sender: HecTransport | WebhookTransport = hec_transport(
                f"http://127.0.0.1:{port}", timeout_s=0.3, gzip=False, batch_max_bytes=64 << 20
            )
        else:
            sender = webhook_transport(
                f"http://127.0.0.1:{port}/h", timeout_s=0.3, batch_max_bytes=64 << 20
            )
        result = await send_once(sender, records)
    assert isinstance(result, RetryLater)
    assert "in time" in result.reason


async def test_hec_hanging_server_times_out() -> None:
    """An HEC that takes the request and never answers gives RetryLater after timeout_s."""
    async with HecServer(token=TOKEN, faults=HecFaults(hang=1)) as server:
        result = await send_once(hec_transport(server.url, timeout_s=0.2), batch(2))
    assert isinstance(result, RetryLater)


async def test_hec_200_with_garbage_body_is_not_delivered() -> None:
    """A 200 whose body is not an HEC reply is RetryLater: success is never assumed."""
    async with HecServer(token=TOKEN, faults=HecFaults(garbage=1)) as server:
        result = await send_once(hec_transport(server.url), batch(2))
    assert isinstance(result, RetryLater)


async def test_hec_ack_poll_connection_dropped_is_retry_later() -> None:
    """An /ack answer lost on the way is RetryLater even though the server marked the
    request indexed: the batch is resent (at least once), never assumed delivered."""
    async with HecServer(token=TOKEN, ack=True) as server:
        original = server._ack_poll

        async def dropping(request: Any) -> Any:
            request.transport.close()
            return await original(request)

        server._ack_poll = dropping  # type: ignore[method-assign]
        result = await send_once(hec_transport(server.url, ack=True), batch(2))
    assert isinstance(result, RetryLater)
    assert len(server.acknowledged) == 2


async def test_https_to_a_plain_http_port_is_misconfigured() -> None:
    """Speaking TLS to a port that answers plain HTTP fails the handshake: misconfigured."""
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(reply)
        await writer.drain()

    async with raw_peer(plain) as port:
        cfg = validate_destination("splunk_hec", f"https://127.0.0.1:{port}", {}, development=False)
        assert isinstance(cfg, HecConfig)
        sender = HecTransport(cfg, token=TOKEN, event_is_json=True)
        result = await send_once(sender, batch(1))
    assert isinstance(result, Misconfigured)
    assert "TLS" in result.reason


async def test_tls_peer_closing_during_handshake_is_retry_later() -> None:
    """A peer that closes as soon as it accepts (overloaded) is RetryLater, not misconfigured."""

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return None

    async with raw_peer(close_at_once) as port:
        cfg = validate_destination("webhook", f"https://127.0.0.1:{port}/h", {}, development=False)
        assert isinstance(cfg, WebhookConfig)
        result = await send_once(WebhookTransport(cfg, event_is_json=True), batch(1))
    assert isinstance(result, RetryLater)


async def test_check_reports_a_dead_peer_as_retry_later() -> None:
    """`check` on a peer that is down is RetryLater for both transports, never an exception."""
    port = closed_port()
    hec = hec_transport(f"http://127.0.0.1:{port}")
    hook = webhook_transport(f"http://127.0.0.1:{port}/h")
    try:
        assert isinstance(await hec.check(), RetryLater)
        assert isinstance(await hook.check(), RetryLater)
    finally:
        await hec.aclose()
        await hook.aclose()


async def test_aclose_twice_and_without_use_never_raises() -> None:
    """`aclose` is idempotent and safe on a transport that never connected."""
    hec = hec_transport("http://127.0.0.1:9")
    await hec.aclose()
    await hec.aclose()
    hook = webhook_transport("http://127.0.0.1:9/h")
    await hook.aclose()
    await hook.aclose()
