"""Export jobs expire on both store backends: finished jobs older than the retention go
with their files, queued and running ones never do, a file re-exported by a later job
stays, the worker applies the retention by itself, and `jobs expire` applies it now."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import orjson
from sqlalchemy import Engine, update
from test_tenant_purge import of
from test_worker_feed import wait_until, worker

from store_roles import owner_connection
from xavyo_siem.batch import (
    BatchExporter,
    ExportRequest,
    ExportSettings,
    cancel_export_job,
    create_export_job,
    expire_export_jobs,
)
from xavyo_siem.ingest import store_events
from xavyo_siem.manifest import manifest_path
from xavyo_siem.model import JobStatus
from xavyo_siem.sample import DEFAULT_START
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store import open_store
from xavyo_siem.store.tables import export_jobs

T, U = UUID(int=0x71), UUID(int=0x72)
START, END = DEFAULT_START, DEFAULT_START + timedelta(days=1)
WEEK = timedelta(days=7)


async def export(engine: Engine, tenant: UUID, path: Path, *, overwrite: bool = False) -> UUID:
    """Run a file export to completion here; its job id."""
    exporter = BatchExporter(engine=engine, settings=ExportSettings(chunk_events=50, poll_s=0.05))
    request = ExportRequest(
        tenant_id=tenant, start=START, end=END, output=path, overwrite=overwrite
    )
    job = create_export_job(engine, request, owner=exporter.owner)
    assert (await exporter.run(job)).status is JobStatus.COMPLETED
    return job.id


def finished_ago(engine: Engine, job_id: UUID, age: timedelta) -> None:
    """Pretend the job finished (and was created) `age` ago."""
    then = int((datetime.now(UTC) - age).timestamp() * 1_000_000)
    with owner_connection(engine) as conn:
        conn.execute(
            update(export_jobs)
            .where(export_jobs.c.id == str(job_id))
            .values(created_us=then - 1, finished_us=then)
        )


def job_status(engine: Engine, tenant: UUID, job_id: UUID) -> JobStatus | None:
    with engine.connect() as conn:
        job = job_rows.get_job(conn, tenant_id=tenant, job_id=job_id)
    return None if job is None else job.status


async def test_finished_jobs_past_the_retention_go_with_their_files(
    engine: Engine, tmp_path: Path
) -> None:
    """Completed and cancelled jobs of any tenant that finished before now - retention are
    removed, a completed one's file and manifest too; younger ones and a queued one stay,
    however old."""
    store_events(engine, of(T, 60, 1) + of(U, 60, 2))
    old_t, old_u, young = tmp_path / "old-t.csv", tmp_path / "old-u.csv", tmp_path / "young.csv"
    old_t_job = await export(engine, T, old_t)
    old_u_job = await export(engine, U, old_u)
    young_job = await export(engine, T, young)
    queued = create_export_job(
        engine, ExportRequest(tenant_id=T, start=START, end=END, output=tmp_path / "queued.csv")
    )
    cancelled = create_export_job(
        engine, ExportRequest(tenant_id=U, start=START, end=END, output=tmp_path / "gone.csv")
    )
    cancel_export_job(engine, tenant_id=U, job_id=cancelled.id)
    for job_id in (old_t_job, old_u_job, cancelled.id):
        finished_ago(engine, job_id, WEEK + timedelta(hours=1))
    finished_ago(engine, young_job, WEEK - timedelta(hours=1))
    with owner_connection(engine) as conn:  # queued long ago: still never expires
        conn.execute(
            update(export_jobs).where(export_jobs.c.id == str(queued.id)).values(created_us=0)
        )

    expired = expire_export_jobs(engine, retention=WEEK, now=datetime.now(UTC))

    assert (expired.jobs, expired.files) == (3, 4)
    assert job_status(engine, T, old_t_job) is None
    assert job_status(engine, U, old_u_job) is None
    assert job_status(engine, U, cancelled.id) is None
    assert job_status(engine, T, young_job) is JobStatus.COMPLETED
    assert job_status(engine, T, queued.id) is JobStatus.PENDING
    for path in (old_t, old_u):
        assert not path.exists()
        assert not manifest_path(path).exists()
    assert young.exists()
    assert manifest_path(young).exists()
    again = expire_export_jobs(engine, retention=WEEK, now=datetime.now(UTC))
    assert (again.jobs, again.files) == (0, 0)


async def test_a_file_exported_again_by_a_later_job_is_kept(engine: Engine, tmp_path: Path) -> None:
    """When a later job wrote the same path, the expired job's row goes but the file and
    manifest (which name the later job) stay."""
    store_events(engine, of(T, 40, 3))
    path = tmp_path / "same.csv"
    first = await export(engine, T, path)
    later = await export(engine, T, path, overwrite=True)
    finished_ago(engine, first, WEEK * 2)
    expired = expire_export_jobs(engine, retention=WEEK, now=datetime.now(UTC))
    assert (expired.jobs, expired.files) == (1, 0)
    assert path.exists()
    assert orjson.loads(manifest_path(path).read_bytes())["job_id"] == str(later)


async def test_a_running_worker_applies_the_retention(engine: Engine, tmp_path: Path) -> None:
    """A worker removes an expired job and its file by itself, without being asked."""
    store_events(engine, of(T, 40, 4))
    path = tmp_path / "by-worker.csv"
    job_id = await export(engine, T, path)
    finished_ago(engine, job_id, timedelta(days=1))
    running = worker(engine, export_retention_s=3600.0, expiry_interval_s=0.1)
    task = asyncio.create_task(running.run())
    await wait_until(lambda: job_status(engine, T, job_id) is None and not path.exists())
    running.stop()
    await task
    assert not manifest_path(path).exists()


async def test_jobs_expire_on_the_command_line(tmp_path: Path) -> None:
    """`jobs expire --older-than 1d --json` removes the jobs that finished before and says
    how many; a malformed --older-than is refused naming the flag (exit 2)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = open_store(url)
    store_events(engine, of(T, 30, 5))
    path = tmp_path / "cli.csv"
    job_id = await export(engine, T, path)
    finished_ago(engine, job_id, timedelta(days=2))
    engine.dispose()
    env = {**os.environ, "XAVYO_SIEM_DATABASE_URL": url, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "xavyo_siem", "jobs", "expire", *args],
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )

    bad = cli("--older-than", "two days")
    assert bad.returncode == 2
    assert b"--older-than" in bad.stderr
    done = cli("--older-than", "1d", "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == {"export_jobs": 1, "export_files": 2}
    assert not path.exists()
