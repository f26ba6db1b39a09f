"""What a worker does with each answer of a streamed destination, on both store backends,
with a scripted transport; and the delivery loop's read-ahead that batch exports run on.

The transport here is a test double built from a handler (as httpx's MockTransport): it
stands for the peer's *answers*, which real-peer tests cover elsewhere; what is under test is
what a real `Worker` does with each answer: cursor, health, dead letters, order, no loss.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from store_final import wait_until_final
from xavyo_siem import destinations as manage
from xavyo_siem.delivery import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
)
from xavyo_siem.destinations import DestinationSpec, check_destination, spec_of
from xavyo_siem.format import to_json
from xavyo_siem.model import (
    AuditEvent,
    CircuitState,
    DeliveryHealth,
    DeliveryType,
    EventCategory,
    EventFilter,
    ExportFormat,
    SiemDestination,
)
from xavyo_siem.pipeline import (
    DestinationComponents,
    DestinationLoop,
    PipelineSettings,
    RetryPolicy,
    SourcePage,
    SourceStart,
)
from xavyo_siem.runtime import Worker, WorkerSettings
from xavyo_siem.sample import generate_events
from xavyo_siem.store import append_events
from xavyo_siem.store.dead_letters import list_dead_letters, request_replay
from xavyo_siem.store.engine import in_snapshot_async
from xavyo_siem.store.events import EventCursor, read_events_after
from xavyo_siem.store.leases import acquire_leases, release_leases
from xavyo_siem.store.state import read_health, read_state

Handler = Callable[[Sequence[Record]], DeliveryResult]
WORKER_DELIVERED_TOTAL = "xavyo_siem_worker_events_delivered_total"
FAST = PipelineSettings(
    poll_interval_s=0.01, retry=RetryPolicy(base_s=0.001, cap_s=0.01, misconfigured_cap_s=0.02)
)
# A worker that notices new leases, replays and events within a few hundredths of a second.
QUICK = WorkerSettings(
    lease_ttl_s=5,
    scan_interval_s=0.05,
    listen_poll_s=0.05,
    pipeline=replace(FAST, poll_interval_s=0.05),
)


class ScriptedTransport:
    """A transport whose answers come from `handler`; it records every batch it was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.batches: list[list[Record]] = []
        self.closed = False

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        self.batches.append(list(records))
        return self.handler(records)

    async def check(self) -> DeliveryResult:
        return Delivered()

    async def aclose(self) -> None:
        self.closed = True


def add(engine: Engine, tenant: UUID, **spec_changes: object) -> SiemDestination:
    spec = DestinationSpec(
        name=f"d-{uuid4().hex[:6]}",
        delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON,
        endpoint="file:///dev/null",
        options={"start": "beginning", "batch_max_events": "50"},
    )
    return manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=replace(spec, **spec_changes),
        secret=None,
        keyring=None,
        development=False,  # type: ignore[arg-type]
    )


def store(engine: Engine, count: int, seed: int, tenants: int = 1) -> list[AuditEvent]:
    events = list(generate_events(count, tenants, seed=seed))
    with engine.begin() as conn:
        append_events(conn, events)
    wait_until_final(engine)  # another test's transaction may hold the horizon back
    return events


def components_of(
    destination: SiemDestination,
    transport: ScriptedTransport,
    formatter: Callable[[AuditEvent], str] = to_json,
) -> DestinationComponents:
    """The destination's components with `transport`, its batch size and delivery policy from
    its validated settings."""
    checked = check_destination(spec_of(destination), development=False)
    return DestinationComponents(
        transport, formatter, checked.config.batch_max_events, checked.policy
    )


def worker_for(
    engine: Engine,
    destination: SiemDestination,
    transport: ScriptedTransport,
    *,
    settings: WorkerSettings = QUICK,
) -> Worker:
    """A worker over the store whose one destination, `destination`, sends through `transport`."""
    components = components_of(destination, transport)

    async def open_components(_: SiemDestination) -> DestinationComponents:
        return components

    return Worker(engine=engine, open_components=open_components, settings=settings)


async def deliver(
    engine: Engine, destination: SiemDestination, transport: ScriptedTransport
) -> None:
    """Run a worker until every destination has caught up (`run --drain`), none stuck."""
    stuck = await asyncio.wait_for(worker_for(engine, destination, transport).run(drain=True), 60)
    assert stuck == []


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def health_of(engine: Engine, destination: SiemDestination) -> DeliveryHealth:
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert health is not None
    return health


