"""A misbehaving Elasticsearch: each fault becomes a result, never an exception, and nothing
is reported delivered that the cluster did not store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bulk_records import API_KEY, KEY, KEY_ID, STREAM, config, json_records
from faults.test_http_faults import GARBAGE, answer_with, closed_port, never_read, raw_peer
from xavyo_siem.delivery.base import Delivered, Misconfigured, Rejected, RetryLater
from xavyo_siem.delivery.elasticsearch import ElasticsearchTransport

from peers.elasticsearch_peer import ElasticsearchFaults, ElasticsearchPeer


def transport(url: str, secret: str | None = API_KEY, **options: Any) -> ElasticsearchTransport:
    """A transport in development mode (plain HTTP allowed)."""
    return ElasticsearchTransport(config(url, **options), secret=secret, development=True)


async def send_once(sender: ElasticsearchTransport, count: int = 3) -> Any:
    """Send `count` records once and close the transport."""
    try:
        return await sender.send(json_records(count))
    finally:
        await sender.aclose()


@pytest.mark.parametrize("reply", GARBAGE)
async def test_garbage_answers_are_retry_later(reply: bytes) -> None:
    """Every garbled, truncated or odd answer is RetryLater, never success or a crash."""
    async with raw_peer(await answer_with(reply)) as port:
        result = await send_once(transport(f"http://127.0.0.1:{port}"))
    assert isinstance(result, RetryLater)


async def test_a_peer_that_is_down_is_retry_later() -> None:
    """A refused connection is RetryLater, for `send` and for `check`."""
    sender = transport(f"http://127.0.0.1:{closed_port()}")
    try:
        assert isinstance(await sender.check(), RetryLater)
        result = await sender.send(json_records(2))
    finally:
        await sender.aclose()
    assert isinstance(result, RetryLater)
    assert "cannot connect" in result.reason


async def test_a_peer_that_stops_reading_times_out_as_retry_later() -> None:
    """A peer that accepts and never reads a large body ends in RetryLater at timeout_s."""
    async with raw_peer(never_read) as port:
        sender = transport(
            f"http://127.0.0.1:{port}", timeout_s=0.3, gzip=False, batch_max_bytes=64 << 20
        )
        try:
            result = await sender.send(json_records(2000))
        finally:
            await sender.aclose()
    assert isinstance(result, RetryLater)
    assert "in time" in result.reason


async def test_a_slow_or_hanging_cluster_times_out_and_nothing_counts_as_delivered() -> None:
    """An answer later than timeout_s, or none at all, is RetryLater."""
    for faults in (ElasticsearchFaults(slow_s=1.0), ElasticsearchFaults(hang=1)):
        async with ElasticsearchPeer(api_keys={KEY_ID: KEY}, faults=faults) as peer:
            result = await send_once(transport(peer.url, timeout_s=0.2))
        assert isinstance(result, RetryLater)


@pytest.mark.parametrize(
    "faults",
    [ElasticsearchFaults(garbage=1), ElasticsearchFaults(wrong_item_count=1)],
    ids=["html", "one-item-short"],
)
async def test_a_200_that_is_no_bulk_answer_is_retried_and_stores_nothing_twice(
    faults: ElasticsearchFaults,
) -> None:
    """A 200 that cannot be matched to the documents is RetryLater; the same batch again is
    Delivered and every document is stored once."""
    async with ElasticsearchPeer(api_keys={KEY_ID: KEY}, faults=faults) as peer:
        sender = transport(peer.url)
        records = json_records(4)
        try:
            assert isinstance(await sender.send(records), RetryLater)
            assert await sender.send(records) == Delivered()
        finally:
            await sender.aclose()
    assert list(peer.documents(STREAM)) == [r.event_id for r in records]


async def test_a_connection_dropped_mid_request_then_recovers() -> None:
    """A peer that closes without answering is RetryLater; the retry is Delivered."""
    async with ElasticsearchPeer(
        api_keys={KEY_ID: KEY}, faults=ElasticsearchFaults(drop=1)
    ) as peer:
        sender = transport(peer.url)
        records = json_records(3)
        try:
            assert isinstance(await sender.send(records), RetryLater)
            assert await sender.send(records) == Delivered()
        finally:
            await sender.aclose()
    assert len(peer.documents(STREAM)) == 3


@pytest.mark.parametrize(
    ("status", "kind"), [(500, RetryLater), (502, RetryLater), (403, Misconfigured)]
)
async def test_whole_request_failures(status: int, kind: type) -> None:
    """A 5xx is RetryLater, a 403 for the whole request Misconfigured; nothing is stored."""
    async with ElasticsearchPeer(
        api_keys={KEY_ID: KEY}, faults=ElasticsearchFaults(status=[status])
    ) as peer:
        result = await send_once(transport(peer.url))
    assert isinstance(result, kind)
    assert f"HTTP {status}" in result.reason


async def test_a_cluster_echoing_the_credential_does_not_leak_it() -> None:
    """An error that quotes the request's headers reaches the reason without the key."""
    async with ElasticsearchPeer(
        api_keys={KEY_ID: KEY}, faults=ElasticsearchFaults(status=[401], echo_headers=True)
    ) as peer:
        result = await send_once(transport(peer.url))
    assert isinstance(result, Misconfigured)
    assert API_KEY not in result.reason
    assert KEY not in result.reason


async def test_every_document_refused_for_good_is_rejected_not_retried() -> None:
    """A batch whose every document is unparseable is Rejected document by document, and
    nothing else: the pipeline dead-letters them and moves on."""
    records = json_records(3)
    faults = ElasticsearchFaults(item_faults={r.event_id: [400] for r in records})
    async with ElasticsearchPeer(api_keys={KEY_ID: KEY}, faults=faults) as peer:
        sender = transport(peer.url)
        try:
            result = await sender.send(records)
        finally:
            await sender.aclose()
    assert isinstance(result, Rejected)
    assert sorted(result.by_index) == [0, 1, 2]


async def test_a_send_cancelled_midway_leaves_no_false_record_of_delivery() -> None:
    """A send cancelled while the cluster is answering is not remembered as stored: the
    next send of the batch sends every document."""
    async with ElasticsearchPeer(
        api_keys={KEY_ID: KEY}, faults=ElasticsearchFaults(slow_s=0.5)
    ) as peer:
        sender = transport(peer.url)
        records = json_records(3)
        try:
            task = asyncio.ensure_future(sender.send(records))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            peer.faults.slow_s = 0.0
            assert await sender.send(records) == Delivered()
        finally:
            await sender.aclose()
    assert peer.requests[-1].documents == 3
    assert len(peer.documents(STREAM)) == 3
