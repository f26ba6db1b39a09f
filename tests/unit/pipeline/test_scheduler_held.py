"""The scheduler's count of the events the lanes hold from the feed: what the feed waits on
while it reads a backlog, counted over the lanes it gave events to."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID, uuid4

from lane_stores import MemoryStore
from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import DestinationComponents
from xavyo_siem.pipeline.scheduler import HELD_RECOUNT_S, Scheduler
from xavyo_siem.sample import generate_events


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _never_opened(_: SiemDestination) -> DestinationComponents:
    raise AssertionError("no turn runs in these tests")


def _lane(tenant: UUID, clock: _Clock) -> Lane:
    destination = SiemDestination(
        id=uuid4(), tenant_id=tenant, name="d", delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON, endpoint="file:///dev/null",
    )  # fmt: skip
    return Lane(destination=destination, position=0, open_components=_never_opened, clock=clock)


def test_held_counts_the_events_routed_to_lanes_until_they_are_taken_or_the_lane_goes() -> None:
    """Events routed to following lanes count (a lane switched off or waiting on a backoff
    does not), a lane whose buffer emptied stops counting, and so does a removed lane."""
    clock = _Clock()
    scheduler = Scheduler(store=MemoryStore(), clock=clock)
    quiet = [_lane(uuid4(), clock) for _ in range(50)]  # never given an event
    busy, waiting, other = uuid4(), uuid4(), uuid4()
    lanes = {tenant: _lane(tenant, clock) for tenant in (busy, waiting, other)}
    for lane in [*quiet, *lanes.values()]:
        scheduler.add(lane, mark=None)
    events = list(generate_events(9, 1, seed=3))
    scheduler.route(
        {
            tenant: [(n + 1, replace(e, tenant_id=tenant)) for n, e in enumerate(events[i::3])]
            for i, tenant in enumerate(lanes)
        }
    )
    lanes[waiting].due = clock.now + 30  # a backoff: nothing waits for it
    assert scheduler.held() == 6

    lanes[busy].buffer.clear()  # its batch was taken
    assert scheduler.held() == 6  # the count is at most HELD_RECOUNT_S old
    clock.now += HELD_RECOUNT_S
    assert scheduler.held() == 3

    scheduler.remove(lanes[other].id)
    clock.now += HELD_RECOUNT_S
    assert scheduler.held() == 0
    clock.now += 31  # the backoff is over: its events count again
    assert scheduler.held() == 3
