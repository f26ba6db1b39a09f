"""The worker: leases destinations and runs one delivery loop for each it holds.

Several workers may share one PostgreSQL store; each destination is leased to one worker at
a time, renewed every third of its time to live. When a worker dies its leases expire and
another worker continues from the stored cursor. On SQLite one worker runs at a time.

A worker also runs queued batch export jobs (xavyo_siem.batch): file exports, and exports to
the destinations it delivers, whose streaming loop and exports then share one token bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine

from xavyo_siem.batch import BatchExporter, ExportSettings
from xavyo_siem.errors import SiemError
from xavyo_siem.model import BatchExportJob, CircuitState, ExportTarget, SiemDestination
from xavyo_siem.pipeline.loop import DestinationLoop, OpenComponents, PipelineSettings
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.runtime.streaming import CursorSource, streaming_loop
from xavyo_siem.store.destinations import enabled_destination_ids, get_destination
from xavyo_siem.store.engine import in_transaction_async
from xavyo_siem.store.events import measure_lag
from xavyo_siem.store.jobs import claim_job
from xavyo_siem.store.leases import Lease, LeaseLost, acquire_lease, release_lease, renew_lease
from xavyo_siem.store.state import read_state

__all__ = ["Worker", "WorkerSettings", "single_worker_lock"]

log = logging.getLogger("xavyo_siem.pipeline")  # the name operators filter the worker on

_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker shares the work."""

    lease_ttl_s: float = 30.0
    scan_interval_s: float = 2.0
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    export_jobs: int = 1  # batch export jobs run at once (0: none)
    export_chunk_events: int = 10_000


@dataclass(slots=True)
class _Running:
    loop: DestinationLoop
    task: asyncio.Task[bool]
    lease: Lease


