"""Offboarding on both store backends: `purge_tenant` removes every row and export file of
one tenant and nothing of another, a dry run changes nothing, a running export refuses it,
a running worker drops the purged tenant's lanes and keeps serving the others, the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import orjson
import pytest
from sqlalchemy import Engine, func, select
from test_worker_feed import tenants_events, wait_until, worker

from file_output import add_file_destination, delivered_ids
from store_roles import as_role, make_login_role, owner_connection
from xavyo_siem.access import create_api_token
from xavyo_siem.batch import (
    BatchExporter,
    ExportRequest,
    ExportSettings,
    create_export_job,
    partial_path,
)
from xavyo_siem.errors import ExportJobError
from xavyo_siem.ingest import store_events
from xavyo_siem.manifest import manifest_path
from xavyo_siem.model import AuditEvent, JobStatus
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.store import destinations as destination_rows
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store import make_engine, open_store, upgrade, writing
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.leases import acquire_leases, heartbeat
from xavyo_siem.store.purge import TENANT_ROWS
from xavyo_siem.store.quarantine import QuarantineEntry, add_quarantined
from xavyo_siem.store.retention import set_retention
from xavyo_siem.store.scope import SERVICE_ROLE
from xavyo_siem.store.tables import audit_events, metadata, retention_holds
from xavyo_siem.store.tokens import Role
from xavyo_siem.tenants import purge_tenant

A, B = UUID(int=0xA), UUID(int=0xB)
START = DEFAULT_START
END = DEFAULT_START + timedelta(days=1)


def of(tenant: UUID, count: int, seed: int) -> list[AuditEvent]:
    return [
        AuditEvent.from_dict({**e.to_dict(), "tenant_id": str(tenant)})
        for e in generate_events(count, 1, seed=seed)
    ]


async def completed_export(engine: Engine, tenant: UUID, path: Path) -> None:
    exporter = BatchExporter(engine=engine, settings=ExportSettings(chunk_events=50, poll_s=0.05))
    job = create_export_job(
        engine,
        ExportRequest(tenant_id=tenant, start=START, end=END, output=path),
        owner=exporter.owner,
    )
    assert (await exporter.run(job)).status is JobStatus.COMPLETED


async def populate(engine: Engine, tenant: UUID, tmp_path: Path, seed: int) -> Path:
    """Give `tenant` events, a destination with state, a lease and dead letters, a completed
    file export, an API token, a quarantined line, a retention policy and a retention hold;
    the export's path."""
    store_events(engine, of(tenant, 120, seed))
    add_file_destination(engine, tenant, tmp_path / f"dest-{tenant.int}.jsonl")
    (destination,) = destination_rows_of(engine, tenant)
    now = datetime.now(UTC)
    with writing(engine) as conn:
        heartbeat(conn, owner=f"w{tenant.int}", ttl=timedelta(seconds=30), now=now)
        add_dead_letters(
            conn,
            tenant_id=tenant,
            destination_id=destination,
            entries=[(e.event_id, "refused") for e in of(tenant, 3, seed + 100)],
            now=now,
        )
    with writing(engine) as conn:
        acquire_leases(conn, owner=f"w{tenant.int}", limit=100, ttl=timedelta(seconds=30), now=now)
    path = tmp_path / f"export-{tenant.int}.csv"
    await completed_export(engine, tenant, path)
    create_api_token(engine, tenant_id=tenant, role=Role.VIEWER, name="soc")
    with writing(engine) as conn:
        entry = QuarantineEntry("no event_id", "api:events.0", '{"tenant_id": "…"}', tenant)
        add_quarantined(conn, [entry], tenant_id=tenant, now=now)
        set_retention(conn, tenant_id=tenant, keep_s=86400, now=now)
        conn.execute(
            retention_holds.insert().values(
                tenant_id=str(tenant), holder="export:x", reason="export running",
                held_events=1, since_us=0, checked_us=0,
            )
        )  # fmt: skip
    return path


def destination_rows_of(engine: Engine, tenant: UUID) -> list[UUID]:
    with engine.connect() as conn:
        return [d.id for d in destination_rows.list_destinations(conn, tenant_id=tenant)]


def counts(engine: Engine, tenant: UUID) -> dict[str, int]:
    """Each kind's rows of `tenant`, seen through a connection no policy restricts."""
    with owner_connection(engine) as conn:
        return {
            kind: int(
                conn.execute(
                    select(func.count()).select_from(table).where(table.c.tenant_id == str(tenant))
                ).scalar_one()
            )
            for kind, table in TENANT_ROWS
        }


def test_every_table_with_tenant_rows_is_purged() -> None:
    """Every table with a `tenant_id` column is in the one list of what a purge removes."""
    with_tenant = {t.name for t in metadata.tables.values() if "tenant_id" in t.c}
    assert with_tenant == {table.name for _, table in TENANT_ROWS}


async def test_purge_removes_everything_of_one_tenant_and_nothing_of_another(
    engine: Engine, tmp_path: Path
) -> None:
    """A purge of tenant A removes each kind of A's rows and A's export files, reports the
    counts, and leaves every row and file of tenant B as it was."""
    a_file = await populate(engine, A, tmp_path, seed=1)
    b_file = await populate(engine, B, tmp_path, seed=2)
    b_before = counts(engine, B)
    a_before = counts(engine, A)
    # SQLite keeps events unique by themselves: its key table stays empty.
    keyless = {"event_keys"} if engine.dialect.name == "sqlite" else set()
    assert all(count for kind, count in a_before.items() if kind not in keyless)
    assert all(count for kind, count in b_before.items() if kind not in keyless)

    purge = purge_tenant(engine, tenant_id=A)

    assert purge.removed == {**a_before, "export_files": 2}
    assert counts(engine, A) == dict.fromkeys(a_before, 0)
    assert counts(engine, B) == b_before
    assert not a_file.exists()
    assert not manifest_path(a_file).exists()
    assert b_file.exists()
    assert manifest_path(b_file).exists()


