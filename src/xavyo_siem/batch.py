"""Batch exports: one tenant's events of a time range, to a file or a destination, resumable.

A request is validated (`create_export_job`) and becomes a `BatchExportJob` row: pending
(queued for the workers of `xavyo-siem run`), or running and leased to the process that
created it. `BatchExporter.run` carries a leased job to its end:

* the events are those stored before the job first started (a store snapshot, see
  store/ranges.py), read in `(timestamp, seq)` order one page at a time;
* a file export writes `<file>.partial`, and after every page flushes, fsyncs and records a
  checkpoint (last key, file length, count, first and last ids) in the job row. A resumed
  job cuts the partial file back to its checkpoint and continues after it, so the file is
  byte for byte the one an uninterrupted run writes. At the end the manifest is written and
  both files are renamed into place; a failed or cancelled job deletes what it wrote;
* a destination export runs the streaming delivery loop (rate limit, retries, circuit,
  dead letters) on a `RangeSource`: its checkpoint lives in the job, so the destination's
  streaming cursor and health never move.

The layout of the files and the guarantees are in docs/export.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import queue
import socket
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar
from uuid import UUID

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from xavyo_siem.delivery.base import Transport
from xavyo_siem.errors import EncodeError, ExportJobError, InvalidExport, SiemError
from xavyo_siem.format import csv_header, make_formatter
from xavyo_siem.format.csv_rows import FORMULA_TRIGGERS
from xavyo_siem.manifest import build_manifest, encode_manifest, manifest_path
from xavyo_siem.model import (
    EPOCH,
    AuditEvent,
    BatchExportJob,
    CircuitState,
    DeliveryType,
    EventFilter,
    ExportCheckpoint,
    ExportFormat,
    ExportTarget,
    JobStatus,
    SiemDestination,
    format_timestamp,
)
from xavyo_siem.pipeline.export import DestinationLoop, PipelineSettings, SourcePage, SourceStart
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.destinations import find_destination, get_destination
from xavyo_siem.store.events import TimeKey
from xavyo_siem.store.leases import LeaseLost
from xavyo_siem.store.ranges import (
    Snapshot,
    count_in_range,
    has_events,
    read_range_events,
    read_range_rows,
    snapshot_is_final,
    start_snapshot,
)

__all__ = [
    "BatchExporter",
    "ExportRequest",
    "ExportSettings",
    "RangeSource",
    "cancel_export_job",
    "create_export_job",
    "csv_lines_of_rows",
    "find_export_job",
    "partial_path",
    "resume_export_job",
]

log = logging.getLogger("xavyo_siem.batch")

Formatter = Callable[[AuditEvent], str]
Components = Callable[[SiemDestination], Awaitable[tuple[Transport, Formatter]]]
Progress = Callable[[int, int | None], None]
_T = TypeVar("_T")
_R = TypeVar("_R")

PARTIAL_SUFFIX: Final = ".partial"
_READ_BYTES: Final = 1 << 20
_FILE_MODE: Final = 0o600
# Format options an export accepts, and how a text value (`--option k=v`) is read.
_INT_OPTIONS: Final = frozenset(("facility", "enterprise_number", "cs_max_chars"))
_BOOL_OPTIONS: Final = frozenset(("formula_guard",))
_TRUE: Final = frozenset(("true", "yes", "on", "1"))
_FALSE: Final = frozenset(("false", "no", "off", "0"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRequest:
    """What an operator or the API asks for; `create_export_job` validates it.

    Exactly one of `output` (a file path) and `destination` (a destination's name or id).
    `format` defaults to CSV for a file and is the destination's own for a destination;
    `filters` default to everything for a file and to the destination's own filters.
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


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """How an exporter paces itself.

    `chunk_events`: events per page read, written and checkpointed. `lease_ttl_s`: how long
    a job stays leased to a process that stopped renewing (died). `poll_s`: how often the
    lease is renewed and a cancel request looked for while a destination export waits.
    """

    chunk_events: int = 10_000
    lease_ttl_s: float = 30.0
    poll_s: float = 1.0
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)

    @property
    def ttl(self) -> timedelta:
        """The lease time to live."""
        return timedelta(seconds=self.lease_ttl_s)


