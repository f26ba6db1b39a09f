"""Batch export job rows: create, claim with a lease, checkpoint, finish, cancel.

A job is run by one process at a time: the one named in `owner` until `lease_expires_us`.
A worker (or `xavyo-siem export --resume`) may claim a pending job, or a running one whose
lease expired (its process died). Every write of a running job names its owner and changes
nothing when another process owns the job now, so a process that paused past its lease
cannot move the checkpoint of the one that took over. A claim is one conditional UPDATE,
atomic on both backends (PostgreSQL re-checks the condition after waiting for the row lock).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Connection, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.model import (
    BatchExportJob,
    EventFilter,
    ExportCheckpoint,
    ExportFormat,
    ExportTarget,
    JobStatus,
    from_epoch_us,
    to_epoch_us,
    uuid_from_canonical,
)
from xavyo_siem.store.scope import platform_wide, scope_to_tenant, scoped
from xavyo_siem.store.tables import export_jobs

__all__ = [
    "active_jobs_writing",
    "claim_job",
    "claim_job_by_id",
    "delete_expired_jobs",
    "expired_jobs",
    "find_job_tenant",
    "finish_job",
    "get_job",
    "insert_job",
    "job_tenant_ids",
    "list_jobs",
    "lock_tenant_jobs",
    "record_job_error",
    "release_job",
    "renew_job_lease",
    "request_cancel",
    "save_checkpoint",
    "set_job_snapshot",
    "set_job_total",
]

_J = export_jobs.c
_ACTIVE = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
_FINISHED = (JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)


def _optional_time(us: int | None) -> datetime | None:
    return None if us is None else from_epoch_us(us)


def _optional_uuid(text: str | None) -> UUID | None:
    return None if text is None else uuid_from_canonical(text)


def _job_of(row: RowMapping) -> BatchExportJob:
    checkpoint = None
    if row["checkpoint_ts_us"] is not None:
        checkpoint = ExportCheckpoint(
            row["checkpoint_ts_us"], row["checkpoint_seq"], row["checkpoint_bytes"]
        )
    return BatchExportJob(
        id=uuid_from_canonical(row["id"]),
        tenant_id=uuid_from_canonical(row["tenant_id"]),
        target_kind=ExportTarget(row["target_kind"]),
        target=row["target"],
        format=ExportFormat(row["format"]),
        options=orjson.loads(row["options"]),
        start=from_epoch_us(row["start_us"]),
        end=from_epoch_us(row["end_us"]),
        filters=EventFilter.from_dict(orjson.loads(row["filters"])),
        status=JobStatus(row["status"]),
        exported=row["exported"],
        estimated_total=row["estimated_total"],
        dead_lettered=row["dead_lettered"],
        error=row["error"],
        cancel_requested=bool(row["cancel_requested"]),
        first_event_id=_optional_uuid(row["first_event_id"]),
        last_event_id=_optional_uuid(row["last_event_id"]),
        checkpoint=checkpoint,
        snapshot_txid=row["snapshot_txid"],
        snapshot_seq=row["snapshot_seq"],
        attempts=row["attempts"],
        owner=row["owner"],
        lease_expires_at=_optional_time(row["lease_expires_us"]),
        created_at=from_epoch_us(row["created_us"]),
        started_at=_optional_time(row["started_us"]),
        finished_at=_optional_time(row["finished_us"]),
    )


def _one(conn: Connection, condition: ColumnElement[bool]) -> BatchExportJob | None:
    row = conn.execute(select(export_jobs).where(condition)).mappings().first()
    return None if row is None else _job_of(row)


def _this(tenant_id: UUID, job_id: UUID) -> ColumnElement[bool]:
    return and_(_J.tenant_id == str(tenant_id), _J.id == str(job_id))


def _owned(tenant_id: UUID, job_id: UUID, owner: str) -> ColumnElement[bool]:
    return and_(_this(tenant_id, job_id), _J.owner == owner, _J.status == JobStatus.RUNNING.value)


def insert_job(conn: Connection, *, job: BatchExportJob) -> BatchExportJob:
    """Store a new job as it is (pending, or running and already leased to its creator)."""
    scope_to_tenant(conn, job.tenant_id)
    conn.execute(
        insert(export_jobs).values(
            id=str(job.id),
            tenant_id=str(job.tenant_id),
            target_kind=job.target_kind.value,
            target=job.target,
            format=job.format.value,
            options=orjson.dumps(dict(job.options)).decode(),
            start_us=to_epoch_us(job.start),
            end_us=to_epoch_us(job.end),
            filters=orjson.dumps(job.filters.to_dict()).decode(),
            status=job.status.value,
            exported=job.exported,
            estimated_total=job.estimated_total,
            dead_lettered=job.dead_lettered,
            cancel_requested=job.cancel_requested,
            owner=job.owner,
            lease_expires_us=None
            if job.lease_expires_at is None
            else to_epoch_us(job.lease_expires_at),
            attempts=job.attempts,
            created_us=to_epoch_us(job.created_at),
            started_us=None if job.started_at is None else to_epoch_us(job.started_at),
        )
    )
    found = get_job(conn, tenant_id=job.tenant_id, job_id=job.id)
    assert found is not None
    return found


@scoped
def get_job(conn: Connection, *, tenant_id: UUID, job_id: UUID) -> BatchExportJob | None:
    """The tenant's job with this id, or None (another tenant's job is None too)."""
    return _one(conn, _this(tenant_id, job_id))


@platform_wide
def find_job_tenant(conn: Connection, *, job_id: UUID) -> UUID | None:
    """The tenant a job belongs to (operators name jobs by id alone), or None."""
    tenant = conn.execute(select(_J.tenant_id).where(_J.id == str(job_id))).scalar_one_or_none()
    return None if tenant is None else uuid_from_canonical(tenant)


@scoped
def list_jobs(conn: Connection, *, tenant_id: UUID, limit: int = 100) -> list[BatchExportJob]:
    """The tenant's jobs, newest first."""
    rows = conn.execute(
        select(export_jobs)
        .where(_J.tenant_id == str(tenant_id))
        .order_by(_J.created_us.desc(), _J.id)
        .limit(limit)
    ).mappings()
    return [_job_of(row) for row in rows]


