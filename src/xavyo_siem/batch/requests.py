"""Export requests: validate one into a job, find, resume and cancel jobs."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine

from xavyo_siem.batch.control import PARTIAL_SUFFIX, now_utc, partial_path
from xavyo_siem.errors import EncodeError, ExportJobError, InvalidExport
from xavyo_siem.format import make_formatter, read_format_options
from xavyo_siem.manifest import manifest_path
from xavyo_siem.model import (
    EPOCH,
    BatchExportJob,
    DeliveryType,
    EventFilter,
    ExportFormat,
    ExportTarget,
    JobStatus,
    SiemDestination,
    format_timestamp,
)
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store import writing
from xavyo_siem.store.destinations import find_by_name_or_id
from xavyo_siem.store.ranges import (
    has_events,
)
from xavyo_siem.trail import Action, Actor, Change, audited, record

__all__ = [
    "ExportRequest",
    "cancel_export_job",
    "create_export_job",
    "discard_partials",
    "find_export_job",
    "resume_export_job",
]

log = logging.getLogger("xavyo_siem.batch")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRequest:
    """What an operator or the API asks for; `create_export_job` validates it.

    Exactly one of `output` (a file path) and `destination` (a destination's name or id).
    `format` defaults to CSV for a file and is the destination's own for a destination;
    `filters` default to everything for a file and to the destination's own filters.
    `make_directory` makes the file's directory (mode 0700, with its parents) once every
    other rule passed, so a refused request leaves the file system as it was.
    """

    tenant_id: UUID
    start: datetime
    end: datetime
    output: str | os.PathLike[str] | None = None
    destination: str | None = None
    format: ExportFormat | None = None
    filters: EventFilter | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    make_directory: bool = False


def _parse_options(fmt: ExportFormat, options: Mapping[str, Any]) -> dict[str, Any]:
    """Format options with text values read as their types, validated by the formatter."""
    try:
        make_formatter(fmt, options)
    except EncodeError as exc:
        raise InvalidExport(f"options.{exc.field}", exc.reason) from None
    return read_format_options(options)


def _check_output(conn: Connection, request: ExportRequest) -> Path:
    """The output file's absolute path, once every rule about it passed (the last of them,
    made only with `make_directory`: its directory exists and can be written)."""
    assert request.output is not None
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(request.output))))
    if path.is_dir():
        raise InvalidExport("output", f"{path} is a directory")
    if path.name.endswith((PARTIAL_SUFFIX, ".manifest.json")):
        raise InvalidExport("output", "must not end in .partial or .manifest.json")
    if not request.overwrite and (path.exists() or manifest_path(path).exists()):
        raise InvalidExport("output", f"{path} already exists; choose another path or overwrite it")
    busy = job_rows.active_jobs_writing(conn, path=str(path))
    if busy:
        raise InvalidExport("output", f"job {busy[0]} already writes {path}")
    if request.make_directory:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidExport(
                "output", f"cannot make {path.parent}: {exc.strerror or exc}"
            ) from None
    if not path.parent.is_dir():
        raise InvalidExport("output", f"directory {path.parent} does not exist")
    try:
        handle, probe = tempfile.mkstemp(dir=path.parent, prefix=".xavyo-siem-probe-")
    except OSError as exc:
        raise InvalidExport(
            "output", f"cannot write in {path.parent}: {exc.strerror or exc}"
        ) from None
    os.close(handle)
    os.unlink(probe)
    return path


def _find_destination(conn: Connection, tenant_id: UUID, name_or_id: str) -> SiemDestination:
    found = find_by_name_or_id(conn, tenant_id=tenant_id, name_or_id=name_or_id)
    if found is None:
        raise InvalidExport("destination", f"tenant {tenant_id} has no destination {name_or_id!r}")
    if found.delivery_type is DeliveryType.FILE:
        raise InvalidExport(
            "destination", f"{found.name} is a file destination; export to a file instead"
        )
    if not found.enabled:
        raise InvalidExport("destination", f"{found.name} is disabled; enable it first")
    return found


def _job_of_request(conn: Connection, request: ExportRequest, now: datetime) -> BatchExportJob:
    """Validate `request` against the store; the pending job it asks for."""
    for name, moment in (("start", request.start), ("end", request.end)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidExport(name, "must carry a UTC offset, e.g. 2026-03-01T00:00:00Z")
    start, end = request.start.astimezone(UTC), request.end.astimezone(UTC)
    if end <= start:
        raise InvalidExport("end", "must be after start")
    if not has_events(conn, tenant_id=request.tenant_id):
        raise InvalidExport("tenant_id", f"no events are stored for tenant {request.tenant_id}")
    if request.output is None and request.destination is None:
        raise InvalidExport("output", "give a file to write, or a destination to send to")
    if request.output is not None and request.destination is not None:
        raise InvalidExport("output", "give a file or a destination, not both")
    options: dict[str, Any] = {}
    if request.destination is not None:
        destination = _find_destination(conn, request.tenant_id, request.destination)
        if request.format is not None and request.format is not destination.format:
            raise InvalidExport(
                "format", f"{destination.name} takes {destination.format.value}, its own format"
            )
        if request.options:
            raise InvalidExport("options", "a destination export uses the destination's options")
        kind, target, fmt = ExportTarget.DESTINATION, str(destination.id), destination.format
        filters = destination.filters if request.filters is None else request.filters
    else:
        kind, target = ExportTarget.FILE, ""
        fmt = request.format or ExportFormat.CSV
        options = _parse_options(fmt, request.options)
        filters = request.filters or EventFilter()
    if not has_events(conn, tenant_id=request.tenant_id, start=start, end=end, filter=filters):
        raise InvalidExport(
            "range",
            f"tenant {request.tenant_id} has no events in [{format_timestamp(start)}, "
            f"{format_timestamp(end)}) that match the filters",
        )
    if kind is ExportTarget.FILE:  # last: the only rule that touches the file system
        target = str(_check_output(conn, request))
    return BatchExportJob(
        id=uuid.uuid4(),
        tenant_id=request.tenant_id,
        target_kind=kind,
        target=target,
        format=fmt,
        start=start,
        end=end,
        filters=filters,
        options=options,
        created_at=now,
    )


def _request_tenant(arguments: Mapping[str, Any]) -> UUID | None:
    request = arguments.get("request")
    return request.tenant_id if isinstance(request, ExportRequest) else None


def _job_target(arguments: Mapping[str, Any]) -> str | None:
    return f"export_job:{arguments['job_id']}" if "job_id" in arguments else None


def _about(job: BatchExportJob) -> Change:
    """A change to `job`, for the audit trail: its id, range, format and where it goes (a
    file's name, never its directory)."""
    details = {
        "target_kind": job.target_kind.value,
        "format": job.format.value,
        "start": format_timestamp(job.start),
        "end": format_timestamp(job.end),
    }
    name = Path(job.target).name if job.target_kind is ExportTarget.FILE else job.target
    return Change(target=f"export_job:{job.id}", target_name=name, details=details)


@audited(Action.EXPORT_CREATED, tenant=_request_tenant)
def create_export_job(
    engine: Engine,
    request: ExportRequest,
    *,
    owner: str | None = None,
    ttl: timedelta = timedelta(seconds=30),
    now: datetime | None = None,
    actor: Actor | None = None,
) -> BatchExportJob:
    """Validate `request` and store its job; nothing is stored when it is refused.

    Without `owner` the job is pending, for a worker to pick up. With `owner` it is stored
    running and leased to that owner (the process that will run it at once), so no worker
    takes it first. Raises `InvalidExport` naming the field on a bad request.
    """
    moment = now or now_utc()
    with writing(engine) as conn:
        job = _job_of_request(conn, request, moment)
        if owner is not None:
            job = replace(
                job,
                status=JobStatus.RUNNING,
                owner=owner,
                lease_expires_at=moment + ttl,
                attempts=1,
                started_at=moment,
            )
        stored = job_rows.insert_job(conn, job=job)
        record(
            conn, actor, tenant_id=stored.tenant_id, action=Action.EXPORT_CREATED,
            change=_about(stored),
        )  # fmt: skip
        return stored


def find_export_job(
    engine: Engine, *, job_id: UUID, tenant_id: UUID | None = None
) -> BatchExportJob:
    """The job with this id (of `tenant_id` when given); `InvalidExport` when there is none."""
    with engine.connect() as conn:
        tenant = tenant_id or job_rows.find_job_tenant(conn, job_id=job_id)
        job = None if tenant is None else job_rows.get_job(conn, tenant_id=tenant, job_id=job_id)
    if job is None:
        raise InvalidExport("job", f"no export job {job_id}")
    return job


def resume_export_job(
    engine: Engine, *, tenant_id: UUID, job_id: UUID, owner: str, ttl: timedelta
) -> BatchExportJob:
    """Lease a job whose runner died (or that is still pending) to `owner`, to run it now."""
    now = now_utc()
    with writing(engine) as conn:
        claimed = job_rows.claim_job_by_id(
            conn, tenant_id=tenant_id, job_id=job_id, owner=owner, ttl=ttl, now=now
        )
        if claimed is not None:
            return claimed
        job = job_rows.get_job(conn, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        raise InvalidExport("job", f"no export job {job_id}")
    if job.finished:
        raise InvalidExport("job", f"job {job_id} is already {job.status.value}")
    until = format_timestamp(job.lease_expires_at or now)
    raise ExportJobError(
        f"job {job_id} is running in {job.owner} (lease until {until}); it continues there, "
        "or can be resumed once that lease has expired"
    )


@audited(Action.EXPORT_CANCELLED, target=_job_target)
def cancel_export_job(
    engine: Engine, *, tenant_id: UUID, job_id: UUID, actor: Actor | None = None
) -> BatchExportJob:
    """Cancel a job. A pending job is cancelled at once; a running one stops at its next
    checkpoint and deletes what it wrote; one whose runner died is cleaned up here."""
    now = now_utc()
    with writing(engine) as conn:
        before = job_rows.get_job(conn, tenant_id=tenant_id, job_id=job_id)
        if before is None:
            raise InvalidExport("job", f"no export job {job_id}")
        if before.finished:
            raise InvalidExport("job", f"job {job_id} is already {before.status.value}")
        job = job_rows.request_cancel(conn, tenant_id=tenant_id, job_id=job_id, now=now)
        assert job is not None
        record(conn, actor, tenant_id=tenant_id, action=Action.EXPORT_CANCELLED, change=_about(job))
    if job.status is JobStatus.RUNNING and (job.lease_expires_at or EPOCH) < now:
        owner = f"cancel:{socket.gethostname()}:{os.getpid()}"
        with writing(engine) as conn:
            abandoned = job_rows.claim_job_by_id(
                conn,
                tenant_id=tenant_id,
                job_id=job_id,
                owner=owner,
                ttl=timedelta(seconds=30),
                now=now,
            )
        if abandoned is not None:
            if abandoned.target_kind is ExportTarget.FILE:
                discard_partials(Path(abandoned.target))
            with writing(engine) as conn:
                job_rows.finish_job(
                    conn,
                    tenant_id=tenant_id,
                    job_id=job_id,
                    owner=owner,
                    status=JobStatus.CANCELLED,
                    now=now_utc(),
                )
    return find_export_job(engine, job_id=job_id, tenant_id=tenant_id)


def discard_partials(final: Path) -> None:
    """Delete the partial files of an export nobody writes any more (locked ones stay)."""
    partial = partial_path(final)
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(partial, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            partial.unlink(missing_ok=True)
        except BlockingIOError:
            log.warning("%s is still being written by another process; left in place", partial)
        finally:
            os.close(fd)
    partial_path(manifest_path(final)).unlink(missing_ok=True)