def partial_path(path: Path) -> Path:
    """Where a file export writes until it is complete: `<file>.partial`."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _now() -> datetime:
    return datetime.now(UTC)


# -- requests --------------------------------------------------------------------------------


def _parse_options(fmt: ExportFormat, options: Mapping[str, Any]) -> dict[str, Any]:
    """Format options with text values read as their types; validated by the formatter."""
    parsed: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, str) and name in _INT_OPTIONS:
            try:
                value = int(value.strip())
            except ValueError:
                raise InvalidExport(f"options.{name}", "must be an integer") from None
        elif isinstance(value, str) and name in _BOOL_OPTIONS:
            word = value.strip().lower()
            if word not in _TRUE | _FALSE:
                raise InvalidExport(f"options.{name}", "must be true or false")
            value = word in _TRUE
        parsed[name] = value
    try:
        make_formatter(fmt, **parsed)
    except EncodeError as exc:
        raise InvalidExport(f"options.{exc.field}", exc.reason) from None
    return parsed


def _check_output(conn: Connection, output: str | os.PathLike[str], overwrite: bool) -> Path:
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(output))))
    if path.is_dir():
        raise InvalidExport("output", f"{path} is a directory")
    if path.name.endswith((PARTIAL_SUFFIX, ".manifest.json")):
        raise InvalidExport("output", "must not end in .partial or .manifest.json")
    if not path.parent.is_dir():
        raise InvalidExport("output", f"directory {path.parent} does not exist")
    if not overwrite and (path.exists() or manifest_path(path).exists()):
        raise InvalidExport("output", f"{path} already exists; choose another path or overwrite it")
    busy = job_rows.active_jobs_writing(conn, path=str(path))
    if busy:
        raise InvalidExport("output", f"job {busy[0]} already writes {path}")
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
    found = find_destination(conn, tenant_id=tenant_id, name=name_or_id)
    if found is None:
        with contextlib.suppress(ValueError):
            found = get_destination(conn, tenant_id=tenant_id, destination_id=UUID(name_or_id))
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
    if (request.output is None) == (request.destination is None):
        raise InvalidExport("output", "give either a file or a destination (not both)")
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
        assert request.output is not None
        kind = ExportTarget.FILE
        target = str(_check_output(conn, request.output, request.overwrite))
        fmt = request.format or ExportFormat.CSV
        options = _parse_options(fmt, request.options)
        filters = request.filters or EventFilter()
    if not has_events(conn, tenant_id=request.tenant_id, start=start, end=end, filter=filters):
        raise InvalidExport(
            "range",
            f"tenant {request.tenant_id} has no events in [{format_timestamp(start)}, "
            f"{format_timestamp(end)}) that match the filters",
        )
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


def create_export_job(
    engine: Engine,
    request: ExportRequest,
    *,
    owner: str | None = None,
    ttl: timedelta = timedelta(seconds=30),
    now: datetime | None = None,
) -> BatchExportJob:
    """Validate `request` and store its job; nothing is stored when it is refused.

    Without `owner` the job is pending, for a worker to pick up. With `owner` it is stored
    running and leased to that owner (the process that will run it at once), so no worker
    takes it first. Raises `InvalidExport` naming the field on a bad request.
    """
    moment = now or _now()
    with engine.begin() as conn:
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
        return job_rows.insert_job(conn, job=job)


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
    now = _now()
    with engine.begin() as conn:
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


def cancel_export_job(engine: Engine, *, tenant_id: UUID, job_id: UUID) -> BatchExportJob:
    """Cancel a job. A pending job is cancelled at once; a running one stops at its next
    checkpoint and deletes what it wrote; one whose runner died is cleaned up here."""
    now = _now()
    with engine.begin() as conn:
        before = job_rows.get_job(conn, tenant_id=tenant_id, job_id=job_id)
        if before is None:
            raise InvalidExport("job", f"no export job {job_id}")
        if before.finished:
            raise InvalidExport("job", f"job {job_id} is already {before.status.value}")
        job = job_rows.request_cancel(conn, tenant_id=tenant_id, job_id=job_id, now=now)
    assert job is not None
    if job.status is JobStatus.RUNNING and (job.lease_expires_at or EPOCH) < now:
        owner = f"cancel:{socket.gethostname()}:{os.getpid()}"
        with engine.begin() as conn:
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
                _discard_partials(Path(abandoned.target))
            with engine.begin() as conn:
                job_rows.finish_job(
                    conn,
                    tenant_id=tenant_id,
                    job_id=job_id,
                    owner=owner,
                    status=JobStatus.CANCELLED,
                    now=_now(),
                )
    return find_export_job(engine, job_id=job_id, tenant_id=tenant_id)


def _discard_partials(final: Path) -> None:
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


# -- the CSV fast path -----------------------------------------------------------------------


def csv_lines_of_rows(
    rows: Sequence[tuple[Any, ...]], tenant_id: UUID, *, formula_guard: bool = True
) -> list[str]:
    """CSV rows (without line ends) of stored rows (`store.ranges.RANGE_ROW_COLUMNS`).

    Exactly what `format.CsvFormatter` writes for the same events (a test holds the two
    equal on arbitrary events), at twice the speed: nothing is built per row but the line.
    """
    triggers = FORMULA_TRIGGERS

    def cell(value: str | None) -> str:
        if value is None:
            return ""
        if formula_guard and value[:1] in triggers:
            value = "'" + value
        if '"' in value:
            value = value.replace('"', '""')
        return '"' + value + '"'

    def plain(value: str | None) -> str:  # values that never hold `"` nor start a formula
        return "" if value is None else '"' + value + '"'

    def raw(value: str | None) -> str:  # quoted, not guarded (as CsvFormatter writes it)
        return "" if value is None else '"' + value.replace('"', '""') + '"'

    tenant = str(tenant_id)
    lines: list[str] = []
    append = lines.append
    second = None
    middle = ""
    for (
        _seq, event_id, ts_us, event_type, category, severity, event_name, action, outcome,
        actor_id, actor_email, source_ip, user_agent, target_user, target_resource, reason,
        session_id, request_id, metadata,
    ) in rows:  # fmt: skip
        whole, micro = divmod(ts_us, 1_000_000)
        if whole != second:  # events come in time order: one datetime per second, not per row
            second = whole
            moment = (EPOCH + timedelta(seconds=whole)).isoformat()[:19]
            middle = f'","{tenant}","{moment}.'
        append(
            f'"{event_id}{middle}{micro:06d}Z",{cell(event_type)},"{category}","{severity}",'
            f"{plain(outcome)},{raw(source_ip)},"
            f"{cell(event_name)},{cell(action)},{cell(actor_id)},{cell(actor_email)},"
            f"{cell(user_agent)},{cell(target_user)},{cell(target_resource)},{cell(reason)},"
            f"{cell(session_id)},{cell(request_id)},{raw(metadata)}"
        )
    return lines


# -- writing files ---------------------------------------------------------------------------


class _Outcome(Exception):
    """How a run ended early; the exporter maps each to the job's state."""