@scoped
def lock_tenant_jobs(conn: Connection, *, tenant_id: UUID) -> list[BatchExportJob]:
    """Every job of the tenant, locked until the transaction ends (PostgreSQL: a claim,
    checkpoint or cancel of one of them waits for it; SQLite's writers wait anyway)."""
    rows = conn.execute(
        select(export_jobs)
        .where(_J.tenant_id == str(tenant_id))
        .order_by(_J.created_us, _J.id)
        .with_for_update()
    ).mappings()
    return [_job_of(row) for row in rows]


@platform_wide
def job_tenant_ids(conn: Connection) -> list[UUID]:
    """Every tenant that has a job, sorted."""
    rows = conn.execute(select(_J.tenant_id).distinct().order_by(_J.tenant_id)).scalars()
    return [uuid_from_canonical(tenant) for tenant in rows]


@platform_wide
def active_jobs_writing(conn: Connection, *, path: str) -> list[UUID]:
    """Ids of pending or running jobs (of any tenant) that write the file `path`."""
    rows = conn.execute(
        select(_J.id).where(
            _J.target_kind == ExportTarget.FILE.value,
            _J.target == path,
            _J.status.in_(_ACTIVE),
        )
    ).scalars()
    return [uuid_from_canonical(ident) for ident in rows]


def _claimable(now_us: int) -> ColumnElement[bool]:
    return or_(
        _J.status == JobStatus.PENDING.value,
        and_(_J.status == JobStatus.RUNNING.value, _J.lease_expires_us < now_us),
    )


def _take(
    conn: Connection, condition: ColumnElement[bool], *, owner: str, ttl: timedelta, now: datetime
) -> bool:
    now_us = to_epoch_us(now)
    result = conn.execute(
        update(export_jobs)
        .where(condition, _claimable(now_us))
        .values(
            status=JobStatus.RUNNING.value,
            owner=owner,
            lease_expires_us=to_epoch_us(now + ttl),
            attempts=_J.attempts + 1,
            started_us=func.coalesce(_J.started_us, now_us),
        )
    )
    return result.rowcount == 1


