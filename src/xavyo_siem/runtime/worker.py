"""The worker: one change feed fanned out to every destination it leases.

A worker holds leases on about its fair share of the enabled destinations (workers
register with a heartbeat; leases are renewed, taken and given back in bulk, see
store/leases.py) and serves each as a lane (pipeline/lane.py) in one scheduler
(pipeline/scheduler.py). It reads new events once per wake-up, for all of its tenants
(store/feed.py), and routes them in memory to the lanes of their tenant; a lane behind the
feed reads its own backlog first. It wakes when ingest announces new events (PostgreSQL
LISTEN/NOTIFY, or in-process), and otherwise polls slowly. The lanes' cursors and health
are written in bulk: one transaction for every lane's progress since the last (a group
commit; a lane waits for its batch to be written before it sends the next). An idle
destination costs nothing: no reads of its own, no open connection once `idle_close_s`
passed.

The store may go away: the worker then waits, tries again with backoff, and continues
from what it holds when the store is back (store_gate.py). SIGTERM lets the batches in
flight finish for a moment, writes the progress, and gives every lease back in one
statement.

A worker also runs queued batch export jobs (xavyo_siem.batch): file exports, and exports
to the destinations it delivers, whose streaming and exports then share one token bucket.
About once an hour (`expiry_interval_s`) it removes the export jobs that finished longer
than `export_retention_s` ago, with their files (batch/expiry.py), beside its other work.
On SQLite one worker runs at a time (hosting.py holds the lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Engine

from xavyo_siem.batch import BatchExporter, ExportSettings
from xavyo_siem.model import (
    to_epoch_us,
)
from xavyo_siem.pipeline import metrics
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import OpenComponents
from xavyo_siem.pipeline.rate_limit import Buckets
from xavyo_siem.pipeline.scheduler import HELD_RECOUNT_S, Scheduler
from xavyo_siem.runtime.export_jobs import ExportJobs
from xavyo_siem.runtime.lane_store import StoreLanes, all_caught_up
from xavyo_siem.runtime.store_gate import StoreGate, StoreUnavailable
from xavyo_siem.runtime.worker_settings import WorkerSettings
from xavyo_siem.runtime.worker_store import Renewal, leave, read_lanes_to_start, renew
from xavyo_siem.store.changes import Listener
from xavyo_siem.store.destinations import enabled_destination_ids
from xavyo_siem.store.events import EventCursor
from xavyo_siem.store.feed import (
    CatchUp,
    CatchUpRows,
    FeedPage,
    fetch_catch_up,
    read_feed,
    unfinished_after,
)
from xavyo_siem.store.leases import (
    refresh_lease_statistics,
    release_leases,
)

__all__ = ["Worker"]

log = logging.getLogger("xavyo_siem.pipeline")  # the name operators filter the worker on

_R = TypeVar("_R")
_MANY_LEASES = 100  # taken or given back at once: the lease statistics are refreshed
_RECHECK_S = 0.005  # the first wait before reading events that were not final yet


class Worker:
    """Serves the destinations it holds a lease on (see the module docstring)."""

    def __init__(
        self,
        *,
        engine: Engine,
        open_components: OpenComponents,
        settings: WorkerSettings | None = None,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.open_components = open_components
        self.settings = settings or WorkerSettings()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.gate = StoreGate(engine)
        self.lanes_store = StoreLanes(gate=self.gate, owner=self.owner)
        self.scheduler: Scheduler | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._position: EventCursor | None = None  # the feed's, None until it started
        self._walk: CatchUp | None = None  # a feed that started behind: its backlog walk
        self._feed_behind = True  # the last feed read was a full page
        self._reading: asyncio.Task[FeedPage] | None = None  # a feed read in flight
        self._read_ahead: FeedPage | None = None  # read, waiting for room in the lanes
        # The walk's next page, read while the last one's rows become events.
        self._walk_ahead: tuple[CatchUp, asyncio.Task[CatchUpRows]] | None = None
        self._recheck_s = _RECHECK_S
        self._updated: dict[UUID, int] = {}  # each lane's destination `updated_us` when loaded
        self._bucket_for = Buckets()  # each destination's one bucket (lane and exports)
        self._closing: set[asyncio.Task[None]] = set()
        self._renewing: asyncio.Task[Renewal] | None = None
        self._scanned = False  # a renewal was applied
        self._flushing: asyncio.Task[tuple[list[UUID], list[UUID]]] | None = None
        # What each destination's metrics count: kept while its lane is loaded again (its
        # settings changed, it was renamed), dropped once the worker no longer serves it.
        self._counts: dict[UUID, metrics.Counts] = {}
        self.exports = ExportJobs(
            engine=engine,
            owner=self.owner,
            settings=ExportSettings(
                chunk_events=self.settings.export_chunk_events,
                lease_ttl_s=self.settings.lease_ttl_s,
                poll_s=min(1.0, self.settings.lease_ttl_s / 3),
                pipeline=self.settings.pipeline,
            ),
            open_components=open_components,
            bucket_for=self._bucket_for,
            limit=self.settings.export_jobs,
            retention_s=self.settings.export_retention_s,
            expiry_interval_s=self.settings.expiry_interval_s,
        )

    @property
    def exporter(self) -> BatchExporter:
        """What runs this worker's export jobs."""
        return self.exports.exporter

    def stop(self) -> None:
        """Finish the batches in flight (briefly), write the progress, give the leases back."""
        self._stop.set()
        self._wake.set()

    # -- the run ----------------------------------------------------------------------------

    async def run(self, *, drain: bool = False) -> list[str]:
        """Deliver until stopped or, with `drain`, until every destination has caught up.

        Returns the reasons of destinations left stuck (misconfigured) when draining.
        """
        loop = asyncio.get_running_loop()
        scheduler = self.scheduler = Scheduler(
            store=self.lanes_store,
            max_turns=self.settings.max_turns,
            max_behind=self.settings.max_behind,
        )

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        listener = Listener(self.engine, wake)
        listener.start()
        unwatch = metrics.DESTINATIONS.watch(scheduler.lanes.values)
        listens = self.engine.dialect.name == "postgresql"
        poll_s = self.settings.listen_poll_s if listens else self.settings.pipeline.poll_interval_s
        next_scan = next_poll = 0.0
        backoff = 0.5
        try:
            while not self._stop.is_set():
                scheduler.changed.clear()  # set again by whatever happens from here on
                try:
                    now = time.monotonic()
                    if not self.gate.available and not await self.gate.probe():
                        raise StoreUnavailable("still unavailable")
                    scheduler.paused = False
                    # Renewing leases and writing progress run beside the feed; what they
                    # found is applied here, in order with the feed's reads.
                    if self._renewing is None and now >= next_scan:
                        self._renewing = self._background(self._renew(self._room_for_a_job()))
                        next_scan = now + min(
                            self.settings.scan_interval_s, self.settings.lease_ttl_s / 3
                        )
                    if self._renewing is not None and self._renewing.done():
                        renewing, self._renewing = self._renewing, None
                        await self._scan(renewing.result())
                    # A finished flush first, then the next one: progress noted while a
                    # flush was in flight is written at once, whether or not the lanes
                    # just written go on (none may, and nothing else would wake the loop).
                    if self._flushing is not None and self._flushing.done():
                        flushing, self._flushing = self._flushing, None
                        await self._written(*flushing.result())
                    if self._flushing is None and self.lanes_store.unwritten:
                        self._flushing = self._background(self.lanes_store.flush())
                    # Catching up, the feed reads one page ahead of the lanes, and hands it
                    # out once they hold few enough: a backlog stays in the store, and no
                    # lane overflows from it.
                    room = max(self.settings.max_buffered - self.settings.feed_page, 1)
                    full = self._feed_behind and scheduler.held() >= room
                    if (
                        self._reading is None
                        and self._read_ahead is None
                        and (self._wake.is_set() or now >= next_poll or self._feed_behind)
                    ):
                        self._wake.clear()
                        self._reading = self._read_feed()
                        next_poll = now + poll_s
                    if self._reading is not None and self._reading.done():
                        reading, self._reading = self._reading, None
                        self._read_ahead = reading.result()
                        next_poll = min(next_poll, self._went_on(self._read_ahead))
                    if self._read_ahead is not None and not full:
                        page, self._read_ahead = self._read_ahead, None
                        scheduler.route(page.by_tenant)
                    backoff = 0.5
                except StoreUnavailable:
                    scheduler.paused = True
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                started = scheduler.start_due()
                if drain and await self._drained():
                    return self._stuck()
                due = scheduler.next_due()
                if due is not None and due <= time.monotonic() and not started:
                    due = None  # at the limit of turns: the end of one wakes the loop
                recount = time.monotonic() + HELD_RECOUNT_S if full else None
                # While a read or a renewal is in flight, or a page waits for room, the times
                # and notifications that would start another are taken once that ends (its
                # end wakes the loop); waiting on them meanwhile would spin.
                idle_feed = self._reading is None and self._read_ahead is None
                times = (
                    next_scan if self._renewing is None else None,
                    next_poll if idle_feed else None,
                    due,
                    recount,
                )
                await self._wait(
                    min((t for t in times if t is not None), default=math.inf), notified=idle_feed
                )
            return []
        finally:
            listener.stop()
            await self._shut_down()
            unwatch()
            self.gate.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _wait(self, until: float, *, notified: bool) -> None:
        """Until `until`, a turn's end (or anything else the driver waits for), stop, and
        with `notified` a notification of new events."""
        assert self.scheduler is not None
        timeout = None if until == math.inf else max(until - time.monotonic(), 0.0)
        woken = notified and self._wake.is_set()
        if timeout == 0 or woken or self.scheduler.changed.is_set() or self._stop.is_set():
            await asyncio.sleep(0)
            return
        waits = [
            asyncio.ensure_future(self.scheduler.changed.wait()),
            asyncio.ensure_future(self._stop.wait()),
        ]
        if notified:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    # -- the feed ---------------------------------------------------------------------------

    def _read_feed(self) -> asyncio.Task[FeedPage] | None:
        """Start one read of new events for all of this worker's tenants, beside the driver
        (which meanwhile starts turns and writes progress); None when there is nothing to
        read for."""
        assert self.scheduler is not None
        if self._position is None or not self.scheduler.lanes:
            self._feed_behind = False
            return None
        after, limit, walk = self._position, self.settings.feed_page, self._walk
        if walk is not None:
            return self._background(self._read_walk(walk, limit))
        return self._background(
            self.gate.read(lambda conn: read_feed(conn, owner=self.owner, after=after, limit=limit))
        )

    async def _read_walk(self, walk: CatchUp, limit: int) -> FeedPage:
        """A page of the backlog walk; the walk goes on from it, or is done. Once the store
        gave a page's rows, the next page is read while these become events."""
        ahead, self._walk_ahead = self._walk_ahead, None
        if ahead is not None and ahead[0] != walk:  # the walk started again meanwhile
            ahead[1].cancel()
            ahead = None
        fetched = await (ahead[1] if ahead is not None else self._fetch_walk(walk, limit))
        if fetched.walk is not None:
            self._walk_ahead = (fetched.walk, self._fetch_walk(fetched.walk, limit))
        page = await asyncio.to_thread(fetched.page)
        self._walk = fetched.walk  # only now: a page that fails to decode is read again
        return page

    def _fetch_walk(self, walk: CatchUp, limit: int) -> asyncio.Task[CatchUpRows]:
        task = self._background(
            self.gate.read(
                lambda conn: fetch_catch_up(conn, owner=self.owner, walk=walk, limit=limit)
            )
        )
        # A read ahead that is let go (the walk started again, the worker stopped) ends
        # unheard: its error, if any, is the next read's to meet.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return task

    def _went_on(self, page: FeedPage) -> float:
        """The feed goes on from where a read stopped (its events are handed to the lanes
        once they have room). Returns when to read again at the latest: soon when events
        were committed behind an older transaction (they are final once it ends), else never
        by itself."""
        self._position = page.position
        # After the backlog walk, the feed goes on in store order at once.
        self._feed_behind = page.count >= self.settings.feed_page or self._walk is not None
        if not page.waiting:
            self._recheck_s = _RECHECK_S
            return math.inf
        self._recheck_s = min(self._recheck_s * 2, 1.0)
        return time.monotonic() + self._recheck_s

    # -- leases -----------------------------------------------------------------------------

    def _background(self, work: Coroutine[Any, Any, _R]) -> asyncio.Task[_R]:
        """Run `work` beside the driver; its end wakes the driver, which takes its result."""
        scheduler = self.scheduler
        assert scheduler is not None
        task: asyncio.Task[_R] = asyncio.create_task(work)
        task.add_done_callback(lambda _: scheduler.changed.set())
        return task

    def _room_for_a_job(self) -> list[UUID] | None:
        """The destinations an export job may target, when one more may start now."""
        if self._stop.is_set() or self.scheduler is None:
            return None
        return self.exports.room(self.scheduler.lanes)

    async def _renew(self, jobs_for: list[UUID] | None) -> Renewal:
        """One renewal (`worker_store.renew`) on the store's threads."""
        ttl = timedelta(seconds=self.settings.lease_ttl_s)
        return await self.gate.write(
            lambda conn: renew(conn, owner=self.owner, ttl=ttl, jobs_for=jobs_for)
        )

    async def _scan(self, renewal: Renewal) -> None:
        """Apply a renewal: drop the lanes lost, load the ones taken, give back what is over
        the fair share, note replays, close idle transports, and run export jobs."""
        assert self.scheduler is not None
        scheduler = self.scheduler
        share, held, taken, replays, job = renewal
        self._scanned = True
        gone = [
            lane_id
            for lane_id in scheduler.lanes
            if (renewed := held.get(lane_id)) is None  # lost, disabled or removed
            or (renewed[1] != self._updated.get(lane_id) and lane_id not in scheduler.turns)
        ]  # the second: its settings changed; it is loaded again below
        if gone:
            await self._flush()  # once for all of them
            for lane_id in gone:
                await self._drop(lane_id, flush=False)
        load = {
            ident: epoch
            for ident, (epoch, _) in held.items()
            if ident not in scheduler.lanes and ident not in scheduler.turns
        } | taken
        if len(taken) >= _MANY_LEASES:
            await self.gate.write(refresh_lease_statistics)
        if load:
            await self._load(load)
        await self._shed(share)
        scheduler.replay(replays)
        self._close_idle()
        self._report()
        if job is not None:
            self.exports.start(job)
        self.exports.expire()

    async def _load(self, epochs: dict[UUID, int]) -> None:
        """Serve the destinations just leased: their lanes start where their cursor is."""
        assert self.scheduler is not None
        start_feed = self._position is None
        rows, heads, head, walk = await self.gate.read(
            lambda conn: read_lanes_to_start(
                conn,
                owner=self.owner,
                destination_ids=list(epochs),
                start_feed=start_feed,
                catch_up_events=self.settings.feed_catch_up_events,
            )
        )
        if head is not None:  # the feed starts: read it now, not at the next poll
            self._position = head
            self._walk = walk
            self._feed_behind = True
        for destination, cursor, circuit_state, failures in rows:
            lane = Lane(
                destination=destination,
                position=cursor,
                open_components=self.open_components,
                circuit_state=circuit_state,
                consecutive_failures=failures,
                settings=self.settings.pipeline,
                bucket=self._bucket_for(destination),
                max_buffered=self.settings.max_buffered,
                counts=self._counts.setdefault(destination.id, metrics.Counts()),
            )
            self.lanes_store.epochs[destination.id] = epochs[destination.id]
            self._updated[destination.id] = to_epoch_us(destination.updated_at)
            self.scheduler.add(lane, mark=heads.get(destination.tenant_id))
        # The lanes live as long as their leases: a full garbage collection need not walk
        # them (and everything else loaded so far) each time; with thousands of lanes it
        # would stop the worker for hundreds of milliseconds every few seconds.
        gc.freeze()
        log.info(
            "worker %s serves %d destination(s) (%d new)",
            self.owner, len(self.scheduler.lanes), len(rows),
        )  # fmt: skip

    async def _drop(self, lane_id: UUID, *, flush: bool = True) -> None:
        """Stop serving a lane, its progress written first; its exports follow it. A turn
        it is in ends on its own: whatever it notes is fenced off by the lease."""
        assert self.scheduler is not None
        if flush:
            await self._flush()
        lane = self.scheduler.remove(lane_id)
        self.lanes_store.forget(lane_id)
        self._updated.pop(lane_id, None)
        self.exports.stop_for(lane_id)
        if lane is not None:
            self._close_later(lane)

    async def _shed(self, share: int) -> None:
        """Give back what is over the fair share (another worker joined), at a batch
        boundary: the last tenants first, so a tenant's destinations stay together."""
        assert self.scheduler is not None
        excess = len(self.scheduler.lanes) - share
        if excess <= 0:
            return
        lanes = sorted(
            self.scheduler.lanes.values(), key=lambda lane: (str(lane.tenant_id), str(lane.id))
        )
        shed = [lane.id for lane in reversed(lanes) if lane.id not in self.scheduler.turns][:excess]
        if not shed:
            return
        await self._flush()
        for lane_id in shed:
            await self._drop(lane_id, flush=False)
        await self.gate.write(
            lambda conn: release_leases(conn, owner=self.owner, destination_ids=shed)
        )
        if len(shed) >= _MANY_LEASES:
            await self.gate.write(refresh_lease_statistics)
        log.info("worker %s gave back %d destination(s) to balance", self.owner, len(shed))

    async def _flush(self) -> None:
        """Write every lane's progress now (after the write in flight, if any)."""
        if self._flushing is not None:
            flushing, self._flushing = self._flushing, None
            await self._written(*(await flushing))
        await self._written(*(await self.lanes_store.flush()))

    async def _written(self, written: list[UUID], lost: list[UUID]) -> None:
        """Progress was written: lanes waiting on it go on; those whose lease was lost go."""
        assert self.scheduler is not None
        self.scheduler.written(written)
        for lane_id in lost:
            log.warning(
                "destination %s: lease lost (another worker delivers it now, or the"
                " destination was removed)",
                lane_id,
            )
            await self._drop(lane_id, flush=False)

    # -- transports, metrics ----------------------------------------------------------------

    def _close_later(self, lane: Lane) -> None:
        task = asyncio.create_task(
            lane.close(self.lanes_store), name=f"close:{lane.destination.name}"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _close_idle(self) -> None:
        assert self.scheduler is not None
        idle_since = time.monotonic() - self.settings.idle_close_s
        for lane in self.scheduler.lanes.values():
            if (
                lane.components is not None
                and lane.last_used < idle_since
                and lane.id not in self.scheduler.turns
                and lane.pending is None
            ):
                self._close_later(lane)

    def _report(self) -> None:
        assert self.scheduler is not None
        lanes = self.scheduler.lanes.values()
        metrics.WORKER_DESTINATIONS.set(len(self.scheduler.lanes))
        metrics.WORKER_BEHIND.set(sum(1 for lane in lanes if not lane.following))
        metrics.WORKER_OPEN_TRANSPORTS.set(sum(1 for lane in lanes if lane.components is not None))
        metrics.WORKER_FAILING.set(sum(1 for lane in lanes if lane.counts.circuit_open))
        for gone in self._counts.keys() - self.scheduler.lanes.keys():
            del self._counts[gone]

    # -- draining and stopping --------------------------------------------------------------

    async def _drained(self) -> bool:
        """Every enabled destination has caught up: ours by their lanes, the ones another
        worker holds (or a dead one still holds) by their lag in the store."""
        scheduler = self.scheduler
        assert scheduler is not None
        if (
            not self._scanned  # the leases (and the dead letters to replay) not seen yet
            or self._renewing is not None
            or self._flushing is not None
            or scheduler.turns
            or self.exports
            or self._feed_behind
            or self._reading is not None
            or self._read_ahead is not None
            or self.lanes_store.unwritten
        ):
            return False
        for lane in scheduler.lanes.values():
            if lane.stuck_reason:
                continue
            if not lane.following or lane.buffer or lane.pending or lane.replay_waiting:
                return False
        position = self._position
        if position is not None and scheduler.lanes:
            unfinished = await self.gate.read(
                lambda conn: unfinished_after(conn, owner=self.owner, after=position)
            )
            if unfinished:
                return False
        enabled = await self.gate.read(lambda conn: enabled_destination_ids(conn))
        others = [(d, t) for t, d in enabled if d not in scheduler.lanes]
        if not others:
            return True
        return await self.gate.read(lambda conn: all_caught_up(conn, others))

    def _stuck(self) -> list[str]:
        assert self.scheduler is not None
        return [
            f"{lane.destination.name}: {lane.stuck_reason}"
            for lane in self.scheduler.lanes.values()
            if lane.stuck_reason
        ]

    async def _shut_down(self) -> None:
        """Let turns end briefly, write the progress, give every lease back, close."""
        scheduler = self.scheduler
        if scheduler is not None:
            await scheduler.settle(grace_s=self.settings.shutdown_grace_s)
        await self.exports.stop_all(grace_s=self.settings.shutdown_grace_s)
        if self._walk_ahead is not None:
            self._walk_ahead[1].cancel()
        for background in (self._renewing, self._reading):
            if background is not None:
                await asyncio.wait([background], timeout=self.settings.shutdown_grace_s)
        # Transports close first, so that what they count while closing (a syslog batch the
        # receiver could not confirm) is in the last progress written.
        lanes = [] if scheduler is None else list(scheduler.lanes.values())
        closing = [asyncio.create_task(lane.close(self.lanes_store)) for lane in lanes]
        closing += list(self._closing)
        if closing:
            await asyncio.wait(closing, timeout=self.settings.shutdown_grace_s)
        try:
            await self._flush()
            await self.gate.write(lambda conn: leave(conn, owner=self.owner))
        except StoreUnavailable:
            log.warning("store unavailable at shutdown: leases expire by themselves")
        if scheduler is not None:  # as they were at the stop, for `run`'s summary
            self._report()
        metrics.WORKER_DESTINATIONS.set(0)