class _Cancelled(_Outcome):
    """Someone asked to cancel the job."""


class _Stopped(_Outcome):
    """The process is shutting down: give the job back, keep the checkpoint."""


class _Busy(_Outcome):
    """Another live process still writes the partial file (its lease expired meanwhile)."""


@dataclass(slots=True)
class _Control:
    """Signals between the exporter, its lease keeper and the thread that writes the file."""

    stop: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    loop: DestinationLoop | None = None

    def halt(self) -> None:
        if self.loop is not None:
            self.loop.stop()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost("the job's lease was lost; another process runs it now")
        if self.cancel.is_set():
            raise _Cancelled()
        if self.stop.is_set():
            raise _Stopped()


def _ahead(pages: Iterator[_T], stop: threading.Event) -> Iterator[_T]:
    """`pages`, read one ahead by a helper thread while the caller writes the previous one.

    Reading waits on the database, writing on the disk; overlapping them is most of the
    speed of a large export. At most one page waits, so memory stays bounded.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    done = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not (done.is_set() or stop.is_set()):
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(("page", page)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))

    helper = threading.Thread(target=produce, name="xavyo-siem-export-read", daemon=True)
    helper.start()
    try:
        while True:
            try:
                kind, item = handoff.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        done.set()
        helper.join()


class _FileWriter:
    """Writes one file export: partial file, checkpoints, manifest, rename into place."""

    def __init__(
        self,
        exporter: BatchExporter,
        job: BatchExportJob,
        snapshot: Snapshot,
        total: int,
        control: _Control,
        on_progress: Progress | None,
    ) -> None:
        self.exporter = exporter
        self.job = job
        self.snapshot = snapshot
        self.total = total
        self.control = control
        self.on_progress = on_progress
        self.final = Path(job.target)
        self.partial = partial_path(self.final)
        self.manifest = manifest_path(self.final)
        self.manifest_partial = partial_path(self.manifest)

    def run(self) -> None:
        """Write (or continue) the file, then put it and its manifest in place."""
        job = self.job
        if job.checkpoint is not None and not self.partial.exists() and self._finalized():
            self._complete()
            return
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        discard = True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                discard = False
                raise _Busy() from None
            try:
                self._write(fd)
            except (LeaseLost, _Stopped, SQLAlchemyError):
                discard = False
                raise
            discard = False
        finally:
            if discard:  # failed or cancelled: nothing half-written stays behind
                self.partial.unlink(missing_ok=True)
                self.manifest_partial.unlink(missing_ok=True)
            os.close(fd)

    def _finalized(self) -> bool:
        """True when an earlier run of this job already put its file in place."""
        try:
            manifest = orjson.loads(self.manifest.read_bytes())
            size = self.final.stat().st_size
        except (OSError, orjson.JSONDecodeError):
            return False
        return (
            isinstance(manifest, dict)
            and manifest.get("job_id") == str(self.job.id)
            and manifest.get("bytes") == size
        )

    def _write(self, fd: int) -> None:
        job = self.job
        checkpoint = job.checkpoint
        exported, first, last = job.exported, job.first_event_id, job.last_event_id
        size = os.fstat(fd).st_size
        if (
            checkpoint is None
            or checkpoint.bytes_written is None
            or size < checkpoint.bytes_written
        ):
            if checkpoint is not None:
                log.warning(
                    "job %s: the partial file is shorter than its checkpoint; restarting", job.id
                )
            checkpoint, exported, first, last = None, 0, None, None
        offset = 0 if checkpoint is None else checkpoint.bytes_written or 0
        os.ftruncate(fd, offset)
        hasher = hashlib.sha256()
        position = 0
        while position < offset:
            chunk = os.pread(fd, min(_READ_BYTES, offset - position), position)
            if not chunk:
                raise ExportJobError(f"{self.partial}: shorter than its checkpoint")
            hasher.update(chunk)
            position += len(chunk)
        os.lseek(fd, offset, os.SEEK_SET)
        if checkpoint is not None:
            log.info("job %s: resuming after %d events (%d bytes)", job.id, exported, offset)
        after = None if checkpoint is None else TimeKey(checkpoint.ts_us, checkpoint.seq)
        encode, head = self._encoder()
        prefix = head if offset == 0 else b""
        for items, key, first_id, last_id in _ahead(self._pages(after), self.control.stop):
            data = prefix + encode(items)
            prefix = b""
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            hasher.update(data)
            offset += len(data)
            exported += len(items)
            first = first or first_id
            last = last_id
            self._checkpoint(ExportCheckpoint(key.ts_us, key.seq, offset), exported, first, last)
            if self.on_progress is not None:
                self.on_progress(exported, self.total)
            self.control.check()
        if exported == 0:
            raise ExportJobError("no events of the range remain to export")
        self._finish(fd, exported, first, last, offset, hasher.hexdigest())

    def _encoder(self) -> tuple[Callable[[list[Any]], bytes], bytes]:
        """How a page becomes bytes, and the bytes that start a new file."""
        job = self.job
        if job.format is ExportFormat.CSV:
            guard = bool(job.options.get("formula_guard", True))
            tenant = job.tenant_id

            def csv_rows(rows: list[Any]) -> bytes:
                lines = csv_lines_of_rows(rows, tenant, formula_guard=guard)
                lines.append("")
                return "\r\n".join(lines).encode()

            return csv_rows, (csv_header() + "\r\n").encode()
        formatter = make_formatter(job.format, **job.options)

        def lines_of(events: list[Any]) -> bytes:
            out: list[str] = []
            for event in events:
                try:
                    out.append(formatter(event))
                except EncodeError as exc:
                    raise ExportJobError(
                        f"event {event.event_id} cannot be written as {job.format.value}: {exc}"
                    ) from None
            out.append("")
            return "\n".join(out).encode()

        return lines_of, b""

    def _pages(self, after: TimeKey | None) -> Iterator[tuple[list[Any], TimeKey, UUID, UUID]]:
        """Pages of the range after `after`: (items, key of the last, first id, last id).

        CSV pages are stored rows (the fast path); other formats get events.
        """
        job = self.job
        limit = self.exporter.settings.chunk_events
        query: dict[str, Any] = {
            "tenant_id": job.tenant_id,
            "start": job.start,
            "end": job.end,
            "filter": job.filters,
            "snapshot": self.snapshot,
            "limit": limit,
        }
        while True:
            items: list[Any]
            with self.exporter.engine.connect() as conn:
                if job.format is ExportFormat.CSV:
                    rows, key = read_range_rows(conn, after=after, **query)
                    items = rows
                    ids = (UUID(rows[0][1]), UUID(rows[-1][1])) if rows else None
                else:
                    events, key = read_range_events(conn, after=after, **query)
                    items = events
                    ids = (events[0].event_id, events[-1].event_id) if events else None
            if ids is None or key is None:
                return
            yield items, key, ids[0], ids[1]
            if len(items) < limit:
                return
            after = key

    def _checkpoint(
        self, checkpoint: ExportCheckpoint, exported: int, first: UUID | None, last: UUID | None
    ) -> None:
        job = self.job
        saved = self.exporter.store(
            lambda conn: job_rows.save_checkpoint(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.exporter.owner,
                checkpoint=checkpoint,
                exported=exported,
                first_event_id=first,
                last_event_id=last,
                ttl=self.exporter.settings.ttl,
                now=_now(),
            )
        )
        if saved is None:
            raise LeaseLost(f"job {job.id}: lease lost; another process runs it now")
        if saved.cancel_requested:
            raise _Cancelled()

    def _finish(
        self, fd: int, exported: int, first: UUID | None, last: UUID | None, size: int, digest: str
    ) -> None:
        finished = _now()
        manifest = build_manifest(
            self.job,
            file_name=self.final.name,
            events=exported,
            first_event_id=None if first is None else str(first),
            last_event_id=None if last is None else str(last),
            size=size,
            sha256=digest,
            finished_at=finished,
        )
        data = encode_manifest(manifest)
        handle = os.open(
            self.manifest_partial,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
            _FILE_MODE,
        )
        try:
            os.write(handle, data)
            os.fsync(handle)
        finally:
            os.close(handle)
        # The manifest first: should the process die between the two renames, the partial
        # data file is still there and the resumed run simply finishes again.
        os.replace(self.manifest_partial, self.manifest)
        os.replace(self.partial, self.final)
        directory = os.open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._complete()

    def _complete(self) -> None:
        job = self.job
        done = self.exporter.store(
            lambda conn: job_rows.finish_job(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.exporter.owner,
                status=JobStatus.COMPLETED,
                now=_now(),
            )
        )
        if not done:
            raise LeaseLost(f"job {job.id}: lease lost before it could be marked completed")


# -- delivering to a destination -------------------------------------------------------------


class RangeSource:
    """A `BatchSource` over an export's time range: its checkpoint lives in the job row.

    Deliveries never touch the destination's streaming cursor or health; refused events go
    to the destination's dead letters, their reason naming the job. A misconfigured
    destination fails the job at once (a batch job needs someone to fix it, then re-run);
    a destination that asks to retry later is retried, with the job's `error` saying why.
    """

    replays_dead_letters = False

    def __init__(
        self,
        *,
        job: BatchExportJob,
        destination: SiemDestination,
        snapshot: Snapshot,
        owner: str,
        ttl: timedelta,
        total: int | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self.job = job
        self.destination = destination
        self.snapshot = snapshot
        self.owner = owner
        self.ttl = ttl
        self.total = total
        self.on_progress = on_progress
        self.exhausted = False
        self.exported = job.exported
        self.dead_lettered = job.dead_lettered
        self.first_event_id = job.first_event_id
        self.last_event_id = job.last_event_id
        self._page_ids: tuple[UUID, UUID] | None = None

    def begin(self, conn: Connection) -> SourceStart[TimeKey | None]:
        """Start after the job's checkpoint (or at the start of the range)."""
        checkpoint = self.job.checkpoint
        return SourceStart(
            None if checkpoint is None else TimeKey(checkpoint.ts_us, checkpoint.seq)
        )

    def read(
        self, conn: Connection, *, after: TimeKey | None, limit: int
    ) -> SourcePage[TimeKey | None] | None:
        """The next page of the range; None (and exhausted) at its end."""
        job = self.job
        events, key = read_range_events(
            conn,
            tenant_id=job.tenant_id,
            start=job.start,
            end=job.end,
            filter=job.filters,
            snapshot=self.snapshot,
            after=after,
            limit=limit,
        )
        if not events:
            self.exhausted = True
            return None
        self._page_ids = (events[0].event_id, events[-1].event_id)
        return SourcePage(events, key)

    def nothing_waits(self, conn: Connection, *, after: TimeKey | None) -> bool:
        """A range has no late arrivals: what was not read is not there."""
        return True

    def record_delivered(
        self,
        conn: Connection,
        *,
        position: TimeKey | None,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        """Checkpoint the job past the batch; refused events become dead letters."""
        job = self.job
        now = _now()
        if dead:
            add_dead_letters(
                conn,
                tenant_id=job.tenant_id,
                destination_id=self.destination.id,
                entries=[(event_id, f"export {job.id}: {reason}") for event_id, reason in dead],
                now=now,
            )
        if self._page_ids is not None:
            self.first_event_id = self.first_event_id or self._page_ids[0]
            self.last_event_id = self._page_ids[1]
        exported = self.exported + delivered
        dead_lettered = self.dead_lettered + len(dead)
        assert position is not None
        saved = job_rows.save_checkpoint(
            conn,
            tenant_id=job.tenant_id,
            job_id=job.id,
            owner=self.owner,
            checkpoint=ExportCheckpoint(position.ts_us, position.seq),
            exported=exported,
            first_event_id=self.first_event_id,
            last_event_id=self.last_event_id,
            dead_lettered=dead_lettered,
            ttl=self.ttl,
            now=now,
        )
        if saved is None:
            raise LeaseLost(f"job {job.id}: lease lost; another process runs it now")
        self.exported, self.dead_lettered = exported, dead_lettered
        if self.on_progress is not None:
            self.on_progress(exported + dead_lettered, self.total)

    def record_failure(
        self, conn: Connection, *, reason: str, circuit_state: CircuitState, misconfigured: bool
    ) -> None:
        """Show the failure in the job; a misconfigured destination fails the job."""
        job = self.job
        if misconfigured:
            raise ExportJobError(f"destination {self.destination.name}: {reason}")
        if not job_rows.record_job_error(
            conn,
            tenant_id=job.tenant_id,
            job_id=job.id,
            owner=self.owner,
            error=f"retrying ({circuit_state.value}): {reason}",
        ):
            raise LeaseLost(f"job {job.id}: lease lost; another process runs it now")

    def refresh_lag(self, conn: Connection, *, position: TimeKey | None) -> None:
        """Nothing to measure: progress is the job's `exported`."""


# -- the exporter ----------------------------------------------------------------------------


class BatchExporter:
    """Runs export jobs leased to `owner`, in this process; see the module docstring."""

    def __init__(
        self,
        *,
        engine: Engine,
        owner: str | None = None,
        settings: ExportSettings | None = None,
        open_components: Components | None = None,
        bucket_for: Callable[[SiemDestination], TokenBucket | None] | None = None,
    ) -> None:
        """`open_components` opens a destination's transport and formatter (needed for
        destination exports); `bucket_for` returns the rate limit to share with the
        destination's streaming loop, if this process runs one."""
        self.engine = engine
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.settings = settings or ExportSettings()
        self.open_components = open_components
        self.bucket_for = bucket_for
        self._controls: dict[UUID, _Control] = {}

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

    def store(self, work: Callable[[Connection], _R]) -> _R:
        """Run `work` in one transaction (blocking)."""
        with self.engine.begin() as conn:
            return work(conn)

    async def _store(self, work: Callable[[Connection], _R]) -> _R:
        return await asyncio.to_thread(self.store, work)

    async def run(
        self, job: BatchExportJob, *, on_progress: Progress | None = None
    ) -> BatchExportJob:
        """Carry `job` (leased to this exporter's owner) as far as it goes; the job afterwards.

        Completed, failed (with the reason) or cancelled; or still running when this process
        stops (its lease given back) or lost the job to another process.
        """
        if job.owner != self.owner:
            raise ExportJobError(f"job {job.id} is leased to {job.owner}, not to {self.owner}")
        control = _Control()
        self._controls[job.id] = control
        keeper = asyncio.create_task(self._keep_lease(job, control))
        try:
            await self._carry(job, control, on_progress)
        except _Cancelled:
            log.info("job %s cancelled", job.id)
            if job.target_kind is ExportTarget.FILE:
                await asyncio.to_thread(_discard_partials, Path(job.target))
            await self._finish(job, JobStatus.CANCELLED)
        except (_Stopped, _Busy) as exc:
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
        self, job: BatchExportJob, control: _Control, on_progress: Progress | None
    ) -> None:
        if job.cancel_requested:
            raise _Cancelled()
        snapshot, total = await self._snapshot(job, control)
        if total == 0:
            raise ExportJobError(
                f"tenant {job.tenant_id} has no events in [{format_timestamp(job.start)}, "
                f"{format_timestamp(job.end)}) that match the filters"
            )
        if on_progress is not None:
            processed = job.exported + job.dead_lettered
            on_progress(processed, total)
        if job.target_kind is ExportTarget.FILE:
            writer = _FileWriter(self, job, snapshot, total, control, on_progress)
            await asyncio.to_thread(writer.run)
        else:
            await self._deliver(job, snapshot, total, control, on_progress)

    async def _snapshot(self, job: BatchExportJob, control: _Control) -> tuple[Snapshot, int]:
        """The job's snapshot and total: fixed on its first start, kept on resumes."""
        if job.snapshot_txid is not None and job.snapshot_seq is not None:
            return Snapshot(job.snapshot_txid, job.snapshot_seq), job.estimated_total or 0
        snapshot = await self._store(start_snapshot)
        delay = 0.01
        while not await self._store(lambda conn: snapshot_is_final(conn, snapshot)):
            control.check()  # a transaction older than the export is still open: wait for it
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        total = await self._store(
            lambda conn: count_in_range(
                conn,
                tenant_id=job.tenant_id,
                start=job.start,
                end=job.end,
                filter=job.filters,
                snapshot=snapshot,
            )
        )
        saved = await self._store(
            lambda conn: job_rows.set_job_snapshot(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.owner,
                snapshot_txid=snapshot.txid,
                snapshot_seq=snapshot.seq,
                estimated_total=total,
            )
        )
        if not saved:
            raise LeaseLost(f"job {job.id}: lease lost; another process runs it now")
        return snapshot, total

    async def _deliver(
        self,
        job: BatchExportJob,
        snapshot: Snapshot,
        total: int,
        control: _Control,
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
        transport, formatter = await self.open_components(destination)
        source = RangeSource(
            job=job,
            destination=destination,
            snapshot=snapshot,
            owner=self.owner,
            ttl=self.settings.ttl,
            total=total,
            on_progress=on_progress,
        )
        loop = DestinationLoop(
            engine=self.engine,
            destination=destination,
            transport=transport,
            formatter=formatter,
            lease=None,
            settings=self.settings.pipeline,
            source=source,
            bucket=None if self.bucket_for is None else self.bucket_for(destination),
        )
        control.loop = loop
        if control.stop.is_set() or control.cancel.is_set():
            loop.stop()
        try:
            await loop.run()
        finally:
            control.loop = None
            await transport.aclose()
        if not source.exhausted:
            control.check()
            raise _Stopped()
        await self._finish(job, JobStatus.COMPLETED)

    async def _keep_lease(self, job: BatchExportJob, control: _Control) -> None:
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
                        now=_now(),
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
                now=_now(),
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