@scoped
def claim_job(
    conn: Connection,
    *,
    owner: str,
    ttl: timedelta,
    now: datetime,
    destination_ids: Collection[UUID] = (),
) -> BatchExportJob | None:
    """Lease the oldest job that is waiting: pending, or running with an expired lease.

    Only file exports and exports to one of `destination_ids` (the destinations this worker
    delivers, so that one rate limit covers both) are considered. None when there is none.
    A worker asks at every renewal with all of its destinations (thousands), and almost
    always no job waits at all: that is asked first, without them.
    """
    now_us = to_epoch_us(now)
    if not conn.execute(select(exists().where(_claimable(now_us)))).scalar():
        return None
    targets: ColumnElement[bool] = _J.target_kind == ExportTarget.FILE.value
    if destination_ids:
        targets = or_(
            targets,
            and_(
                _J.target_kind == ExportTarget.DESTINATION.value,
                _J.target.in_(sorted(str(d) for d in destination_ids)),
            ),
        )
    candidates = conn.execute(
        select(_J.id, _J.tenant_id)
        .where(_claimable(now_us), targets)
        .order_by(_J.created_us, _J.id)
        .limit(5)
    ).all()
    for ident, tenant in candidates:
        if _take(conn, _J.id == ident, owner=owner, ttl=ttl, now=now):
            return get_job(
                conn, tenant_id=uuid_from_canonical(tenant), job_id=uuid_from_canonical(ident)
            )
    return None


@scoped
def claim_job_by_id(
    conn: Connection, *, tenant_id: UUID, job_id: UUID, owner: str, ttl: timedelta, now: datetime
) -> BatchExportJob | None:
    """Lease this job if it is waiting (pending, or its runner's lease expired); else None."""
    if _take(conn, _this(tenant_id, job_id), owner=owner, ttl=ttl, now=now):
        return get_job(conn, tenant_id=tenant_id, job_id=job_id)
    return None


@scoped
def renew_job_lease(
    conn: Connection, *, tenant_id: UUID, job_id: UUID, owner: str, ttl: timedelta, now: datetime
) -> BatchExportJob | None:
    """Extend the lease of a job this owner runs; the job (to see a cancel request), or None
    when the lease was lost."""
    result = conn.execute(
        update(export_jobs)
        .where(_owned(tenant_id, job_id, owner))
        .values(lease_expires_us=to_epoch_us(now + ttl))
    )
    return get_job(conn, tenant_id=tenant_id, job_id=job_id) if result.rowcount == 1 else None


@scoped
def set_job_snapshot(
    conn: Connection,
    *,
    tenant_id: UUID,
    job_id: UUID,
    owner: str,
    snapshot_txid: int,
    snapshot_seq: int,
) -> bool:
    """Fix the events a job exports, on its first start; False if the lease was lost."""
    result = conn.execute(
        update(export_jobs)
        .where(_owned(tenant_id, job_id, owner))
        .values(snapshot_txid=snapshot_txid, snapshot_seq=snapshot_seq)
    )
    return result.rowcount == 1


@scoped
def set_job_total(
    conn: Connection, *, tenant_id: UUID, job_id: UUID, owner: str, estimated_total: int
) -> bool:
    """Record how many events the job's snapshot holds (counted while it runs)."""
    result = conn.execute(
        update(export_jobs)
        .where(_owned(tenant_id, job_id, owner))
        .values(estimated_total=estimated_total)
    )
    return result.rowcount == 1


@scoped
def save_checkpoint(
    conn: Connection,
    *,
    tenant_id: UUID,
    job_id: UUID,
    owner: str,
    checkpoint: ExportCheckpoint | None,
    exported: int,
    first_event_id: UUID | None,
    last_event_id: UUID | None,
    dead_lettered: int | None = None,
    ttl: timedelta,
    now: datetime,
) -> BatchExportJob | None:
    """Record how far the job got (None: start over) and extend its lease.

    Returns the job (whose `cancel_requested` the runner checks), or None when the lease
    was lost: another process runs the job now and this one must stop.
    """
    values: dict[str, Any] = {
        "checkpoint_ts_us": None if checkpoint is None else checkpoint.ts_us,
        "checkpoint_seq": None if checkpoint is None else checkpoint.seq,
        "checkpoint_bytes": None if checkpoint is None else checkpoint.bytes_written,
        "exported": exported,
        "first_event_id": None if first_event_id is None else str(first_event_id),
        "last_event_id": None if last_event_id is None else str(last_event_id),
        "error": None,
        "lease_expires_us": to_epoch_us(now + ttl),
    }
    if dead_lettered is not None:
        values["dead_lettered"] = dead_lettered
    result = conn.execute(
        update(export_jobs).where(_owned(tenant_id, job_id, owner)).values(**values)
    )
    return get_job(conn, tenant_id=tenant_id, job_id=job_id) if result.rowcount == 1 else None


