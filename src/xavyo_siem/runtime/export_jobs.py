"""The batch export jobs a worker runs beside its destinations.

A worker claims a waiting job with its lease renewal (one transaction, see worker.py) when
there is room: file exports, and exports to a destination it delivers, whose rate limit then
covers the destination's streaming and its exports together. An export follows its
destination: when the worker gives the destination up, the export stops at its next
checkpoint, for whichever worker holds the destination next.

About once an hour (`expiry_interval_s`) it also removes the export jobs that finished
longer than `retention_s` ago, with their files (batch/expiry.py), makes the partitions of
the coming days and applies the retention policies (store_upkeep.py), in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import Engine

from xavyo_siem.batch import BatchExporter, ExportSettings
from xavyo_siem.model import BatchExportJob, ExportTarget, SiemDestination
from xavyo_siem.pipeline.loop import OpenComponents
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.runtime.store_upkeep import keep_store

__all__ = ["ExportJobs"]

log = logging.getLogger("xavyo_siem.pipeline")


class ExportJobs:
    """Up to `limit` export jobs at once, each with the destination it targets (None: a file)."""

    def __init__(
        self,
        *,
        engine: Engine,
        owner: str,
        settings: ExportSettings,
        open_components: OpenComponents,
        bucket_for: Callable[[SiemDestination], TokenBucket | None],
        limit: int,
        retention_s: float | None = None,
        expiry_interval_s: float = 3600.0,
    ) -> None:
        self.exporter = BatchExporter(
            engine=engine,
            owner=owner,
            settings=settings,
            open_components=open_components,
            bucket_for=bucket_for,
        )
        self.engine = engine
        self.owner = owner
        self.limit = limit
        self.retention_s = retention_s
        self.expiry_interval_s = expiry_interval_s
        self._running: dict[UUID, tuple[asyncio.Task[object], UUID | None]] = {}
        self._next_expiry = 0.0  # when export jobs are next expired (monotonic)
        self._expiring: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        """Whether a job runs."""
        return bool(self._running)

    def room(self, destinations: Iterable[UUID]) -> list[UUID] | None:
        """The destinations a job may target when one more may run now, else None."""
        for job_id, (running, _) in list(self._running.items()):
            if running.done():
                self._running.pop(job_id)
        return None if len(self._running) >= self.limit else list(destinations)

    def start(self, job: BatchExportJob) -> None:
        """Run a job this worker claimed."""
        target = None if job.target_kind is ExportTarget.FILE else UUID(job.target)
        task: asyncio.Task[object] = asyncio.create_task(
            self.exporter.run(job), name=f"export:{job.id}"
        )
        task.add_done_callback(lambda done: _ended(job.id, done))
        self._running[job.id] = (task, target)
        log.info("worker %s runs export job %s", self.owner, job.id)

    def stop_for(self, destination_id: UUID) -> None:
        """The worker gave the destination up: its exports stop at their next checkpoint."""
        for job_id, (_, target) in self._running.items():
            if target == destination_id:
                self.exporter.stop(job_id)

    def expire(self) -> None:
        """Remove expired export jobs and their files, make the coming days' partitions and
        apply the retention policies (`store_upkeep.keep_store`), in the background, once
        per `expiry_interval_s` (a few indexed reads when there is nothing to do)."""
        now = time.monotonic()
        if now < self._next_expiry or self._expiring is not None:
            return
        self._next_expiry = now + self.expiry_interval_s
        retention = None if self.retention_s is None else timedelta(seconds=self.retention_s)

        async def expire() -> None:
            try:
                await asyncio.to_thread(
                    keep_store, self.engine, export_retention=retention, now=datetime.now(UTC)
                )
            except Exception as exc:  # the store went away: the next pass tries again
                log.warning("worker %s could not keep the store: %s", self.owner, exc)
            finally:
                self._expiring = None

        self._expiring = asyncio.create_task(expire(), name="expire-export-jobs")

    async def stop_all(self, *, grace_s: float) -> None:
        """Stop every job at its next checkpoint, and the expiry pass, waiting at most
        `grace_s`."""
        self.exporter.stop()
        waiting = [task for task, _ in self._running.values()]
        if self._expiring is not None:
            waiting.append(self._expiring)
        if waiting:
            await asyncio.wait(waiting, timeout=grace_s)


def _ended(job_id: UUID, task: asyncio.Task[object]) -> None:
    """No silent end: a job says how it ended, or why it stopped."""
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        log.error("export job %s stopped: %s", job_id, exc)
    elif isinstance(job := task.result(), BatchExportJob):
        detail = f": {job.error}" if job.error and job.finished else ""
        log.info("export job %s %s (%d events)%s", job_id, job.status.value, job.exported, detail)
