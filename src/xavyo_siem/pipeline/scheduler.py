"""The worker's scheduler: turns for the lanes that are due, and the feed's fan-out.

It keeps the lanes in a heap by due time. A lane gets one turn at a time, one capped batch
per turn, and goes to the back of the queue after it: a busy tenant cannot starve a quiet
one. At most `max_turns` turns run at once, and at most `max_behind` of them read a
backlog, so a tenant backfilling millions of events takes a bounded share.

`route` fans a page of the change feed out to the lanes of each event's tenant, and keeps
the feed's mark per tenant: a lane behind joins the feed only once its own reads have
reached the mark, so no event falls between its backlog and the feed.

Every turn runs inside an isolation boundary: whatever escapes it (a library error, a bug,
an unexpected answer) is recorded as that destination's failure, opens its circuit and
closes its transport; the worker and every other lane carry on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from xavyo_siem.model import AuditEvent
from xavyo_siem.pipeline.lane import Lane, LaneStore, SourceUnavailable, drop_outcome

__all__ = ["HELD_RECOUNT_S", "Scheduler"]

log = logging.getLogger("xavyo_siem.pipeline")

# After the store was unreachable, a lane tries again after this long.
_SOURCE_RETRY_S = 1.0
HELD_RECOUNT_S = 0.05  # how old the count of the events the lanes hold may be


class Scheduler:
    """Runs due lanes' turns (see the module docstring)."""

    def __init__(
        self,
        *,
        store: LaneStore,
        max_turns: int = 64,
        max_behind: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_turns = max_turns
        self.max_behind = max_behind
        self.lanes: dict[UUID, Lane] = {}
        self.turns: dict[UUID, asyncio.Task[None]] = {}
        self._reading: set[UUID] = set()  # the lanes in `turns` whose turn reads a backlog
        self.paused = False
        self.changed = asyncio.Event()  # a turn ended or a lane became due
        self._by_tenant: dict[UUID, list[Lane]] = {}
        self._marks: dict[UUID, Any] = {}
        self._heap: list[tuple[float, int, UUID]] = []
        self._order = itertools.count()
        self._clock = clock
        self._held, self._held_at = 0, -1.0
        self._holding: set[Lane] = set()  # the lanes the feed gave events since their last count

    # -- lanes ------------------------------------------------------------------------------

    def add(self, lane: Lane, *, mark: Any | None) -> None:
        """Serve `lane`; `mark` is the position of its tenant's last event when the feed
        does not know the tenant yet (None: no event yet, or the feed knows it)."""
        self.lanes[lane.id] = lane
        self._by_tenant.setdefault(lane.tenant_id, []).append(lane)
        known = self._marks.get(lane.tenant_id)
        if known is None or (mark is not None and mark > known):
            self._marks[lane.tenant_id] = mark
        if self._caught_up(lane):
            lane.join()
        lane.due = None  # idle until the feed offers it events, or it has work now:
        if lane.has_work():
            self.wake(lane)

    def remove(self, lane_id: UUID) -> Lane | None:
        """Stop serving a lane (a turn it is in goes on; see `settle`)."""
        lane = self.lanes.pop(lane_id, None)
        if lane is None:
            return None
        siblings = self._by_tenant.get(lane.tenant_id, [])
        if lane in siblings:
            siblings.remove(lane)
        if not siblings:
            self._by_tenant.pop(lane.tenant_id, None)
            self._marks.pop(lane.tenant_id, None)
        self._holding.discard(lane)
        return lane

    def held(self) -> int:
        """Events from the feed held by lanes that are sending or about to send them,
        counted again at most every `HELD_RECOUNT_S`. A lane waiting on a backoff, a rate
        limit or an open circuit, or switched off, does not count: nothing waits for a
        stuck one. A count walks the lanes the feed gave events to, not every lane (a
        backlog walked through the feed reaches a few hundred of ten thousand at a time)."""
        now = self._clock()
        if now >= self._held_at + HELD_RECOUNT_S:
            self._held_at = now
            holding = self._holding
            holding.difference_update([lane for lane in holding if not lane.buffer])
            self._held = sum(
                len(lane.buffer)
                for lane in holding
                if lane.switched_off is None
                and (lane.due is None or lane.due <= now or lane.id in self.turns)
            )
        return self._held

    def tenants(self) -> Iterable[UUID]:
        return self._by_tenant.keys()

    def written(self, lane_ids: Iterable[UUID]) -> None:
        """These lanes' progress was written: those with more to do are due again."""
        for lane_id in lane_ids:
            lane = self.lanes.get(lane_id)
            # Only a lane waiting for its write goes on; one whose failure was written keeps
            # its backoff.
            if lane is not None and lane.writing and lane.written():
                self.wake(lane)

    def replay(self, lane_ids: Iterable[UUID]) -> None:
        """These lanes have dead letters an operator asked to send again."""
        for lane_id in lane_ids:
            lane = self.lanes.get(lane_id)
            if lane is not None and not lane.replay_waiting:
                lane.replay_waiting = True
                self.wake(lane)

    def wake(self, lane: Lane) -> None:
        """Make an idle lane due now. A lane already due keeps its time, so new events
        never cut a backoff, a rate limit's delay or an open circuit's wait short; a lane in
        a turn, or waiting for its progress to be written, is scheduled when that ends."""
        if lane.id in self.turns or lane.writing or lane.due is not None:
            return
        lane.due = self._clock()
        self._push(lane)

    def _push(self, lane: Lane) -> None:
        assert lane.due is not None
        heapq.heappush(self._heap, (lane.due, next(self._order), lane.id))
        self.changed.set()

    # -- the feed ---------------------------------------------------------------------------

    def route(self, by_tenant: dict[UUID, list[tuple[Any, AuditEvent]]]) -> None:
        """Offer each tenant's new events to its lanes that follow the feed."""
        self._held_at = -1.0  # they hold more now: count again when asked
        for tenant, events in by_tenant.items():
            if not events:
                continue
            mark = self._marks.get(tenant)
            if mark is None or events[-1][0] > mark:  # never back: see `add`
                self._marks[tenant] = events[-1][0]
            for lane in self._by_tenant.get(tenant, ()):
                if not lane.following:
                    continue
                try:
                    took = lane.offer(events)
                except Exception as exc:  # the isolation boundary, for the filter too
                    self._crashed(lane, exc)
                    if lane.id not in self.turns:
                        self._push(lane)
                    continue
                if took:
                    self._holding.add(lane)
                if took or not lane.following:
                    self.wake(lane)

    def _caught_up(self, lane: Lane) -> bool:
        """Nothing of the lane's tenant lies between what the lane has and the feed."""
        mark = self._marks.get(lane.tenant_id)
        return mark is None or lane.seen >= mark

    # -- turns ------------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest waiting lane is due (None: none waits)."""
        while self._heap:
            due, _, lane_id = self._heap[0]
            lane = self.lanes.get(lane_id)
            if lane is None or lane.due is None or lane.due != due or lane_id in self.turns:
                heapq.heappop(self._heap)  # stale entry
                continue
            return due
        return None

    def start_due(self) -> int:
        """Start turns for the lanes that are due, up to the limits; how many started."""
        if self.paused:
            return 0
        now = self._clock()
        behind = len(self._reading)
        deferred: list[tuple[float, int, UUID]] = []
        started = 0
        while self._heap and len(self.turns) < self.max_turns:
            due, order, lane_id = self._heap[0]
            if due > now:
                break
            heapq.heappop(self._heap)
            lane = self.lanes.get(lane_id)
            if lane is None or lane.due is None or lane.due != due or lane_id in self.turns:
                continue
            if not lane.following and lane.pending is None and not lane.buffer:
                if behind >= self.max_behind:
                    deferred.append((due, order, lane_id))
                    continue
                behind += 1
                self._reading.add(lane_id)
            self.turns[lane_id] = asyncio.create_task(
                self._turn(lane), name=f"turn:{lane.destination.name}"
            )
            started += 1
        for entry in deferred:
            heapq.heappush(self._heap, entry)
        return started

    async def _turn(self, lane: Lane) -> None:
        try:
            await lane.turn(self.store)
            if not lane.following and lane.at_end and lane.pending is None:
                self._join_or_read_again(lane)
        except SourceUnavailable:
            lane.due = self._clock() + _SOURCE_RETRY_S
        except Exception as exc:  # the isolation boundary
            self._crashed(lane, exc)
        finally:
            self.turns.pop(lane.id, None)
            self._reading.discard(lane.id)
            current = self.lanes.get(lane.id)  # this lane, or one that replaced it meanwhile
            if current is not None and current.due is not None and not current.writing:
                self._push(current)
            self.changed.set()

    def _join_or_read_again(self, lane: Lane) -> None:
        if self._caught_up(lane):
            lane.join()
        else:  # the feed passed the lane while it read: read up to the mark
            lane.at_end = False
        # A lane whose batch's progress is not written yet is due once it is (`written`
        # wakes it); a due time set now would make that wake-up a no-op, and the lane,
        # in no queue, would never run again.
        lane.due = self._clock() if lane.has_work() and not lane.writing else None

    def _crashed(self, lane: Lane, exc: Exception) -> None:
        reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
        log.error("destination %s: %s", lane.destination.name, reason, exc_info=exc)
        # Whatever the lane held was handled by code that failed: read it again from the
        # store, from the last accepted position, next time.
        lane.pending = None
        lane.taken = lane.acked
        lane.fall_behind()
        try:
            lane.fail(self.store, reason, misconfigured=False, open_circuit=True)
        except Exception:  # recording must not break the boundary itself
            log.exception("destination %s: could not record the failure", lane.destination.name)
            lane.due = self._clock() + 60.0
        if lane.components is not None:
            task = asyncio.create_task(lane.close(), name=f"close:{lane.destination.name}")
            task.add_done_callback(drop_outcome)

    # -- stopping ---------------------------------------------------------------------------

    async def settle(self, *, grace_s: float) -> None:
        """Let the turns in flight end within `grace_s`, then abandon the rest (a turn
        abandoned mid-send has noted nothing: its batch is sent again by whoever next
        holds the destination)."""
        self.paused = True
        running = list(self.turns.values())
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)
