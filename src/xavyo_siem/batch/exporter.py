"""`BatchExporter`: carries a leased export job to its end, in this process."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from xavyo_siem.batch.control import (
    Busy,
    Cancelled,
    ExportSettings,
    Progress,
    RunControl,
    Stopped,
    now_utc,
)
from xavyo_siem.batch.destination import RangeSource
from xavyo_siem.batch.files import FileWriter
from xavyo_siem.batch.requests import discard_partials
from xavyo_siem.errors import ExportJobError, SiemError
from xavyo_siem.model import BatchExportJob, ExportTarget, JobStatus, SiemDestination
from xavyo_siem.pipeline.loop import DestinationLoop, OpenComponents
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store.destinations import get_destination
from xavyo_siem.store.engine import in_snapshot_async, in_transaction_async
from xavyo_siem.store.leases import LeaseLost
from xavyo_siem.store.ranges import (
    Snapshot,
    count_in_range,
    snapshot_is_final,
    start_snapshot,
)

__all__ = ["BatchExporter"]

log = logging.getLogger("xavyo_siem.batch")

_R = TypeVar("_R")


class BatchExporter:
    """Runs export jobs leased to `owner`, in this process (see `xavyo_siem.batch`)."""

    def __init__(
        self,
        *,
        engine: Engine,
        owner: str | None = None,
        settings: ExportSettings | None = None,
        open_components: OpenComponents | None = None,
        bucket_for: Callable[[SiemDestination], TokenBucket | None] | None = None,
    ) -> None:
        """`open_components` opens a destination's transport, formatter and batch size
        (needed for destination exports); `bucket_for` returns the rate limit to share with the
        destination's streaming, if this process's worker serves it."""
        self.engine = engine
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.settings = settings or ExportSettings()
        self.open_components = open_components
        self.bucket_for = bucket_for
        self._controls: dict[UUID, RunControl] = {}

    @property
    def running(self) -> list[UUID]:
        """The ids of the jobs this exporter is running now."""
        return list(self._controls)

    def stop(self, job_id: UUID | None = None) -> None:
        """Ask a running job (or every one) to stop at its next checkpoint and give its
        lease back; its checkpoint stays, so it resumes later from there."""
        for ident, control in list(self._controls.items()):
            if job_id is None or ident == job_id:
                control.stop.set()
                control.halt()

    async def _store(self, work: Callable[[Connection], _R]) -> _R:
        return await in_transaction_async(self.engine, work)

    async def run(
        self, job: BatchExportJob, *, on_progress: Progress | None = None
    ) -> BatchExportJob:
        """Carry `job` (leased to this exporter's owner) as far as it goes; the job afterwards.

        Completed, failed (with the reason) or cancelled; or still running when this process
        stops (its lease given back) or lost the job to another process.
        """
        if job.owner != self.owner:
            raise ExportJobError(f"job {job.id} is leased to {job.owner}, not to {self.owner}")
        control = RunControl()
        self._controls[job.id] = control
        keeper = asyncio.create_task(self._keep_lease(job, control))
        try:
            await self._carry(job, control, on_progress)
        except Cancelled:
            log.info("job %s cancelled", job.id)
            if job.target_kind is ExportTarget.FILE:
                await asyncio.to_thread(discard_partials, Path(job.target))
            await self._finish(job, JobStatus.CANCELLED)
        except (Stopped, Busy) as exc:
            log.info("job %s given back (%s)", job.id, type(exc).__name__.strip("_").lower())
            await self._store(
                lambda conn: job_rows.release_job(
                    conn, tenant_id=job.tenant_id, job_id=job.id, owner=self.owner
                )
            )
        except LeaseLost as exc:
            log.warning("job %s: %s", job.id, exc)
        except SQLAlchemyError as exc:
            log.error("job %s: the store failed; the job resumes later: %s", job.id, exc)
            raise ExportJobError(
                f"the store failed during job {job.id}; it resumes from its checkpoint "
                f"(`xavyo-siem export --resume {job.id}` or a worker): {exc}"
            ) from None
        except (SiemError, OSError) as exc:
            reason = _reason(exc)
            log.warning("job %s failed: %s", job.id, reason)
            await self._finish(job, JobStatus.FAILED, error=reason)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            await self._finish(job, JobStatus.FAILED, error=f"internal error: {exc!r}")
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self._controls.pop(job.id, None)
        return (
            await self._store(
                lambda conn: job_rows.get_job(conn, tenant_id=job.tenant_id, job_id=job.id)
            )
            or job
        )

    async def _carry(
        self, job: BatchExportJob, control: RunControl, on_progress: Progress | None
    ) -> None:
        if job.cancel_requested:
            raise Cancelled()
        snapshot = await self._snapshot(job, control)
        control.total = job.estimated_total
        counting = None
        if control.total is None:  # counted beside the export: the store does it, not Python
            counting = asyncio.create_task(self._count(job, snapshot, control))
        else:
            control.counted.set()
        report = None
        if on_progress is not None:
            show = on_progress

            def report(done: int, _: int | None) -> None:
                show(done, control.total)

            report(job.exported + job.dead_lettered, None)
        try:
            if job.target_kind is ExportTarget.FILE:
                writer = FileWriter(
                    engine=self.engine,
                    owner=self.owner,
                    settings=self.settings,
                    job=job,
                    snapshot=snapshot,
                    control=control,
                    on_progress=report,
                )
                await asyncio.to_thread(writer.run)
            else:
                await self._deliver(job, snapshot, control, report)
        finally:
            if counting is not None and not counting.done():
                counting.cancel()
                control.counted.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await counting

    async def _snapshot(self, job: BatchExportJob, control: RunControl) -> Snapshot:
        """The job's snapshot: fixed on its first start, kept on resumes."""
        if job.snapshot_txid is not None and job.snapshot_seq is not None:
            return Snapshot(job.snapshot_txid, job.snapshot_seq)
        snapshot = await self._store(start_snapshot)
        delay = 0.01
        while not await self._store(lambda conn: snapshot_is_final(conn, snapshot)):
            control.check()  # a transaction older than the export is still open: wait for it
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        saved = await self._store(
            lambda conn: job_rows.set_job_snapshot(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.owner,
                snapshot_txid=snapshot.txid,
                snapshot_seq=snapshot.seq,
            )
        )
        if not saved:
            raise LeaseLost(f"job {job.id}: lease lost; another process runs it now")
        return snapshot

    async def _count(self, job: BatchExportJob, snapshot: Snapshot, control: RunControl) -> None:
        """Count the snapshot's events of the range and record it as the job's total."""

        def count(conn: Connection) -> int:
            return count_in_range(
                conn,
                tenant_id=job.tenant_id,
                start=job.start,
                end=job.end,
                filter=job.filters,
                snapshot=snapshot,
            )

        try:
            total = await in_snapshot_async(self.engine, count)  # reads only: no write lock
            await self._store(
                lambda conn: job_rows.set_job_total(
                    conn,
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    owner=self.owner,
                    estimated_total=total,
                )
            )
            control.total = total
        except SQLAlchemyError as exc:
            log.warning("job %s: could not count its events: %s", job.id, exc)
        finally:
            control.counted.set()

    async def _deliver(
        self,
        job: BatchExportJob,
        snapshot: Snapshot,
        control: RunControl,
        on_progress: Progress | None,
    ) -> None:
        destination = await self._store(
            lambda conn: get_destination(
                conn, tenant_id=job.tenant_id, destination_id=UUID(job.target)
            )
        )
        if destination is None:
            raise ExportJobError(f"destination {job.target} was removed")
        if self.open_components is None:
            raise ExportJobError("this process cannot open destinations")
        components = await self.open_components(destination)
        source = RangeSource(
            engine=self.engine,
            job=job,
            destination=destination,
            snapshot=snapshot,
            owner=self.owner,
            ttl=self.settings.ttl,
            on_progress=on_progress,
        )
        loop = DestinationLoop(
            destination=destination,
            source=source,
            transport=components.transport,
            formatter=components.formatter,
            batch_size=components.batch_size,
            settings=self.settings.pipeline,
            bucket=None if self.bucket_for is None else self.bucket_for(destination),
        )
        control.loop = loop
        if control.stop.is_set() or control.cancel.is_set():
            loop.stop()
        try:
            delivered_all = await loop.run()
        finally:
            control.loop = None
            await components.transport.aclose()
        if not delivered_all:
            control.check()
            raise Stopped()
        if source.exported + source.dead_lettered == 0:
            raise ExportJobError("no events of the range remain to export")
        await asyncio.to_thread(control.counted.wait)  # the total is recorded first
        await self._finish(job, JobStatus.COMPLETED)

    async def _keep_lease(self, job: BatchExportJob, control: RunControl) -> None:
        """Renew the job's lease while it runs, and pass on a cancel request or a lost lease."""
        interval = max(min(self.settings.poll_s, self.settings.lease_ttl_s / 3), 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                current = await self._store(
                    lambda conn: job_rows.renew_job_lease(
                        conn,
                        tenant_id=job.tenant_id,
                        job_id=job.id,
                        owner=self.owner,
                        ttl=self.settings.ttl,
                        now=now_utc(),
                    )
                )
            except SQLAlchemyError as exc:
                log.warning("job %s: could not renew its lease: %s", job.id, exc)
                continue
            if current is None:
                control.lost.set()
                control.halt()
                return
            if current.cancel_requested:
                control.cancel.set()
                control.halt()

    async def _finish(
        self, job: BatchExportJob, status: JobStatus, error: str | None = None
    ) -> None:
        done = await self._store(
            lambda conn: job_rows.finish_job(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.owner,
                status=status,
                now=now_utc(),
                error=error,
            )
        )
        if not done:
            log.warning("job %s: lease lost before it could be marked %s", job.id, status.value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        text = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)
        return f"cannot write{where}: {text}"
    return str(exc)
