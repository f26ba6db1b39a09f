"""The destination loop over an in-memory source: no store, only the `BatchSource` protocol.

The store-backed sources are tested with real stores in tests/integration; here the loop's
own decisions are checked against a list of events and a scripted peer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from uuid import UUID, uuid4

from xavyo_siem.delivery import Delivered, DeliveryResult, Record, Rejected, RetryLater
from xavyo_siem.format import to_json
from xavyo_siem.model import (
    AuditEvent,
    CircuitState,
    DeliveryType,
    ExportFormat,
    RateLimit,
    SiemDestination,
)
from xavyo_siem.pipeline import (
    DestinationLoop,
    PipelineSettings,
    RetryPolicy,
    SourcePage,
    SourceStart,
    TokenBucket,
)
from xavyo_siem.sample import generate_events

FAST = PipelineSettings(poll_interval_s=0.001, retry=RetryPolicy(base_s=0.0001, cap_s=0.001))
Handler = Callable[[Sequence[Record]], DeliveryResult]


class ListSource:
    """Events of a list, the position an index into it; records every call the loop makes."""

    def __init__(self, events: list[AuditEvent], replay: list[tuple[int, AuditEvent]]) -> None:
        self.events = events
        self.replay = replay
        self.exhausted = False
        self.positions: list[int] = []
        self.failures: list[str] = []
        self.settled: list[tuple[list[int], dict[int, str]]] = []

    async def begin(self) -> SourceStart[int]:
        return SourceStart(0)

    async def read(self, *, after: int, limit: int) -> SourcePage[int] | None:
        page = self.events[after : after + limit]
        return SourcePage(page, after + len(page)) if page else None

    async def nothing_waits(self, *, after: int) -> bool:
        return after == len(self.events)

    async def record_delivered(
        self,
        *,
        position: int,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        self.positions.append(position)

    async def record_failure(
        self, *, reason: str, circuit_state: CircuitState, misconfigured: bool
    ) -> None:
        self.failures.append(reason)

    async def refresh_lag(self, *, position: int) -> None:
        pass

    async def read_replay(self, *, limit: int) -> list[tuple[int, AuditEvent]]:
        letters, self.replay = self.replay[:limit], self.replay[limit:]
        return letters

    async def settle_replay(self, *, delivered: Sequence[int], refused: Mapping[int, str]) -> None:
        self.settled.append((list(delivered), dict(refused)))


class ScriptedPeer:
    """A transport answering from `handler`; it keeps every batch it was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.batches: list[list[str]] = []

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        self.batches.append([record.event_id for record in records])
        return self.handler(records)

    async def check(self) -> DeliveryResult:
        return Delivered()

    async def aclose(self) -> None:
        pass


def destination(tenant: UUID, rate_limit: RateLimit | None = None) -> SiemDestination:
    return SiemDestination(
        id=uuid4(),
        tenant_id=tenant,
        name="in-memory",
        delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON,
        endpoint="file:///dev/null",
        rate_limit=rate_limit,
    )


async def deliver(
    events: list[AuditEvent],
    peer: ScriptedPeer,
    *,
    batch_size: int,
    replay: list[tuple[int, AuditEvent]] | None = None,
) -> ListSource:
    """Run a loop over `events` until it has caught up, then stop it."""
    source = ListSource(events, replay or [])
    loop = DestinationLoop(
        destination=destination(events[0].tenant_id),
        source=source,
        transport=peer,
        formatter=to_json,
        batch_size=batch_size,
        settings=FAST,
    )
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(loop.caught_up.wait(), 10)
    loop.stop()
    assert await asyncio.wait_for(task, 10) is False
    return source


def ids(events: Sequence[AuditEvent]) -> list[str]:
    return [str(event.event_id) for event in events]


async def test_a_retried_batch_goes_again_before_anything_newer_and_moves_nothing_first() -> None:
    """A retry-later answer resends the same batch before the next one, and the position
    moves only after each acceptance, in batches of the given size."""
    events = list(generate_events(120, 1, seed=1))
    answers = iter([RetryLater("503"), Delivered(), Delivered(), Delivered()])
    peer = ScriptedPeer(lambda records: next(answers))
    source = await deliver(events, peer, batch_size=50)
    assert peer.batches == [
        ids(events[:50]),
        ids(events[:50]),
        ids(events[50:100]),
        ids(events[100:]),
    ]
    assert source.failures == ["503"]
    assert source.positions == [50, 100, 120]


async def test_dead_letters_asked_again_go_first_and_are_settled_through_the_source() -> None:
    """Replayed dead letters are sent before new events; the source settles the delivered
    and the refused ones by their dead-letter ids, and the position does not move for them."""
    events = list(generate_events(10, 1, seed=2))
    replay = [(7, events[2]), (8, events[5])]
    refuse = str(events[5].event_id)

    def answer(records: Sequence[Record]) -> DeliveryResult:
        bad = {i: "still refused" for i, r in enumerate(records) if r.event_id == refuse}
        return Rejected(bad) if bad and len(records) == 2 else Delivered()

    peer = ScriptedPeer(answer)
    source = await deliver(events, peer, batch_size=50, replay=replay)
    assert peer.batches[0] == ids([events[2], events[5]])
    assert source.settled == [([7], {8: "still refused"})]
    assert source.positions == [10]


def test_the_batch_size_is_capped_by_the_rate_limits_burst() -> None:
    """The loop reads at most the burst of its rate limit (its own, or a shared bucket's)."""
    tenant = uuid4()
    peer = ScriptedPeer(lambda records: Delivered())
    source = ListSource([], [])

    def loop(**options: object) -> DestinationLoop:
        return DestinationLoop(
            source=source, transport=peer, formatter=to_json, settings=FAST,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip

    assert loop(destination=destination(tenant), batch_size=500).batch_size == 500
    limited = destination(tenant, RateLimit(100, 20))
    assert loop(destination=limited, batch_size=500).batch_size == 20
    assert loop(destination=limited, batch_size=5).batch_size == 5
    shared = TokenBucket(100, 10, clock=lambda: 0.0, sleep=asyncio.sleep)
    assert loop(destination=limited, batch_size=500, bucket=shared).batch_size == 10
