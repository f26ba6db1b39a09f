"""The delivery loop's decisions on both store backends, with a scripted transport.

The transport here is a test double built from a handler (as httpx's MockTransport): it
stands for the peer's *answers*, which real-peer tests cover elsewhere; what is under test is
what the loop does with each answer: cursor, health, dead letters, order, no loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine

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
from xavyo_siem.runtime import streaming_loop
from xavyo_siem.sample import generate_events
from xavyo_siem.store import append_events
from xavyo_siem.store.dead_letters import list_dead_letters, request_replay
from xavyo_siem.store.leases import LeaseLost, acquire_lease
from xavyo_siem.store.state import read_health, read_state

Handler = Callable[[Sequence[Record]], DeliveryResult]
FAST = PipelineSettings(
    poll_interval_s=0.01, retry=RetryPolicy(base_s=0.001, cap_s=0.01, misconfigured_cap_s=0.02)
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
    return events


def streaming(
    engine: Engine,
    destination: SiemDestination,
    transport: ScriptedTransport,
    *,
    formatter: Callable[[AuditEvent], str] = to_json,
    lease: object = None,
) -> DestinationLoop:
    """The destination's streaming loop, with its batch size from its validated config."""
    config = check_destination(spec_of(destination), development=False).config
    return streaming_loop(
        engine=engine,
        destination=destination,
        components=DestinationComponents(transport, formatter, config.batch_max_events),
        lease=lease,  # type: ignore[arg-type]
        settings=FAST,
    )


async def deliver(
    engine: Engine,
    destination: SiemDestination,
    transport: ScriptedTransport,
    *,
    lease: object = None,
) -> DestinationLoop:
    """Run the loop until it has caught up (or stopped on its own), then stop it."""
    loop = streaming(engine, destination, transport, lease=lease)
    task = asyncio.create_task(loop.run())
    for _ in range(2000):
        if loop.caught_up.is_set() or task.done():
            break
        await asyncio.sleep(0.01)
    loop.stop()
    await asyncio.wait_for(task, 10)
    return loop


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
    """A 503-like answer makes the loop resend the identical batch; nothing overtakes it."""
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
    loop = streaming(engine, destination, transport)
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.3)
    with engine.connect() as conn:
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert state is not None
    assert health is not None
    assert state.cursor.seq == 0
    assert health.circuit_state is CircuitState.OPEN
    assert health.circuit_reason == "403 token disabled"
    assert loop.stuck_reason == "403 token disabled"
    attempts = len(transport.batches)
    assert attempts < 40, "a misconfigured destination must not be retried in a tight loop"
    revoked["on"] = False
    for _ in range(500):
        if loop.caught_up.is_set():
            break
        await asyncio.sleep(0.01)
    loop.stop()
    await task
    assert accepted(transport, answers) == [str(e.event_id) for e in events]
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert health is not None
    assert health.circuit_state is CircuitState.CLOSED


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
    """After `dead-letters replay`, the loop resends the event and drops the dead letter."""
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
    await deliver(engine, destination, transport)
    assert [r.event_id for r in transport.batches[-1]] == [poison]
    with engine.connect() as conn:
        assert (
            list_dead_letters(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
            == []
        )


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


async def test_a_worker_that_lost_its_lease_cannot_move_the_cursor(engine: Engine) -> None:
    """Once another worker took the lease over, the old loop's delivery is not recorded."""
    events = store(engine, 30, seed=7)
    destination = add(engine, events[0].tenant_id)
    with engine.begin() as conn:
        old = acquire_lease(
            conn,
            destination_id=destination.id,
            owner="old",
            ttl=timedelta(seconds=-1),
            now=datetime.now(UTC),
        )
        new = acquire_lease(
            conn,
            destination_id=destination.id,
            owner="new",
            ttl=timedelta(seconds=30),
            now=datetime.now(UTC),
        )
    assert old is not None
    assert new is not None
    assert new.epoch == old.epoch + 1
    transport = ScriptedTransport(lambda records: Delivered())
    with pytest.raises(LeaseLost):
        await deliver(engine, destination, transport, lease=old)
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
    transport = ScriptedTransport(lambda records: Delivered())
    await deliver(engine, destination, transport)
    sent = [r.event_id for batch in transport.batches for r in batch]
    expected = (old if start == "beginning" else []) + new
    assert sent == [str(e.event_id) for e in expected]


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
    loop = streaming(engine, destination, transport, formatter=counting)
    task = asyncio.create_task(loop.run())
    for _ in range(1000):
        if loop.caught_up.is_set():
            break
        await asyncio.sleep(0.01)
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert [r.event_id for batch in transport.batches for r in batch] == [
        str(e.event_id) for e in events
    ]
    assert ahead_when_answered == [50, 50, 50, 0]  # one batch of 50 ahead, then the end
    assert formatted == [str(e.event_id) for e in events]  # each event formatted once


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