@scoped
def record_job_error(
    conn: Connection, *, tenant_id: UUID, job_id: UUID, owner: str, error: str
) -> bool:
    """Show why the running job is waiting (a destination's last failure); False if lost."""
    result = conn.execute(
        update(export_jobs).where(_owned(tenant_id, job_id, owner)).values(error=error[:1000])
    )
    return result.rowcount == 1


@scoped
def release_job(conn: Connection, *, tenant_id: UUID, job_id: UUID, owner: str) -> None:
    """Give a running job back (shutdown): it stays running, claimable at once, checkpoint kept."""
    conn.execute(
        update(export_jobs)
        .where(_owned(tenant_id, job_id, owner))
        .values(owner=None, lease_expires_us=0)
    )


@scoped
def finish_job(
    conn: Connection,
    *,
    tenant_id: UUID,
    job_id: UUID,
    owner: str | None,
    status: JobStatus,
    now: datetime,
    error: str | None = None,
) -> bool:
    """Mark a job completed, failed or cancelled; with `owner`, only if it still runs it."""
    if status not in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValueError(f"status: {status.value} does not finish a job")
    condition = (
        _owned(tenant_id, job_id, owner)
        if owner is not None
        else and_(_this(tenant_id, job_id), _J.status.in_(_ACTIVE))
    )
    result = conn.execute(
        update(export_jobs)
        .where(condition)
        .values(
            status=status.value,
            error=None if error is None else error[:1000],
            owner=None,
            lease_expires_us=None,
            finished_us=to_epoch_us(now),
        )
    )
    return result.rowcount == 1


@scoped
def request_cancel(
    conn: Connection, *, tenant_id: UUID, job_id: UUID, now: datetime
) -> BatchExportJob | None:
    """Cancel a job: a pending one at once; a running one is asked to stop (its runner deletes
    what it wrote). The job afterwards, or None if there is no such job."""
    conn.execute(
        update(export_jobs)
        .where(_this(tenant_id, job_id), _J.status == JobStatus.PENDING.value)
        .values(status=JobStatus.CANCELLED.value, finished_us=to_epoch_us(now))
    )
    conn.execute(
        update(export_jobs)
        .where(_this(tenant_id, job_id), _J.status == JobStatus.RUNNING.value)
        .values(cancel_requested=True)
    )
    return get_job(conn, tenant_id=tenant_id, job_id=job_id)


def _expired(cutoff_us: int) -> ColumnElement[bool]:
    # A job is created before it finishes, so `created_us < cutoff` holds for every expired
    # job: it bounds the scan to a range of `ix_export_jobs_status` (status, created_us).
    return and_(_J.status.in_(_FINISHED), _J.created_us < cutoff_us, _J.finished_us < cutoff_us)


@platform_wide
def expired_jobs(
    conn: Connection, *, finished_before: datetime, limit: int
) -> list[BatchExportJob]:
    """Up to `limit` finished jobs (completed, failed, cancelled; of any tenant) that
    finished before `finished_before`, oldest first. Pending and running jobs never are."""
    rows = conn.execute(
        select(export_jobs)
        .where(_expired(to_epoch_us(finished_before)))
        .order_by(_J.created_us, _J.id)
        .limit(limit)
    ).mappings()
    return [_job_of(row) for row in rows]


@platform_wide
def delete_expired_jobs(
    conn: Connection, *, job_ids: Collection[UUID], finished_before: datetime
) -> set[UUID]:
    """Delete these jobs if they still finished before `finished_before`; the ids this
    transaction deleted (another process may have deleted some first)."""
    if not job_ids:
        return set()
    deleted = conn.execute(
        delete(export_jobs)
        .where(
            _J.id.in_(sorted(str(j) for j in job_ids)),
            _expired(to_epoch_us(finished_before)),
        )
        .returning(_J.id)
    ).scalars()
    return {uuid_from_canonical(ident) for ident in deleted}