def accepted(transport: ScriptedTransport, answers: list[DeliveryResult]) -> list[str]:
    ids: list[str] = []
    for batch, answer in zip(transport.batches, answers, strict=True):
        rejected = answer.by_index if isinstance(answer, Rejected) else {}
        if isinstance(answer, Delivered | Rejected):
            ids += [r.event_id for i, r in enumerate(batch) if i not in rejected]
    return ids


def recording(handler: Handler) -> tuple[Handler, list[DeliveryResult]]:
    answers: list[DeliveryResult] = []

    def answer(records: Sequence[Record]) -> DeliveryResult:
        result = handler(records)
        answers.append(result)
        return result

    return answer, answers


async def test_every_event_is_delivered_once_in_store_order(engine: Engine) -> None:
    """With a peer that accepts everything, each event is sent once, in order, in batches."""
    events = store(engine, 230, seed=1)
    destination = add(engine, events[0].tenant_id)
    transport = ScriptedTransport(lambda records: Delivered())
    await deliver(engine, destination, transport)
    sent = [r.event_id for batch in transport.batches for r in batch]
    assert sent == [str(e.event_id) for e in events]
    assert max(len(batch) for batch in transport.batches) == 50
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert health is not None
    assert (health.successes, health.failures, health.circuit_state) == (
        230,
        0,
        CircuitState.CLOSED,
    )


async def test_retry_later_resends_the_same_batch_before_anything_newer(engine: Engine) -> None:
    """A 503-like answer makes the worker resend the identical batch; nothing overtakes it."""
    events = store(engine, 120, seed=2)
    destination = add(engine, events[0].tenant_id)
    calls = {"n": 0}

    def flaky(records: Sequence[Record]) -> DeliveryResult:
        calls["n"] += 1
        return RetryLater("503 busy") if calls["n"] in (2, 3, 4) else Delivered()

    handler, answers = recording(flaky)
    transport = ScriptedTransport(handler)
    await deliver(engine, destination, transport)
    assert (
        transport.batches[1] == transport.batches[2] == transport.batches[3] == transport.batches[4]
    )
    assert accepted(transport, answers) == [str(e.event_id) for e in events]
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert health is not None
    assert (health.successes, health.failures, health.consecutive_failures) == (120, 3, 0)


async def test_misconfigured_keeps_the_cursor_and_backs_off_then_resumes(engine: Engine) -> None:
    """A revoked token opens the circuit with the reason and moves no cursor; fixing it resumes."""
    events = store(engine, 60, seed=3)
    destination = add(engine, events[0].tenant_id)
    revoked = {"on": True}
    handler, answers = recording(
        lambda records: Misconfigured("403 token disabled") if revoked["on"] else Delivered()
    )
    transport = ScriptedTransport(handler)
    running = worker_for(engine, destination, transport)
    task = asyncio.create_task(running.run())
    await until(
        lambda: health_of(engine, destination).circuit_state is CircuitState.OPEN,
        "the circuit to open",
    )
    attempts_when_open = len(transport.batches)
    await asyncio.sleep(0.3)
    with engine.connect() as conn:
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert state is not None
    assert health is not None
    assert state.cursor.seq == 0
    assert health.circuit_state is CircuitState.OPEN
    assert health.circuit_reason == "403 token disabled"
    assert running.scheduler is not None
    assert running.scheduler.lanes[destination.id].stuck_reason == "403 token disabled"
    attempts = len(transport.batches) - attempts_when_open
    assert attempts < 40, "a misconfigured destination must not be retried in a tight loop"
    revoked["on"] = False
    await until(lambda: len(accepted(transport, answers)) >= len(events), "delivery after the fix")
    running.stop()
    await asyncio.wait_for(task, 30)
    assert accepted(transport, answers) == [str(e.event_id) for e in events]
    assert health_of(engine, destination).circuit_state is CircuitState.CLOSED


async def test_rejected_records_become_dead_letters_and_the_rest_flow(engine: Engine) -> None:
    """A poison event is dead-lettered with the peer's reason; every other event is delivered."""
    events = store(engine, 80, seed=4)
    poison = str(events[17].event_id)
    destination = add(engine, events[0].tenant_id)

    def refuse_poison(records: Sequence[Record]) -> DeliveryResult:
        bad = {
            i: "code 6: invalid data format" for i, r in enumerate(records) if r.event_id == poison
        }
        return Rejected(bad) if bad else Delivered()

    handler, answers = recording(refuse_poison)
    transport = ScriptedTransport(handler)
    await deliver(engine, destination, transport)
    assert accepted(transport, answers) == [
        str(e.event_id) for e in events if str(e.event_id) != poison
    ]
    with engine.connect() as conn:
        letters = list_dead_letters(
            conn, tenant_id=destination.tenant_id, destination_id=destination.id
        )
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert [(str(d.event_id), d.reason) for d in letters] == [
        (poison, "code 6: invalid data format")
    ]
    assert state is not None
    assert state.cursor.seq > 0


