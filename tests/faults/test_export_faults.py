"""Batch exports under faults: killed and stopped exporters resume to the same file, a full
disk fails cleanly, and exports to a real rsyslog and to the HEC test server survive
receiver restarts and errors without moving the destination's streaming cursor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Engine

from xavyo_siem import destinations as manage
from xavyo_siem.batch import (
    BatchExporter,
    ExportRequest,
    ExportSettings,
    cancel_export_job,
    create_export_job,
    partial_path,
)
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.manifest import PER_RUN_FIELDS, manifest_path, verify_export
from xavyo_siem.model import (
    AuditEvent,
    BatchExportJob,
    DeliveryType,
    ExportFormat,
    JobStatus,
    RateLimit,
    SiemDestination,
)
from xavyo_siem.pipeline import DestinationComponents, PipelineSettings, RetryPolicy
from xavyo_siem.runtime import Worker, WorkerSettings, open_destination
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events, make_engine, upgrade
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store.state import read_health, read_state

from peers.hec_server import HecFaults, HecServer
from peers.rsyslog import start_rsyslog

KEY = new_key_text()
KEYS = KeyRing.parse(KEY)
DEV = Settings(env="development", egress_allow=("127.0.0.0/8",))
FAST = PipelineSettings(
    poll_interval_s=0.02, retry=RetryPolicy(base_s=0.01, cap_s=0.1, misconfigured_cap_s=0.2)
)
START = DEFAULT_START
END = DEFAULT_START + timedelta(days=1)


def stored(engine: Engine, count: int, seed: int, tenants: int = 1) -> list[AuditEvent]:
    events = list(generate_events(count, tenants, seed=seed))
    with engine.begin() as conn:
        append_events(conn, events)
    return events


def cli(*args: str, db: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "XAVYO_SIEM_DATABASE_URL": db, "XAVYO_SIEM_SECRET_KEY": KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "xavyo_siem", *args],
        env=env, stdout=subprocess.PIPE, stderr=log.open("ab"),
    )  # fmt: skip


def signal_mid_way(
    engine: Engine, tenant: UUID, exporter: subprocess.Popen[bytes], signum: int
) -> None:
    """Send `signum` to an exporter that is provably mid-way: it is frozen (SIGSTOP, every
    thread) while the test reads its job, so it cannot finish between the look and the signal.
    No race with how fast the export runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        exporter.send_signal(signal.SIGSTOP)
        while not all_stopped(exporter.pid):
            time.sleep(0.001)
        job = the_job(engine, tenant)
        if job is not None and job.exported > 0:
            assert job.status is JobStatus.RUNNING
            exporter.send_signal(signum)
            exporter.send_signal(signal.SIGCONT)
            return
        exporter.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("timed out waiting for the export's first checkpoint")


def all_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped (state T in /proc)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


def the_job(engine: Engine, tenant: UUID) -> BatchExportJob | None:
    with engine.connect() as conn:
        found = job_rows.list_jobs(conn, tenant_id=tenant)
    return found[0] if found else None


def reference_export(engine: Engine, tenant: UUID, path: Path) -> None:
    """The same range exported in one uninterrupted run, with other page sizes."""
    exporter = BatchExporter(engine=engine, settings=ExportSettings(chunk_events=1500))
    job = create_export_job(
        engine,
        ExportRequest(tenant_id=tenant, start=START, end=END, output=path),
        owner=exporter.owner,
    )
    assert asyncio.run(exporter.run(job)).status is JobStatus.COMPLETED


def assert_same_export(path: Path, reference: Path) -> None:
    """Identical data files; manifests equal but for the per-run fields (id, name, times)."""
    assert path.read_bytes() == reference.read_bytes()
    mine, theirs = (orjson.loads(manifest_path(p).read_bytes()) for p in (path, reference))
    for manifest in (mine, theirs):
        for key in PER_RUN_FIELDS:
            manifest.pop(key)
    assert mine == theirs
    assert verify_export(path).ok


