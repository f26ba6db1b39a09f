"""Export jobs expire: finished jobs and the files they wrote are removed after a while.

A finished job (completed, failed, cancelled) whose end is older than the retention
(`XAVYO_SIEM_EXPORT_RETENTION`, default 7 days) is deleted, and so is the file it wrote
with its manifest. Pending and running jobs never expire. The rows go first, in a
transaction that commits before any file is touched: a crash in between leaves a file
without a job (its manifest still says what it holds), never a job pointing at a missing
file. A file is removed only when the manifest beside it names the job, so a later export
to the same path (of this tenant or another) keeps its file; partial files are removed
only when no pending or running job writes that path and no process holds them.

The worker applies the retention about once an hour (`runtime/worker.py`), and
`xavyo-siem jobs expire` applies it now. Each pass is one range read of
`ix_export_jobs_status` per 1,000 expired jobs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import orjson
from sqlalchemy import Connection, Engine

from xavyo_siem.batch.requests import discard_partials
from xavyo_siem.manifest import manifest_path
from xavyo_siem.model import BatchExportJob, ExportTarget, JobStatus
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store import writing

__all__ = ["Expired", "busy_paths", "expire_export_jobs", "job_files", "remove_job_files"]

log = logging.getLogger("xavyo_siem.batch")

_PASS: Final = 1000  # jobs per transaction


@dataclass(frozen=True, slots=True)
class Expired:
    """What one application of the retention removed."""

    jobs: int = 0
    files: int = 0

    def to_dict(self) -> dict[str, int]:
        """The counts, as `--json` prints them."""
        return {"export_jobs": self.jobs, "export_files": self.files}


def _file_jobs(jobs: Iterable[BatchExportJob]) -> list[BatchExportJob]:
    return [job for job in jobs if job.target_kind is ExportTarget.FILE]


def busy_paths(conn: Connection, jobs: Iterable[BatchExportJob]) -> set[str]:
    """The paths of `jobs` that a pending or running job (of any tenant) writes."""
    paths = {job.target for job in _file_jobs(jobs)}
    return {path for path in paths if job_rows.active_jobs_writing(conn, path=path)}


def _names_job(manifest: Path, job: BatchExportJob) -> bool:
    try:
        return bool(orjson.loads(manifest.read_bytes()).get("job_id") == str(job.id))
    except (OSError, ValueError, AttributeError):
        return False


def job_files(job: BatchExportJob) -> list[Path]:
    """The files a completed file export left that are still its own: the file and its
    manifest, when that manifest names the job."""
    if job.target_kind is not ExportTarget.FILE or job.status is not JobStatus.COMPLETED:
        return []
    final = Path(job.target)
    manifest = manifest_path(final)
    if not _names_job(manifest, job):
        return []
    return [path for path in (final, manifest) if path.exists()]


def remove_job_files(jobs: Iterable[BatchExportJob], *, busy: set[str]) -> int:
    """Remove what these jobs (their rows already deleted) wrote; how many files were.

    A completed export's file and manifest go when the manifest names the job; an
    unfinished one's partial files go unless a job in `busy` writes that path (or a
    process holds them).
    """
    removed = 0
    for job in _file_jobs(jobs):
        if job.status is JobStatus.COMPLETED:
            for path in job_files(job):  # the file first, the manifest last
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        elif job.target not in busy:
            discard_partials(Path(job.target))
    return removed


def expire_export_jobs(engine: Engine, *, retention: timedelta, now: datetime) -> Expired:
    """Delete the jobs that finished before `now - retention`, then their files."""
    if retention <= timedelta(0):
        raise ValueError("retention: must be positive")
    cutoff = now - retention
    jobs = files = 0
    while True:
        with writing(engine) as conn:
            expired = job_rows.expired_jobs(conn, finished_before=cutoff, limit=_PASS)
            deleted = job_rows.delete_expired_jobs(
                conn, job_ids=[job.id for job in expired], finished_before=cutoff
            )
            mine = [job for job in expired if job.id in deleted]  # not another worker's
            busy = busy_paths(conn, mine)
        jobs += len(mine)
        files += remove_job_files(mine, busy=busy)  # after the commit: see the docstring
        if len(expired) < _PASS:
            break
    if jobs:
        log.info("expired %d export job(s) and %d file(s) finished before %s", jobs, files, cutoff)
    return Expired(jobs=jobs, files=files)