async def test_replayed_dead_letter_is_sent_again_and_removed(engine: Engine) -> None:
    """After `dead-letters replay`, the worker resends the event, drops the dead letter and
    counts the event as delivered."""
    events = store(engine, 10, seed=5)
    poison = str(events[3].event_id)
    destination = add(engine, events[0].tenant_id)
    refuse = {"on": True}

    def answer(records: Sequence[Record]) -> DeliveryResult:
        bad = {i: "refused" for i, r in enumerate(records) if refuse["on"] and r.event_id == poison}
        return Rejected(bad) if bad else Delivered()

    transport = ScriptedTransport(answer)
    await deliver(engine, destination, transport)
    refuse["on"] = False
    with engine.begin() as conn:
        assert (
            request_replay(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
            == 1
        )
    delivered_before = REGISTRY.get_sample_value(WORKER_DELIVERED_TOTAL) or 0.0
    await deliver(engine, destination, transport)
    assert [r.event_id for r in transport.batches[-1]] == [poison]
    with engine.connect() as conn:
        assert (
            list_dead_letters(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
            == []
        )
    # The replayed event reached the destination and is counted as delivered.
    assert REGISTRY.get_sample_value(WORKER_DELIVERED_TOTAL) == delivered_before + 1


async def test_filters_and_tenants_hold(engine: Engine) -> None:
    """A destination receives only its tenant's events that match its filter, and all of them."""
    events = store(engine, 400, seed=6, tenants=3)
    tenant = events[0].tenant_id
    wanted = EventFilter(categories=frozenset({EventCategory.AUTHENTICATION}), min_severity=3)
    destination = add(engine, tenant, filters=wanted)
    transport = ScriptedTransport(lambda records: Delivered())
    await deliver(engine, destination, transport)
    sent = [r.event_id for batch in transport.batches for r in batch]
    assert sent == [str(e.event_id) for e in events if e.tenant_id == tenant and wanted.matches(e)]


async def test_a_worker_that_lost_its_lease_cannot_move_the_cursor(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Once another worker took the lease over, the old worker's delivery is not recorded."""
    events = store(engine, 30, seed=7)
    destination = add(engine, events[0].tenant_id)
    on_the_wire, answer = asyncio.Event(), asyncio.Event()

    class HeldPeer(ScriptedTransport):
        """Accepts a batch, but answers only once the test lets it."""

        async def send(self, records: Sequence[Record]) -> DeliveryResult:
            self.batches.append(list(records))
            on_the_wire.set()
            await answer.wait()
            return Delivered()

    transport = HeldPeer(lambda records: Delivered())
    # Leases renewed every 20 s: the old worker learns of the takeover only when it writes.
    old = worker_for(
        engine, destination, transport,
        settings=replace(QUICK, lease_ttl_s=60, scan_interval_s=60),
    )  # fmt: skip
    task = asyncio.create_task(old.run())
    await asyncio.wait_for(on_the_wire.wait(), 30)
    epoch = old.lanes_store.epochs[destination.id]
    with engine.begin() as conn:
        # Its lease lapses (the worker paused past it) and another worker takes it over.
        assert release_leases(conn, owner=old.owner) == 1
        taken = acquire_leases(
            conn, owner="new", limit=1, ttl=timedelta(seconds=30), now=datetime.now(UTC)
        )
    assert taken == {destination.id: epoch + 1}
    with caplog.at_level(logging.WARNING, logger="xavyo_siem.pipeline"):
        answer.set()
        await until(
            lambda: old.scheduler is not None and destination.id not in old.scheduler.lanes,
            "the old worker to give the destination up",
        )
    old.stop()
    await asyncio.wait_for(task, 30)
    assert [len(batch) for batch in transport.batches] == [30]  # delivered, never recorded
    assert "lease lost" in caplog.text
    with engine.connect() as conn:
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert state is not None
    assert state.cursor.seq == 0


@pytest.mark.parametrize("start", ["now", "beginning"])
async def test_start_position_of_a_new_destination(engine: Engine, start: str) -> None:
    """`start=now` delivers only later events; `start=beginning` backfills history."""
    old = store(engine, 20, seed=8)
    tenant = old[0].tenant_id
    destination = add(engine, tenant, options={"start": start})
    new = [replace(e, tenant_id=tenant) for e in generate_events(5, 1, seed=9)]
    with engine.begin() as conn:
        append_events(conn, new)
    wait_until_final(engine)
    transport = ScriptedTransport(lambda records: Delivered())
    await deliver(engine, destination, transport)
    sent = [r.event_id for batch in transport.batches for r in batch]
    expected = (old if start == "beginning" else []) + new
    assert sent == [str(e.event_id) for e in expected]


class StoredEvents:
    """A batch-export-like source over a destination's stored events, exhausted at their end;
    what it records stays in memory."""

    def __init__(self, engine: Engine, destination: SiemDestination) -> None:
        self.engine = engine
        self.destination = destination
        self.exhausted = False
        self.positions: list[EventCursor] = []

    async def begin(self) -> SourceStart[EventCursor]:
        return SourceStart(EventCursor())

    async def read(self, *, after: EventCursor, limit: int) -> SourcePage[EventCursor] | None:
        tenant_id, filters = self.destination.tenant_id, self.destination.filters
        page = await in_snapshot_async(
            self.engine,
            lambda conn: read_events_after(
                conn, tenant_id=tenant_id, after=after, limit=limit, filter=filters
            ),
        )
        if page.cursor == after:
            self.exhausted = True
            return None
        return SourcePage(page.events, page.cursor)

    async def nothing_waits(self, *, after: EventCursor) -> bool:
        return True

    async def record_delivered(self, *, position: EventCursor, **_: object) -> None:
        self.positions.append(position)

    async def record_failure(self, **_: object) -> None:
        pass

    async def refresh_lag(self, *, position: EventCursor) -> None:
        pass

    async def read_replay(self, *, limit: int) -> list[tuple[int, AuditEvent]]:
        return []

    async def settle_replay(self, **_: object) -> None:
        pass


async def test_the_next_batch_is_read_while_one_is_on_the_wire(engine: Engine) -> None:
    """While the peer has not answered a batch, the loop reads and formats the next one (one
    batch ahead, no more), and still sends every event once, in order."""
    events = store(engine, 200, seed=41)
    destination = add(engine, events[0].tenant_id)
    formatted: list[str] = []

    def counting(event: AuditEvent) -> str:
        formatted.append(str(event.event_id))
        return to_json(event)

    ahead_when_answered: list[int] = []

    class SlowPeer(ScriptedTransport):
        async def send(self, records: Sequence[Record]) -> DeliveryResult:
            self.batches.append(list(records))
            sent = sum(len(batch) for batch in self.batches)
            for _ in range(500):  # answer once the next batch is formatted, or give up
                if len(formatted) > sent or sent == len(events):
                    break
                await asyncio.sleep(0.01)
            ahead_when_answered.append(len(formatted) - sent)
            return Delivered()

    transport = SlowPeer(lambda records: Delivered())
    source = StoredEvents(engine, destination)
    components = components_of(destination, transport, formatter=counting)
    loop = DestinationLoop(
        destination=destination, source=source, transport=components.transport,
        formatter=components.formatter, batch_size=components.batch_size, settings=FAST,
    )  # fmt: skip
    assert await asyncio.wait_for(loop.run(), 30)  # the end reached, every batch accepted
    assert [r.event_id for batch in transport.batches for r in batch] == [
        str(e.event_id) for e in events
    ]
    assert ahead_when_answered == [50, 50, 50, 0]  # one batch of 50 ahead, then the end
    assert formatted == [str(e.event_id) for e in events]  # each event formatted once
    assert len(source.positions) == 4


class OnePageSource:
    """A batch-export-like source: one page of events, then exhausted for good."""

    def __init__(self, events: list[AuditEvent]) -> None:
        self.events = events
        self.exhausted = False
        self.delivered: list[int] = []

    async def begin(self) -> SourceStart[int]:
        return SourceStart(0)

    async def read(self, *, after: int, limit: int) -> SourcePage[int] | None:
        if after == 0:
            return SourcePage(self.events, 1)
        self.exhausted = True
        return None

    async def nothing_waits(self, *, after: int) -> bool:
        return True

    async def record_delivered(self, *, position: int, delivered: int, **_: object) -> None:
        self.delivered.append(delivered)

    async def record_failure(self, **_: object) -> None:
        pass

    async def refresh_lag(self, *, position: int) -> None:
        pass

    async def read_replay(self, *, limit: int) -> list[tuple[int, AuditEvent]]:
        return []

    async def settle_replay(self, **_: object) -> None:
        pass


@pytest.mark.parametrize("accepts", [True, False])
async def test_an_exhausted_source_is_done_only_once_its_last_batch_is_accepted(
    engine: Engine, accepts: bool
) -> None:
    """The batch read ahead finds the end of a batch export's range while its last batch is
    still refused; stopped then, the loop reports it unfinished (the job must not complete),
    and it reports it finished only once that batch was accepted."""
    events = store(engine, 20, seed=43)
    destination = add(engine, events[0].tenant_id)
    source = OnePageSource(events)
    transport = ScriptedTransport(
        lambda records: Delivered() if accepts else RetryLater("503 busy")
    )
    loop = DestinationLoop(
        destination=destination, source=source, transport=transport, formatter=to_json,
        batch_size=50, settings=FAST,
    )  # fmt: skip
    task = asyncio.create_task(loop.run())
    for _ in range(1000):
        if task.done() or (len(transport.batches) >= 3 and source.exhausted):
            break
        await asyncio.sleep(0.01)
    loop.stop()
    finished = await asyncio.wait_for(task, 10)
    assert source.exhausted  # the read ahead reached the end in both cases
    assert finished is accepts
    assert source.delivered == ([20] if accepts else [])


async def test_a_batch_that_keeps_failing_goes_to_dead_letters_after_max_attempts(
    engine: Engine,
) -> None:
    """With `max_attempts`, a batch still refused after that many tries goes to dead letters
    with the reason, delivery goes on with the next, and a replay sends it once fixed."""
    events = store(engine, 120, seed=41)
    ids = [str(e.event_id) for e in events]
    destination = add(
        engine,
        events[0].tenant_id,
        options={"start": "beginning", "batch_max_events": "50", "max_attempts": "3"},
    )
    poisoned = ids[0]
    transport = ScriptedTransport(
        lambda records: (
            RetryLater("peer says later")
            if any(r.event_id == poisoned for r in records)
            else Delivered()
        )
    )
    await deliver(engine, destination, transport)
    first = transport.batches[0]
    assert [batch for batch in transport.batches if batch[0] == first[0]] == [first] * 3
    with engine.connect() as conn:
        letters = list_dead_letters(
            conn, tenant_id=destination.tenant_id, destination_id=destination.id
        )
    assert sorted(str(letter.event_id) for letter in letters) == sorted(r.event_id for r in first)
    assert all(
        "gave up after 3 attempts" in letter.reason and "peer says later" in letter.reason
        for letter in letters
    )
    delivered = accepted_ids(transport)
    assert sorted(delivered) == sorted(set(ids) - {r.event_id for r in first})

    with engine.begin() as conn:
        request_replay(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    healed = ScriptedTransport(lambda records: Delivered())
    await deliver(engine, destination, healed)
    assert sorted(r.event_id for batch in healed.batches for r in batch) == sorted(
        r.event_id for r in first
    )


def accepted_ids(transport: ScriptedTransport) -> list[str]:
    """The event ids of every batch the scripted transport answered Delivered."""
    return [
        r.event_id
        for batch in transport.batches
        if transport.handler(batch) == Delivered()
        for r in batch
    ]


async def test_breaker_threshold_and_cooldown_come_from_the_destination(engine: Engine) -> None:
    """`breaker_threshold` opens the circuit after that many failures, and an open circuit
    waits `breaker_cooldown_s` between probes instead of the (much shorter) backoff."""
    events = store(engine, 10, seed=43)
    destination = add(
        engine,
        events[0].tenant_id,
        options={"start": "beginning", "breaker_threshold": "2", "breaker_cooldown_s": "0.3"},
    )
    sent_at: list[float] = []

    def refuse(records: Sequence[Record]) -> DeliveryResult:
        sent_at.append(asyncio.get_running_loop().time())
        return RetryLater("down")

    worker = worker_for(engine, destination, ScriptedTransport(refuse))
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: len(sent_at) >= 4, "four attempts")
        await until(
            lambda: health_of(engine, destination).circuit_state is CircuitState.OPEN,
            "the circuit to open",
        )
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at[1:])]
    assert all(gap >= 0.3 for gap in gaps), gaps  # each probe after the circuit opened
