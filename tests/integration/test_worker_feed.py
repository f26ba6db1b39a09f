"""The worker's change feed over many tenants, on both store backends: every destination gets
exactly its tenant's matching events in store order, a lane that overflows catches up, and an
idle worker closes what it opened."""

from __future__ import annotations

import asyncio
import time as time_module
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from prometheus_client import REGISTRY
from sqlalchemy import Engine

from file_output import add_file_destination, delivered_ids
from store_final import wait_until_final
from xavyo_siem import destinations as manage
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.egress import EgressGuard
from xavyo_siem.ingest import store_events
from xavyo_siem.model import (
    AuditEvent,
    EventCategory,
    EventFilter,
    SiemDestination,
)
from xavyo_siem.pipeline import PipelineSettings
from xavyo_siem.pipeline.loop import DestinationComponents
from xavyo_siem.runtime import WorkerSettings
from xavyo_siem.runtime.components import open_destination
from xavyo_siem.runtime.worker import Worker
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.state import Progress, record_progress

KEYS = KeyRing.parse(new_key_text())


def worker(engine: Engine, **settings: object) -> Worker:
    async def open_components(destination: SiemDestination) -> DestinationComponents:
        return await open_destination(
            engine, destination, settings=Settings(), keyring=KEYS, egress=EgressGuard()
        )

    return Worker(
        engine=engine,
        open_components=open_components,
        settings=WorkerSettings(
            lease_ttl_s=5,
            scan_interval_s=0.2,
            listen_poll_s=0.2,
            pipeline=PipelineSettings(poll_interval_s=0.05),
            **settings,  # type: ignore[arg-type]
        ),
    )


def tenants_events(tenants: list[UUID], count: int, seed: int) -> list[AuditEvent]:
    """`count` events spread unevenly over `tenants` (the first ones get the most)."""
    events = list(generate_events(count, 1, seed=seed))
    return [
        event.__class__.from_dict(
            {**event.to_dict(), "tenant_id": str(tenants[(i * i) % len(tenants)])}
        )
        for i, event in enumerate(events)
    ]


def following(running: Worker) -> bool:
    """Whether any of the worker's lanes takes its events from the feed."""
    lanes = [] if running.scheduler is None else running.scheduler.lanes.values()
    return any(lane.following for lane in lanes)