class Worker:
    """Runs the delivery loops of the destinations it holds a lease on."""

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
        self._running: dict[UUID, _Running] = {}
        self._wanted: dict[UUID, UUID] = {}
        self._stop = asyncio.Event()
        self._buckets: dict[UUID, TokenBucket] = {}
        self._jobs: dict[UUID, tuple[asyncio.Task[object], UUID | None]] = {}
        self.exporter = BatchExporter(
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
        )

    def stop(self) -> None:
        """Finish the batches in flight, close the transports, give the leases back."""
        self._stop.set()

    async def run(self, *, drain: bool = False) -> list[str]:
        """Deliver until stopped or, with `drain`, until every destination has caught up.

        Returns the reasons of destinations left stuck (misconfigured) when draining.
        """
        ttl = timedelta(seconds=self.settings.lease_ttl_s)
        try:
            while not self._stop.is_set():
                await self._scan(ttl)
                if drain and await self._drained():
                    return [
                        f"{run.loop.destination.name}: {run.loop.stuck_reason}"
                        for run in self._running.values()
                        if run.loop.stuck_reason
                    ]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.scan_interval_s)
            return []
        finally:
            await self._stop_all()

    async def _drained(self) -> bool:
        """Every enabled destination has caught up: ours by their loops' word, the ones
        another worker holds (or a dead one still holds) by their lag in the store."""
        loops = [run.loop for run in self._running.values()]
        if not all(loop.caught_up.is_set() or loop.stuck_reason for loop in loops):
            return False
        if self._jobs:  # an export job runs (the scan found none waiting when this is empty)
            return False
        others = [key for key in self._wanted.items() if key[0] not in self._running]
        return not others or await self._store(lambda conn: _all_caught_up(conn, others))

    async def _scan(self, ttl: timedelta) -> None:
        """Renew what we hold, drop what was disabled or lost, take what is free."""
        wanted = self._wanted = dict(await self._store(lambda conn: _enabled(conn)))
        for destination_id in list(self._running):
            run = self._running[destination_id]
            if run.task.done():
                self._running.pop(destination_id)
                continue
            renewed = destination_id in wanted and await self._store(
                partial(_renew, lease=run.lease, ttl=ttl)
            )
            if not renewed:
                await self._finish(destination_id, release=destination_id not in wanted)
        for destination_id, tenant_id in wanted.items():
            if destination_id in self._running:
                continue
            lease = await self._store(
                partial(_acquire, destination_id=destination_id, owner=self.owner, ttl=ttl)
            )
            if lease is not None:
                await self._start(tenant_id, destination_id, lease)
        await self._scan_jobs(ttl)

    async def _scan_jobs(self, ttl: timedelta) -> None:
        """Forget finished export jobs; take a waiting one when there is room.

        Only file exports and exports to a destination this worker delivers are taken, so
        the destination's rate limit covers its streaming and its exports together.
        """
        for job_id, (running, _) in list(self._jobs.items()):
            if running.done():
                self._jobs.pop(job_id)
        if len(self._jobs) >= self.settings.export_jobs or self._stop.is_set():
            return
        held = list(self._running)
        job = await self._store(
            lambda conn: claim_job(
                conn, owner=self.owner, ttl=ttl, now=datetime.now(UTC), destination_ids=held
            )
        )
        if job is None:
            return
        target = None if job.target_kind is ExportTarget.FILE else UUID(job.target)
        task: asyncio.Task[object] = asyncio.create_task(
            self.exporter.run(job), name=f"export:{job.id}"
        )
        task.add_done_callback(lambda done: self._job_ended(job.id, done))
        self._jobs[job.id] = (task, target)
        log.info("worker %s runs export job %s", self.owner, job.id)

    def _job_ended(self, job_id: UUID, task: asyncio.Task[object]) -> None:
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("export job %s stopped: %s", job_id, exc)
        elif isinstance(job := task.result(), BatchExportJob):
            detail = f": {job.error}" if job.error and job.finished else ""
            log.info(
                "export job %s %s (%d events)%s", job_id, job.status.value, job.exported, detail
            )

    def _bucket_for(self, destination: SiemDestination) -> TokenBucket | None:
        """The destination's one token bucket in this worker (shared by loop and exports)."""
        limit = destination.rate_limit
        if limit is None:
            return None
        bucket = self._buckets.get(destination.id)
        if bucket is None or (bucket.events_per_s, bucket.burst) != (
            float(limit.events_per_s),
            limit.burst,
        ):
            bucket = TokenBucket(
                limit.events_per_s, limit.burst, clock=time.monotonic, sleep=asyncio.sleep
            )
            self._buckets[destination.id] = bucket
        return bucket

    async def _start(self, tenant_id: UUID, destination_id: UUID, lease: Lease) -> None:
        destination = await self._store(
            lambda conn: get_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
        )
        if destination is None:
            return
        try:
            components = await self.open_components(destination)
        except SiemError as exc:
            reason = f"cannot be opened: {exc}"
            log.error("destination %s %s", destination.name, reason)
            source = CursorSource(engine=self.engine, destination=destination, lease=lease)
            await source.record_failure(
                reason=reason, circuit_state=CircuitState.OPEN, misconfigured=True
            )
            await self._store(lambda conn: release_lease(conn, lease=lease))
            return
        loop = streaming_loop(
            engine=self.engine,
            destination=destination,
            components=components,
            lease=lease,
            settings=self.settings.pipeline,
            bucket=self._bucket_for(destination),
        )
        task = asyncio.create_task(loop.run(), name=f"deliver:{destination.name}")
        task.add_done_callback(lambda done: self._loop_ended(destination, done))
        self._running[destination_id] = _Running(loop, task, lease)
        log.info("worker %s delivers destination %s", self.owner, destination.name)

    def _loop_ended(self, destination: SiemDestination, task: asyncio.Task[bool]) -> None:
        """No silent hangs: a loop that died says why; the next scan restarts it."""
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, LeaseLost):
            log.warning("%s", exc)
        elif exc is not None:
            log.error("delivery loop of %s stopped: %r", destination.name, exc, exc_info=exc)

    async def _finish(self, destination_id: UUID, *, release: bool) -> None:
        run = self._running.pop(destination_id, None)
        if run is None:
            return
        for job_id, (_, target) in list(self._jobs.items()):
            if target == destination_id:  # its exports follow the destination's lease
                self.exporter.stop(job_id)
        run.loop.stop()
        try:
            await asyncio.wait_for(asyncio.shield(run.task), timeout=30)
        except (TimeoutError, LeaseLost):
            run.task.cancel()
        except Exception:  # already logged by _loop_ended
            pass
        await run.loop.transport.aclose()
        if release:
            await self._store(lambda conn: release_lease(conn, lease=run.lease))

    async def _stop_all(self) -> None:
        self.exporter.stop()
        await asyncio.gather(
            *(self._finish(ident, release=True) for ident in list(self._running)),
            *(asyncio.wait_for(task, timeout=30) for task, _ in list(self._jobs.values())),
            return_exceptions=True,
        )

    async def _store(self, work: Callable[[Connection], _R]) -> _R:
        return await in_transaction_async(self.engine, work)


def _renew(conn: Connection, *, lease: Lease, ttl: timedelta) -> bool:
    return renew_lease(conn, lease=lease, ttl=ttl, now=datetime.now(UTC))


def _acquire(conn: Connection, *, destination_id: UUID, owner: str, ttl: timedelta) -> Lease | None:
    return acquire_lease(
        conn, destination_id=destination_id, owner=owner, ttl=ttl, now=datetime.now(UTC)
    )


def _all_caught_up(conn: Connection, destinations: list[tuple[UUID, UUID]]) -> bool:
    for destination_id, tenant_id in destinations:
        destination = get_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
        current = read_state(conn, tenant_id=tenant_id, destination_id=destination_id)
        if destination is None or current is None:
            continue
        waiting, _ = measure_lag(
            conn, tenant_id=tenant_id, after=current.cursor, filter=destination.filters, cap=1
        )
        if waiting:
            return False
    return True


def _enabled(conn: Connection) -> list[tuple[UUID, UUID]]:
    return [(destination, tenant) for tenant, destination in enabled_destination_ids(conn)]


def single_worker_lock(database_path: Path) -> IO[str]:
    """Hold an exclusive lock beside a SQLite store; a second worker fails with a clear message."""
    lock_path = database_path.with_name(database_path.name + ".worker.lock")
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SiemError(
            f"another `xavyo-siem run` already works on {database_path}; SQLite supports one "
            "worker (use PostgreSQL to run several)"
        ) from None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
