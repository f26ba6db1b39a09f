"""Offboarding and export expiry on PostgreSQL: what a purge and an hourly expiry cost.

    .venv/bin/python benchmarks/bench_offboarding.py [--jobs 100000] [--events 200000]
        [--pg-admin-url URL]

In a fresh database: `--jobs` export job rows of 50 tenants, a fifth in each status,
created over the last 100 hours; then `expire_export_jobs` with nothing to remove (the
worker's hourly pass: the plan is printed, one range of `ix_export_jobs_status`) and with
a retention that removes a sixth of them. Then two tenants of `--events` events each, and
`purge_tenant` of one: a dry run and the purge. Times are wall clock, one run each, as the
tables' owner. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from xavyo_siem.batch import expire_export_jobs  # noqa: E402
from xavyo_siem.ingest import store_events  # noqa: E402
from xavyo_siem.model import AuditEvent  # noqa: E402
from xavyo_siem.sample import generate_events  # noqa: E402
from xavyo_siem.store import jobs as job_rows  # noqa: E402
from xavyo_siem.store import make_engine, upgrade  # noqa: E402
from xavyo_siem.store.tables import export_jobs  # noqa: E402
from xavyo_siem.tenants import purge_tenant  # noqa: E402

STATUSES = ("completed", "failed", "cancelled", "pending", "running")
DATABASE = "xavyo_siem_bench_offboarding"


def job_rows_of(count: int, now_us: int) -> list[dict[str, object]]:
    rows = []
    for i in range(count):
        status = STATUSES[i % len(STATUSES)]
        created = now_us - (i % 1000) * 360_000_000  # 0 to 100 hours ago
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "tenant_id": str(uuid.UUID(int=i % 50)),
                "target_kind": "destination",
                "target": str(uuid.uuid4()),
                "format": "csv",
                "options": "{}",
                "start_us": 0,
                "end_us": 1,
                "filters": "{}",
                "status": status,
                "exported": 0,
                "created_us": created,
                "finished_us": None if status in ("pending", "running") else created + 1000,
            }
        )
    return rows


def timed(label: str, work: object) -> object:
    started = time.perf_counter()
    result = work()  # type: ignore[operator]
    print(f"{label}: {(time.perf_counter() - started) * 1000:,.1f} ms  {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    print(describe_machine())
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))
        conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    url = args.pg_admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        now = datetime.now(UTC)
        now_us = int(now.timestamp() * 1_000_000)
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL xavyo_siem.platform = 'on'"))
            conn.execute(insert(export_jobs), job_rows_of(args.jobs, now_us))
            conn.execute(text("ANALYZE export_jobs"))
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL xavyo_siem.platform = 'on'"))
            cutoff = now_us - 7 * 86_400_000_000
            query = (
                select(export_jobs)
                .where(job_rows._expired(cutoff))
                .order_by(export_jobs.c.created_us, export_jobs.c.id)
                .limit(1000)
            )
            sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
            for line in conn.execute(text("EXPLAIN ANALYZE " + sql)).scalars():
                print("  ", line)
        timed(
            f"expire, {args.jobs:,} jobs, nothing expired",
            lambda: expire_export_jobs(engine, retention=timedelta(days=7), now=now),
        )
        timed(
            f"expire, {args.jobs:,} jobs, retention 3 d",
            lambda: expire_export_jobs(engine, retention=timedelta(days=3), now=now),
        )
        tenant, other = uuid.UUID(int=0xA0), uuid.UUID(int=0xB0)
        for owner in (tenant, other):
            for start in range(0, args.events, 50_000):
                batch = generate_events(min(50_000, args.events - start), 1, seed=start)
                store_events(
                    engine,
                    [
                        AuditEvent.from_dict(
                            {**e.to_dict(), "event_id": str(uuid.uuid4()), "tenant_id": str(owner)}
                        )
                        for e in batch
                    ],
                )
        timed(
            f"purge dry run, {args.events:,} events",
            lambda: purge_tenant(engine, tenant_id=tenant, dry_run=True).removed["events"],
        )
        timed(
            f"purge, {args.events:,} events",
            lambda: purge_tenant(engine, tenant_id=tenant).removed["events"],
        )
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))


if __name__ == "__main__":
    main()