async def wait_until(predicate: object, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_many_tenants_each_get_exactly_their_matching_events_in_order(
    engine: Engine, tmp_path: Path
) -> None:
    """With 120 destinations over 60 tenants (two each, one filtered), events stored before
    and while the worker runs reach every destination of their tenant that matches, once
    each and in store order, and no other."""
    tenants = [UUID(int=1000 + n) for n in range(60)]
    paths: dict[UUID, tuple[Path, Path]] = {}
    for tenant in tenants:
        every, auth = tmp_path / f"all-{tenant.int}.jsonl", tmp_path / f"auth-{tenant.int}.jsonl"
        add_file_destination(engine, tenant, every, batch=7)
        add_file_destination(
            engine,
            tenant,
            auth,
            batch=7,
            filters=EventFilter(categories=frozenset({EventCategory.AUTHENTICATION})),
        )
        paths[tenant] = (every, auth)
    before = tenants_events(tenants, 1500, seed=1)
    store_events(engine, before)
    running = worker(engine)
    task = asyncio.create_task(running.run())
    after = tenants_events(tenants, 1500, seed=2)
    for start in range(0, len(after), 100):
        store_events(engine, after[start : start + 100])
        await asyncio.sleep(0.01)
    expected: dict[UUID, list[AuditEvent]] = defaultdict(list)
    for event in before + after:
        expected[event.tenant_id].append(event)

    def complete() -> bool:
        return all(len(delivered_ids(paths[t][0])) >= len(expected[t]) for t in tenants)

    await wait_until(complete)
    running.stop()
    await task
    for tenant in tenants:
        mine = expected[tenant]
        assert delivered_ids(paths[tenant][0]) == [str(e.event_id) for e in mine]
        wanted = [str(e.event_id) for e in mine if e.category is EventCategory.AUTHENTICATION]
        assert delivered_ids(paths[tenant][1]) == wanted


async def test_a_lane_that_overflows_falls_behind_and_catches_up_without_loss(
    engine: Engine, tmp_path: Path
) -> None:
    """A destination offered more events than it may hold lets them go and reads them back
    from the store: every event arrives once, in order."""
    tenant = UUID(int=7)
    path = tmp_path / "small.jsonl"
    add_file_destination(engine, tenant, path, batch=7)
    running = worker(engine, max_buffered=5)
    task = asyncio.create_task(running.run())
    events = tenants_events([tenant], 800, seed=3)
    for start in range(0, len(events), 200):
        store_events(engine, events[start : start + 200])
        await asyncio.sleep(0.02)
    await wait_until(lambda: len(delivered_ids(path)) >= len(events))
    running.stop()
    await task
    assert delivered_ids(path) == [str(e.event_id) for e in events]


async def test_an_idle_worker_closes_its_transports_and_keeps_serving(
    engine: Engine, tmp_path: Path
) -> None:
    """Transports close once idle for `idle_close_s` and open again for the next event."""
    tenant = UUID(int=8)
    path = tmp_path / "idle.jsonl"
    add_file_destination(engine, tenant, path, batch=7)
    running = worker(engine, idle_close_s=0.1)
    task = asyncio.create_task(running.run())
    first = tenants_events([tenant], 3, seed=4)
    store_events(engine, first)
    await wait_until(lambda: len(delivered_ids(path)) == 3)
    scheduler = running.scheduler
    assert scheduler is not None
    await wait_until(lambda: all(lane.components is None for lane in scheduler.lanes.values()))
    second = tenants_events([tenant], 2, seed=5)
    store_events(engine, second)
    await wait_until(lambda: len(delivered_ids(path)) == 5)
    running.stop()
    await task
    assert delivered_ids(path) == [str(e.event_id) for e in first + second]


async def test_a_destinations_metrics_keep_their_series_when_it_is_renamed(
    engine: Engine, tmp_path: Path
) -> None:
    """The delivered count is labelled by the destination's id and goes on counting after a
    rename, which only changes the name its info series gives."""
    tenant = UUID(int=9)
    path = tmp_path / "named.jsonl"
    add_file_destination(engine, tenant, path, batch=7)
    running = worker(engine)
    task = asyncio.create_task(running.run())
    first = tenants_events([tenant], 5, seed=6)
    store_events(engine, first)
    await wait_until(lambda: len(delivered_ids(path)) == 5)
    scheduler = running.scheduler
    assert scheduler is not None
    (destination,) = [lane.destination for lane in scheduler.lanes.values()]
    labels = {"tenant": str(tenant), "destination": str(destination.id)}
    await wait_until(
        lambda: REGISTRY.get_sample_value("xavyo_siem_events_delivered_total", labels) == 5
    )
    manage.update_destination(
        engine,
        tenant_id=tenant,
        destination_id=destination.id,
        changes={"name": "renamed"},
        keyring=None,
        development=False,
    )
    await wait_until(
        lambda: [lane.destination.name for lane in scheduler.lanes.values()] == ["renamed"]
    )
    second = tenants_events([tenant], 3, seed=7)
    store_events(engine, second)
    await wait_until(lambda: len(delivered_ids(path)) == 8)
    await wait_until(
        lambda: REGISTRY.get_sample_value("xavyo_siem_events_delivered_total", labels) == 8
    )
    info = "xavyo_siem_destination_info"
    assert REGISTRY.get_sample_value(info, {**labels, "name": "renamed", "type": "file"}) == 1
    assert REGISTRY.get_sample_value(info, {**labels, "name": "named", "type": "file"}) is None
    running.stop()
    await task


async def test_a_backlog_read_through_the_feed_waits_for_the_lanes_instead_of_overflowing(
    engine: Engine, tmp_path: Path
) -> None:
    """A backlog twenty times a lane's limit, read through the feed, reaches the destination
    whole and in order without the lane ever letting events go and reading them back."""
    tenant = UUID(int=10)
    path = tmp_path / "paced.jsonl"
    add_file_destination(engine, tenant, path, batch=7)
    events = tenants_events([tenant], 1000, seed=8)
    store_events(engine, events)
    running = worker(engine, max_buffered=50, feed_page=20)
    read_backlog = running.lanes_store.read_backlog
    own_reads = 0

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal own_reads
        own_reads += 1
        return await read_backlog(*args, **kwargs)

    running.lanes_store.read_backlog = counted  # type: ignore[method-assign]
    task = asyncio.create_task(running.run())
    await wait_until(lambda: len(delivered_ids(path)) >= len(events))
    running.stop()
    await task
    assert delivered_ids(path) == [str(e.event_id) for e in events]
    assert own_reads == 0


async def test_events_committed_behind_an_older_transaction_are_read_once_it_ends(
    pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL: events that were not final when their notification came (an older
    transaction still open) reach the destination once that transaction ends, with no other
    notification and long before the slow poll."""
    engine = make_engine(pg_url)
    upgrade(engine)
    tenant = UUID(int=11)
    path = tmp_path / "late.jsonl"
    add_file_destination(engine, tenant, path, batch=7)
    running = Worker(
        engine=engine,
        open_components=worker(engine).open_components,
        settings=WorkerSettings(lease_ttl_s=5, scan_interval_s=0.2, listen_poll_s=600),
    )
    task = asyncio.create_task(running.run())

    await wait_until(lambda: following(running))
    events = tenants_events([tenant], 4, seed=9)
    with engine.connect() as older:
        transaction = older.begin()
        older.exec_driver_sql("SELECT pg_current_xact_id()")  # holds the horizon back
        store_events(engine, events)  # committed and announced, not final yet
        await asyncio.sleep(0.5)
        assert delivered_ids(path) == []
        transaction.rollback()
    await wait_until(lambda: len(delivered_ids(path)) == len(events), timeout=60)
    running.stop()
    await task
    engine.dispose()
    assert delivered_ids(path) == [str(e.event_id) for e in events]


async def test_a_stuck_destination_does_not_hold_back_a_backlog_read_through_the_feed(
    engine: Engine, tmp_path: Path
) -> None:
    """A destination that cannot write keeps the events handed to it, and its tenant's other
    destination still receives a backlog of many lane limits, whole and in order."""
    tenant = UUID(int=12)
    path = tmp_path / "healthy.jsonl"
    add_file_destination(engine, tenant, path, batch=7)
    add_file_destination(engine, tenant, tmp_path / "missing" / "stuck.jsonl", batch=7)
    events = tenants_events([tenant], 600, seed=10)
    store_events(engine, events)
    running = worker(engine, max_buffered=50, feed_page=20)
    task = asyncio.create_task(running.run())
    await wait_until(lambda: len(delivered_ids(path)) >= len(events))
    running.stop()
    await task
    assert delivered_ids(path) == [str(e.event_id) for e in events]


async def test_a_backlog_over_many_tenants_goes_out_in_a_batch_or_two_per_destination(
    engine: Engine, tmp_path: Path
) -> None:
    """A backlog of 600 events over 30 tenants (two destinations each), stored before the
    worker starts and read through the feed in pages of 100, reaches every destination whole
    and in order, in about one batch per destination (a page splits at most one tenant's
    run), not in one batch per page that holds some of its tenant's events."""
    tenants = [UUID(int=2000 + n) for n in range(30)]
    paths = [tmp_path / f"{t.int}-{copy}.jsonl" for t in tenants for copy in range(2)]
    for path in paths:
        add_file_destination(engine, UUID(int=int(path.name.split("-")[0])), path)
    events = tenants_events(tenants, 600, seed=9)
    store_events(engine, events)
    wait_until_final(engine)  # all in the backlog the worker finds when it starts
    sent = "xavyo_siem_send_seconds_count"
    before = REGISTRY.get_sample_value(sent, {"type": "file"}) or 0.0
    running = worker(engine, feed_page=100)
    task = asyncio.create_task(running.run())
    expected = {t: [str(e.event_id) for e in events if e.tenant_id == t] for t in tenants}

    def complete() -> bool:
        return all(
            len(delivered_ids(path)) >= len(expected[UUID(int=int(path.name.split("-")[0]))])
            for path in paths
        )

    await wait_until(complete)
    running.stop()
    await task
    for path in paths:
        assert delivered_ids(path) == expected[UUID(int=int(path.name.split("-")[0]))]
    batches = (REGISTRY.get_sample_value(sent, {"type": "file"}) or 0.0) - before
    assert batches <= len(paths) + 2 * (len(events) // 100 + 1)


async def test_a_notification_during_a_feed_read_waits_for_the_read_instead_of_spinning(
    engine: Engine, tmp_path: Path, monkeypatch: Any
) -> None:
    """New events announced while a (slow) feed read is in flight are read once it ends, and
    meanwhile the worker's loop sleeps: a handful of passes, not one per event-loop turn."""
    import xavyo_siem.runtime.worker as worker_module

    tenant = UUID(int=12)
    path = tmp_path / "slow-read.jsonl"
    add_file_destination(engine, tenant, path, batch=50)
    original = worker_module.read_feed

    def slow_read_feed(conn: Any, **kwargs: Any) -> Any:
        time_module.sleep(0.3)  # on the store's thread, as a slow read would be
        return original(conn, **kwargs)

    monkeypatch.setattr(worker_module, "read_feed", slow_read_feed)
    running = worker(engine)
    passes = 0
    waiting = running._wait

    async def counted(until: float, *, notified: bool) -> None:
        nonlocal passes
        passes += 1
        await waiting(until, notified=notified)

    running._wait = counted  # type: ignore[method-assign]
    task = asyncio.create_task(running.run())

    await wait_until(lambda: following(running))
    events = tenants_events([tenant], 30, seed=12)
    passes = 0
    for chunk in (events[:10], events[10:20], events[20:]):  # each announced, reads in flight
        store_events(engine, chunk)
        await asyncio.sleep(0.1)
    await wait_until(lambda: len(delivered_ids(path)) == len(events), timeout=60)
    loop_passes = passes
    running.stop()
    await task
    assert delivered_ids(path) == [str(e.event_id) for e in events]
    # Reads of 0.3 s each, notifications every 0.1 s: a spinning loop passes thousands of
    # times; one that sleeps until the read ends, a few per read, turn and renewal.
    assert loop_passes < 300, loop_passes


def test_the_progress_flush_alone_commits_without_waiting_for_its_wal(pg_url: str) -> None:
    """On PostgreSQL the transaction that writes the lanes' progress has `synchronous_commit`
    off (a short commit, so a short hold on the feed's horizon), and only that transaction."""
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "on"
            lost = record_progress(
                conn,
                owner="w",
                now=datetime.now(UTC),
                progress=[Progress(tenant_id=uuid4(), destination_id=uuid4(), epoch=1)],
            )
            assert len(lost) == 1  # no lease: nothing written, the setting taken all the same
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "off"
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "on"
    finally:
        engine.dispose()


async def test_progress_noted_while_a_flush_is_in_flight_is_written_right_after_it(
    engine: Engine, tmp_path: Path
) -> None:
    """A destination that delivered a batch while another's progress was being written has
    its own written as soon as that write ends, and sends its next batch then: not at the
    next poll or renewal (a minute away here), although nothing else happens meanwhile."""
    quiet, busy = UUID(int=31), UUID(int=32)
    quiet_path, busy_path = tmp_path / "quiet.jsonl", tmp_path / "busy.jsonl"
    add_file_destination(engine, quiet, quiet_path, batch=50)
    add_file_destination(engine, busy, busy_path, batch=5)
    running = Worker(
        engine=engine,
        open_components=worker(engine).open_components,
        settings=WorkerSettings(
            lease_ttl_s=60,
            scan_interval_s=60,
            listen_poll_s=60,
            pipeline=PipelineSettings(poll_interval_s=60),
        ),
    )
    flush = running.lanes_store.flush
    writing = asyncio.Event()

    async def slow_flush() -> tuple[list[UUID], list[UUID]]:
        outcome = await flush()
        if outcome[0]:  # written; reported half a second later
            writing.set()
            await asyncio.sleep(0.5)
        return outcome

    running.lanes_store.flush = slow_flush  # type: ignore[method-assign]
    task = asyncio.create_task(running.run())
    await wait_until(lambda: following(running))
    store_events(engine, tenants_events([quiet], 3, seed=13))  # its one batch, then nothing
    await wait_until(writing.is_set)
    busy_events = tenants_events([busy], 10, seed=14)  # two batches, delivered one by one
    store_events(engine, busy_events)
    await wait_until(lambda: len(delivered_ids(busy_path)) == len(busy_events), timeout=10)
    running.stop()
    await task
    assert delivered_ids(busy_path) == [str(e.event_id) for e in busy_events]
    assert len(delivered_ids(quiet_path)) == 3
