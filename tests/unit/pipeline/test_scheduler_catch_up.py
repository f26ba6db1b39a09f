"""A lane behind the feed reads its backlog until it reaches the feed's mark, even when its
last short page goes out while the feed has moved past it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import uuid4

from lane_stores import MemoryStore
from xavyo_siem.delivery.base import Delivered, DeliveryResult, Record
from xavyo_siem.model import AuditEvent, DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import DestinationComponents, SourcePage
from xavyo_siem.pipeline.scheduler import Scheduler
from xavyo_siem.sample import generate_events


class _Sink:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        self.sent += [record.event_id for record in records]
        return Delivered()

    async def check(self) -> DeliveryResult:
        return Delivered()

    async def aclose(self) -> None:
        return None


class _Backlog(MemoryStore):
    """The store side: the tenant's events by position (1, 2, ...), of which only the first
    `final` can be read yet; progress is noted, and written when the test says."""

    def __init__(self, events: list[AuditEvent], final: int) -> None:
        super().__init__()
        self.events, self.final = events, final
        self.noted: list[Lane] = []

    async def read_backlog(self, lane: Lane, *, after: Any, limit: int) -> SourcePage[Any] | None:
        upto = min(after + limit, self.final)
        if upto <= after:
            return None
        return SourcePage(self.events[after:upto], upto)

    def note_delivered(self, lane: Lane, **_: Any) -> None:
        self.noted.append(lane)


async def test_a_lane_whose_last_short_page_is_sent_reads_again_when_the_feed_moved_on() -> None:
    """The lane's read finds the end (a short page) while the feed's mark for its tenant is
    already further; once that page's progress is written the lane reads again and gets
    every event, instead of waiting for a wake-up that never comes."""
    tenant = uuid4()
    events = [replace(e, tenant_id=tenant) for e in generate_events(30, 1, seed=5)]
    store = _Backlog(events, final=10)
    sink = _Sink()
    destination = SiemDestination(
        id=uuid4(), tenant_id=tenant, name="d", delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON, endpoint="file:///dev/null",
    )  # fmt: skip

    async def open_components(_: SiemDestination) -> DestinationComponents:
        return DestinationComponents(sink, lambda e: str(e.event_id), 1000)

    scheduler = Scheduler(store=store)
    lane = Lane(destination=destination, position=0, open_components=open_components)
    scheduler.add(lane, mark=30)  # the feed has seen the tenant's events up to 30
    assert not lane.following

    async def run_until(done: Any) -> None:
        for _ in range(200):
            if done():
                return
            if store.noted:  # the worker's flush: every noted lane's progress is written
                written, store.noted = store.noted, []
                store.final = 30  # meanwhile, the rest became final
                scheduler.written(each.id for each in written)
            scheduler.start_due()
            await asyncio.sleep(0)
        raise AssertionError(f"stuck after {len(sink.sent)} events: due {lane.due}")

    await run_until(lambda: len(sink.sent) == 30)
    assert sink.sent == [str(e.event_id) for e in events]