def started_export(db: str, tenant: UUID, path: Path, log: Path) -> subprocess.Popen[bytes]:
    return cli(
        "export", "--tenant", str(tenant), "--from", START.isoformat(), "--to", END.isoformat(),
        "-o", str(path), "--chunk-events", "200", "--lease-ttl", "1", db=db, log=log,
    )  # fmt: skip


def test_killed_mid_export_resumes_to_the_same_file_and_manifest(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """`kill -9` in the middle of an export, then `export --resume`: the resumed run continues
    from its checkpoint and its file and manifest equal an uninterrupted export's."""
    events = stored(engine, 40_000, seed=60, tenants=2)
    tenant = events[0].tenant_id
    path, log = tmp_path / "killed.csv", tmp_path / "export.log"
    exporter = started_export(store_url, tenant, path, log)
    try:
        signal_mid_way(engine, tenant, exporter, signal.SIGKILL)
        exporter.wait(10)
    finally:
        exporter.kill()
    killed = the_job(engine, tenant)
    assert killed is not None
    assert killed.status is JobStatus.RUNNING
    # Mid-way against the true count: the job's own estimate may not be stored yet.
    assert 0 < killed.exported < sum(1 for e in events if e.tenant_id == tenant)
    assert path.with_name("killed.csv.partial").stat().st_size > 0
    assert not path.exists()
    while True:  # the dead exporter's lease (1 s) must expire first
        resumed = cli("export", "--resume", str(killed.id), db=store_url, log=log)
        if resumed.wait(60) == 0:
            break
        assert b"lease until" in log.read_bytes()
        time.sleep(0.3)
    assert f"resuming job {killed.id} after {killed.exported:,} events" in log.read_text()
    done = the_job(engine, tenant)
    assert done is not None
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2)
    reference = tmp_path / "reference.csv"
    reference_export(engine, tenant, reference)
    assert_same_export(path, reference)


def test_stopped_export_is_given_back_and_finished_by_a_worker(tmp_path: Path) -> None:
    """SIGTERM stops an export at a checkpoint and gives the job back at once; `run --drain`
    picks it up, continues it, and the file equals an uninterrupted export's."""
    db = f"sqlite:///{tmp_path}/store.db"
    engine = make_engine(db)
    upgrade(engine)
    events = stored(engine, 30_000, seed=61)
    tenant = events[0].tenant_id
    path, log = tmp_path / "stopped.csv", tmp_path / "export.log"
    exporter = started_export(db, tenant, path, log)
    try:
        signal_mid_way(engine, tenant, exporter, signal.SIGTERM)
        assert exporter.wait(30) == 1
    finally:
        exporter.kill()
    assert "export --resume" in log.read_text()
    stopped = the_job(engine, tenant)
    assert stopped is not None
    assert stopped.status is JobStatus.RUNNING
    assert stopped.owner is None
    worker = cli("run", "--drain", "--poll-interval", "0.05", db=db, log=log)
    assert worker.wait(120) == 0, log.read_text()[-3000:]
    done = the_job(engine, tenant)
    assert done is not None
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2)
    reference = tmp_path / "reference.csv"
    reference_export(engine, tenant, reference)
    assert_same_export(path, reference)
    engine.dispose()


def _small_files() -> None:  # runs in the child: files may grow to 256 KiB, then EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))