async def test_a_dry_run_counts_what_would_go_and_changes_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    """A dry run reports the same counts a purge would and removes no row and no file."""
    path = await populate(engine, A, tmp_path, seed=3)
    before = counts(engine, A)
    dry = purge_tenant(engine, tenant_id=A, dry_run=True)
    assert dry.dry_run
    assert dry.removed == {**before, "export_files": 2}
    assert counts(engine, A) == before
    assert path.exists()
    assert manifest_path(path).exists()


async def test_a_purge_is_refused_while_an_export_of_the_tenant_runs(
    engine: Engine, tmp_path: Path
) -> None:
    """An export job leased to a live process makes the purge refuse, naming the job, and
    remove nothing."""
    store_events(engine, of(A, 50, 4))
    job = create_export_job(
        engine,
        ExportRequest(tenant_id=A, start=START, end=END, output=tmp_path / "busy.csv"),
        owner="someone-alive",
    )
    before = counts(engine, A)
    with pytest.raises(ExportJobError, match=str(job.id)):
        purge_tenant(engine, tenant_id=A)
    assert counts(engine, A) == before


async def test_the_partial_file_of_an_export_whose_exporter_died_goes_too(
    engine: Engine, tmp_path: Path
) -> None:
    """A job whose exporter died (its lease expired) does not hold the purge up; its row
    and its partial files are removed."""
    store_events(engine, of(A, 50, 11))
    path = tmp_path / "died.csv"
    job = create_export_job(
        engine,
        ExportRequest(tenant_id=A, start=START, end=END, output=path),
        owner="died",
        ttl=timedelta(seconds=1),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    partial_path(path).write_bytes(b"half a file")
    purge = purge_tenant(engine, tenant_id=A)
    assert purge.removed["export_jobs"] == 1
    assert not partial_path(path).exists()
    with engine.connect() as conn:
        assert job_rows.get_job(conn, tenant_id=A, job_id=job.id) is None


async def test_a_running_worker_drops_the_purged_tenant_and_keeps_serving_the_other(
    engine: Engine, tmp_path: Path
) -> None:
    """While a worker delivers both tenants, purging A drops A's lane cleanly; B's events
    stored afterwards still arrive, once each and in order, and the worker keeps running."""
    a_path, b_path = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    add_file_destination(engine, A, a_path, batch=7)
    add_file_destination(engine, B, b_path, batch=7)
    (a_destination,) = destination_rows_of(engine, A)
    first = tenants_events([A, B], 200, seed=5)
    store_events(engine, first)
    running = worker(engine)
    task = asyncio.create_task(running.run())
    b_first = [str(e.event_id) for e in first if e.tenant_id == B]
    await wait_until(lambda: len(delivered_ids(b_path)) >= len(b_first))
    scheduler = running.scheduler
    assert scheduler is not None
    assert a_destination in scheduler.lanes

    purge_tenant(engine, tenant_id=A)
    await wait_until(lambda: a_destination not in scheduler.lanes)
    later = tenants_events([B], 100, seed=6)
    store_events(engine, later)
    await wait_until(lambda: len(delivered_ids(b_path)) >= len(b_first) + len(later))
    assert not task.done()
    running.stop()
    await task
    assert delivered_ids(b_path) == b_first + [str(e.event_id) for e in later]
    assert counts(engine, A)["leases"] == 0


async def test_the_service_role_alone_purges_its_tenant_and_no_other(
    pg_url: str, tmp_path: Path
) -> None:
    """Connected as a role with the tenant scope only (no platform rights), a purge removes
    every row of its tenant, and row-level security keeps every row of the other."""
    owner = make_engine(pg_url)
    upgrade(owner)
    await populate(owner, A, tmp_path, seed=9)
    await populate(owner, B, tmp_path, seed=10)
    b_before, a_before = counts(owner, B), counts(owner, A)
    role = make_login_role("xavyo_siem_test_api", (SERVICE_ROLE,))
    service = make_engine(as_role(pg_url, role))
    try:
        purge = purge_tenant(service, tenant_id=A)
    finally:
        service.dispose()
    assert purge.removed == {**a_before, "export_files": 2}
    assert counts(owner, A) == dict.fromkeys(a_before, 0)
    assert counts(owner, B) == b_before
    owner.dispose()


def test_the_cli_refuses_without_yes_and_purges_with_it(tmp_path: Path) -> None:
    """`tenant purge T` alone prints what would go and exits 1, removing nothing;
    `--yes --json` removes it and prints the counts as JSON."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = open_store(url)
    store_events(engine, of(A, 30, 7) + of(B, 20, 8))
    engine.dispose()
    env = {**os.environ, "XAVYO_SIEM_DATABASE_URL": url, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "xavyo_siem", "tenant", "purge", str(A), *args],
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )

    dry = cli()
    assert dry.returncode == 1
    assert b"would remove" in dry.stderr
    assert b"--yes" in dry.stderr
    assert b"events" in dry.stdout
    assert b"30" in dry.stdout
    done = cli("--yes", "--json")
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["dry_run"] is False
    assert report["removed"]["events"] == 30
    again = cli("--yes", "--json")
    assert orjson.loads(again.stdout)["removed"]["events"] == 0
    engine = make_engine(url)
    with engine.connect() as conn:
        left = conn.execute(select(audit_events.c.tenant_id).distinct()).scalars().all()
    engine.dispose()
    assert left == [str(B)]
