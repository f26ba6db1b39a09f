"""What the syslog and RELP tests against rsyslog share: realistic records, reading what the
peer received, and sending like the pipeline does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from xavyo_siem.delivery.base import Delivered, Record, RetryLater, Transport

from peers.rsyslog import RsyslogPeer

__all__ = ["deliver", "lines_with_every", "received", "record", "send_all"]


def record(i: int, body: str = "") -> Record:
    """A realistic RFC 5424 record with escaped SD values, non-ASCII and (sometimes) a LF."""
    text = (
        f"<110>1 2024-05-01T12:34:{i % 60:02d}.{i:06d}Z idp.example.com xavyo-siem - USER_LOGIN"
        f' [audit@32473 event_id="ev-{i}" reason="bad \\"pw\\" \\] x" actor="zoë"]'
        f" \ufeffevent {i} {body}"
    )
    return Record(event_id=f"ev-{i}", timestamp_us=i, text=text)


def received(peer: RsyslogPeer, count: int) -> list[str]:
    """The raw messages the peer wrote, once there are at least `count` of them."""
    peer.wait_for(count, timeout=30)
    return [r["rawmsg"] for r in peer.read_json()]


async def send_all(sender: Transport, records: list[Record], batch: int) -> None:
    """Send `records` in batches, each of which must be delivered at once."""
    for start in range(0, len(records), batch):
        assert await sender.send(records[start : start + batch]) == Delivered()


async def deliver(sender: Transport, batch: list[Record]) -> int:
    """Send like the pipeline does: the same batch again after RetryLater until it is
    delivered (giving up after 5,000 failed attempts); how many attempts failed."""
    failures = 0
    while True:
        result = await sender.send(batch)
        if result == Delivered():
            return failures
        assert isinstance(result, RetryLater), result
        failures += 1
        assert failures < 5000, result
        await asyncio.sleep(0.01)


def lines_with_every(
    peer: RsyslogPeer, keys: set[str], key: Callable[[str], str], timeout: float = 30.0
) -> list[str]:
    """The peer's lines once each of `keys` is among them (`key` reads one from a line), or
    when `timeout` is over. Waiting for a line count is not enough where batches are sent
    again: the duplicates reach the count before the last records are written."""
    deadline = time.monotonic() + timeout
    while True:
        lines = peer.wait_for(len(keys), timeout=timeout)
        if {key(line) for line in lines} >= keys or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