def test_a_full_disk_fails_the_job_and_leaves_no_partial_file(pg_url: str, tmp_path: Path) -> None:
    """When the file cannot grow (EFBIG, as on a full disk) the job fails with the reason, the
    command exits 1, and neither the partial file nor a manifest is left behind."""
    engine = make_engine(pg_url)
    upgrade(engine)
    events = stored(engine, 5000, seed=62)
    tenant = events[0].tenant_id
    path = tmp_path / "full.csv"
    env = {**os.environ, "XAVYO_SIEM_DATABASE_URL": pg_url}
    result = subprocess.run(
        [sys.executable, "-m", "xavyo_siem", "export", "--tenant", str(tenant), "--from",
         START.isoformat(), "--to", END.isoformat(), "-o", str(path), "--chunk-events", "500"],
        env=env, capture_output=True, timeout=120, check=False, preexec_fn=_small_files,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert b"File too large" in result.stderr
    job = the_job(engine, tenant)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert "File too large" in (job.error or "")
    assert list(tmp_path.iterdir()) == []
    engine.dispose()


# -- destinations ----------------------------------------------------------------------------


def add(engine: Engine, tenant: UUID, *, secret: str | None = None, **spec: Any) -> SiemDestination:
    base = DestinationSpec(
        name=f"dest-{time.monotonic_ns()}",
        delivery_type=DeliveryType.SPLUNK_HEC,
        format=ExportFormat.JSON,
        endpoint="http://127.0.0.1:9",
        options={"start": "now"},
    )
    return manage.add_destination(
        engine, tenant_id=tenant, spec=replace(base, **spec), secret=secret, keyring=KEYS,
        development=True, egress=EgressGuard.from_settings(DEV),
    )  # fmt: skip


def exporter_for(engine: Engine) -> BatchExporter:
    async def components(destination: SiemDestination) -> DestinationComponents:
        return await open_destination(engine, destination, settings=DEV, keyring=KEYS)

    return BatchExporter(
        engine=engine,
        settings=ExportSettings(lease_ttl_s=5, poll_s=0.05, pipeline=FAST),
        open_components=components,
    )


async def export_to(engine: Engine, destination: SiemDestination) -> BatchExportJob:
    exporter = exporter_for(engine)
    job = create_export_job(
        engine,
        ExportRequest(
            tenant_id=destination.tenant_id, start=START, end=END, destination=destination.name
        ),
        owner=exporter.owner,
    )
    return await asyncio.wait_for(exporter.run(job), 120)


def streaming_state(engine: Engine, destination: SiemDestination) -> tuple[Any, ...]:
    with engine.connect() as conn:
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert state is not None
    assert health is not None
    return state.cursor, health.successes, health.failures, health.dead_letters


async def test_export_to_hec_with_faults_delivers_every_event_and_leaves_the_cursor(
    engine: Engine,
) -> None:
    """With 503s, a 500, a dropped connection and delayed acks, every event of the range
    reaches HEC (acknowledged); the destination's streaming cursor and health do not move."""
    events = stored(engine, 3000, seed=63, tenants=2)
    tenant = events[0].tenant_id
    mine = [str(e.event_id) for e in events if e.tenant_id == tenant]
    faults = HecFaults(busy=3, retry_after="0", internal_error=1, drop=1, ack_after_polls=1)
    async with HecServer(ack=True, faults=faults) as server:
        destination = add(
            engine, tenant, endpoint=server.url, secret=server.token,
            options={"start": "now", "ack": "true", "ack_poll_interval_s": "0.05",
                     "batch_max_events": "250"},
            rate_limit=RateLimit(20_000, 250),
        )  # fmt: skip
        before = streaming_state(engine, destination)
        job = await export_to(engine, destination)
    assert job.status is JobStatus.COMPLETED, job.error
    received = [envelope["event"]["event_id"] for envelope in server.acknowledged]
    assert set(received) == set(mine)
    assert job.exported == len(mine)
    assert sum(1 for r in server.requests if r.status >= 500) >= 4
    assert streaming_state(engine, destination) == before


async def test_export_to_rsyslog_across_a_receiver_restart_loses_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    """rsyslog stopped and started during an export: every event of the range arrives at least
    once, and the destination's streaming cursor does not move."""
    events = stored(engine, 4000, seed=64)
    async with asyncio.timeout(120):
        with start_rsyslog(tmp_path / "rsyslog", tcp=True) as peer:
            destination = add(
                engine, events[0].tenant_id, delivery_type=DeliveryType.SYSLOG_TCP,
                endpoint=f"tcp://127.0.0.1:{peer.tcp_port}",
                options={"start": "now", "batch_max_events": "100", "timeout_s": "2"},
                rate_limit=RateLimit(4000, 100),
            )  # fmt: skip
            before = streaming_state(engine, destination)
            running = asyncio.create_task(export_to(engine, destination))
            while peer.count_lines() < 800:
                await asyncio.sleep(0.02)
            peer.stop()
            await asyncio.sleep(0.5)
            peer.start()
            job = await running
            lines = peer.wait_for(len(events), timeout=30)
    assert job.status is JobStatus.COMPLETED, job.error
    received = [orjson.loads(line[line.index("{") :])["event_id"] for line in lines]
    assert set(received) == {str(e.event_id) for e in events}
    assert streaming_state(engine, destination) == before


async def test_a_misconfigured_destination_fails_the_export_with_the_reason(
    engine: Engine,
) -> None:
    """A disabled HEC token fails the export at once with HEC's reason; nothing is retried
    forever and the destination's streaming state is untouched."""
    events = stored(engine, 300, seed=65)
    async with HecServer(disabled=True) as server:
        destination = add(engine, events[0].tenant_id, endpoint=server.url, secret=server.token)
        before = streaming_state(engine, destination)
        job = await export_to(engine, destination)
    assert job.status is JobStatus.FAILED
    assert destination.name in (job.error or "")
    assert job.exported == 0
    assert streaming_state(engine, destination) == before


async def test_a_worker_runs_a_queued_export_beside_the_destinations_stream(
    engine: Engine,
) -> None:
    """A queued export to a destination is run by the worker that streams to it, through one
    shared token bucket: HEC receives the history once and the live events, and the cursor
    moves only for the live events."""
    history = stored(engine, 1500, seed=66)
    tenant = history[0].tenant_id
    async with HecServer() as server:
        destination = add(
            engine, tenant, endpoint=server.url, secret=server.token,
            options={"start": "now", "batch_max_events": "100"}, rate_limit=RateLimit(50_000, 100),
        )  # fmt: skip
        live = [replace(e, tenant_id=tenant) for e in generate_events(300, 1, seed=67)]
        with engine.begin() as conn:
            append_events(conn, live)
        job = create_export_job(
            engine,
            ExportRequest(tenant_id=tenant, start=START, end=END, destination=destination.name),
        )

        async def components(target: SiemDestination) -> DestinationComponents:
            return await open_destination(engine, target, settings=DEV, keyring=KEYS)

        worker = Worker(
            engine=engine,
            open_components=components,
            settings=WorkerSettings(lease_ttl_s=5, scan_interval_s=0.05, pipeline=FAST),
        )
        handed_out: list[object] = []
        original = worker._bucket_for

        def watched(target: SiemDestination) -> Any:
            bucket = original(target)
            handed_out.append(bucket)
            return bucket

        worker._bucket_for = watched  # type: ignore[method-assign]
        worker.exporter.bucket_for = watched
        assert await asyncio.wait_for(worker.run(drain=True), 120) == []
    with engine.connect() as conn:
        done = job_rows.get_job(conn, tenant_id=tenant, job_id=job.id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    ids = [envelope["event"]["event_id"] for envelope in server.received]
    in_range = [str(e.event_id) for e in history + live if START <= e.timestamp < END]
    assert sorted(ids) == sorted(in_range + [str(e.event_id) for e in live])
    assert len(handed_out) >= 2, "the stream and the export each asked for the bucket"
    assert len({id(bucket) for bucket in handed_out}) == 1
    assert handed_out[0] is not None
    _, successes, _, _ = streaming_state(engine, destination)
    assert successes == len(live)


def test_cancelling_a_job_whose_exporter_died_cleans_up(engine: Engine, tmp_path: Path) -> None:
    """`jobs cancel` on a job whose exporter died (its lease expired) marks it cancelled at
    once and removes the partial file it left behind."""
    events = stored(engine, 300, seed=68)
    tenant = events[0].tenant_id
    path = tmp_path / "orphan.csv"
    job = create_export_job(
        engine,
        ExportRequest(tenant_id=tenant, start=START, end=END, output=path),
        owner="dead-exporter",
        ttl=timedelta(seconds=-1),
    )
    partial_path(path).write_bytes(b"half")
    cancelled = cancel_export_job(engine, tenant_id=tenant, job_id=job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert list(tmp_path.iterdir()) == []
