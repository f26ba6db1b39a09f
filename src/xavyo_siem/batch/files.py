"""File exports: the CSV fast path, reading ahead, and the writer of partial files."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar
from uuid import UUID

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from xavyo_siem.batch.control import (
    Busy,
    Cancelled,
    ExportSettings,
    Progress,
    RunControl,
    Stopped,
    now_utc,
    partial_path,
)
from xavyo_siem.errors import EncodeError, ExportJobError
from xavyo_siem.format import (
    CSV_SQL_PARTS,
    csv_header,
    csv_lines_of_parts,
    event_id_of_parts,
    make_formatter,
)
from xavyo_siem.manifest import build_manifest, encode_manifest, manifest_path
from xavyo_siem.model import (
    BatchExportJob,
    ExportCheckpoint,
    ExportFormat,
    JobStatus,
)
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store.engine import in_transaction
from xavyo_siem.store.events import TimeKey
from xavyo_siem.store.leases import LeaseLost
from xavyo_siem.store.ranges import (
    Snapshot,
    read_range_events,
    read_range_parts,
)

__all__ = ["FileWriter", "csv_lines_of_parts", "read_ahead"]

log = logging.getLogger("xavyo_siem.batch")

_T = TypeVar("_T")
_READ_BYTES: Final = 1 << 20
_FILE_MODE: Final = 0o600  # audit data: readable by its owner only


def read_ahead(pages: Iterator[_T], stop: threading.Event) -> Iterator[_T]:
    """`pages`, read one ahead by a helper thread while the caller writes the previous one.

    Reading waits on the database, writing on the disk; overlapping them is most of the
    speed of a large export. At most one page waits, so memory stays bounded. Raises
    `Stopped` when `stop` is set before the pages end: a stop must never look like the end
    of the range, or a stopped export would be finished as complete with part of its events.
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
                    raise Stopped() from None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        done.set()
        helper.join()


class FileWriter:
    """Writes one file export: partial file, checkpoints, manifest, rename into place.

    Its job is leased to `owner`; `settings` give the page size and the lease's time to live.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        owner: str,
        settings: ExportSettings,
        job: BatchExportJob,
        snapshot: Snapshot,
        control: RunControl,
        on_progress: Progress | None,
    ) -> None:
        self.engine = engine
        self.owner = owner
        self.settings = settings
        self.job = job
        self.snapshot = snapshot
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
            self.control.counted.wait()
            self._complete()
            return
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        discard = True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                discard = False
                raise Busy() from None
            try:
                self._write(fd)
            except (LeaseLost, Stopped, SQLAlchemyError):
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
        # Three stages, one page apart: a helper thread reads the next page, this thread
        # encodes, and an I/O thread writes, fsyncs, hashes and checkpoints the previous page
        # (releasing the GIL while it waits on the disk and the store).
        with ThreadPoolExecutor(1, thread_name_prefix="xavyo-siem-export-write") as io:
            stored: Future[None] | None = None
            for items, key, first_id, last_id in read_ahead(self._pages(after), self.control.stop):
                data = prefix + encode(items)
                prefix = b""
                offset += len(data)
                exported += len(items)
                first = first or first_id
                last = last_id
                if stored is not None:
                    stored.result()  # the previous page is durable (or its error is raised)
                page = ExportCheckpoint(key.ts_us, key.seq, offset)
                stored = io.submit(self._store_page, fd, data, hasher, page, exported, first, last)
            if stored is not None:
                stored.result()
        if exported == 0:
            raise ExportJobError("no events of the range remain to export")
        self.control.counted.wait()  # the job's total is recorded before it completes
        self._finish(fd, exported, first, last, offset, hasher.hexdigest())

    def _store_page(
        self,
        fd: int,
        data: bytes,
        hasher: Any,
        checkpoint: ExportCheckpoint,
        exported: int,
        first: UUID | None,
        last: UUID | None,
    ) -> None:
        """Append one encoded page, make it durable, then checkpoint past it."""
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        hasher.update(data)
        self._checkpoint(checkpoint, exported, first, last)
        if self.on_progress is not None:
            self.on_progress(exported, None)
        self.control.check()

    def _encoder(self) -> tuple[Callable[[list[Any]], bytes], bytes]:
        """How a page becomes bytes, and the bytes that start a new file."""
        job = self.job
        if job.format is ExportFormat.CSV:
            guard = bool(job.options.get("formula_guard", True))
            tenant = job.tenant_id

            def csv_rows(rows: list[Any]) -> bytes:
                lines = csv_lines_of_parts(rows, tenant, formula_guard=guard)
                return ("\r\n".join(lines) + "\r\n").encode()

            return csv_rows, (csv_header() + "\r\n").encode()
        formatter = make_formatter(job.format, job.options)

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

        CSV pages are rows of `format.CSV_SQL_PARTS` (the fast path); other formats get events.
        """
        job = self.job
        limit = self.settings.chunk_events
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
            with self.engine.connect() as conn:
                if job.format is ExportFormat.CSV:
                    rows, key = read_range_parts(conn, after=after, parts=CSV_SQL_PARTS, **query)
                    items = rows
                    ids = (
                        (event_id_of_parts(rows[0]), event_id_of_parts(rows[-1])) if rows else None
                    )
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
        saved = in_transaction(
            self.engine,
            lambda conn: job_rows.save_checkpoint(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.owner,
                checkpoint=checkpoint,
                exported=exported,
                first_event_id=first,
                last_event_id=last,
                ttl=self.settings.ttl,
                now=now_utc(),
            ),
        )
        if saved is None:
            raise LeaseLost(f"job {job.id}: lease lost; another process runs it now")
        if saved.cancel_requested:
            raise Cancelled()

    def _finish(
        self, fd: int, exported: int, first: UUID | None, last: UUID | None, size: int, digest: str
    ) -> None:
        finished = now_utc()
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
        done = in_transaction(
            self.engine,
            lambda conn: job_rows.finish_job(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.owner,
                status=JobStatus.COMPLETED,
                now=now_utc(),
            ),
        )
        if not done:
            raise LeaseLost(f"job {job.id}: lease lost before it could be marked completed")
