"""Batch export benchmark: `xavyo-siem export --format csv` against `psql \\copy`, same events.

    .venv/bin/python benchmarks/bench_export.py [--events 1000000] [--other-events 100000]
        [--repeat 2] [--pg-admin-url URL]

Loads `--events` sample events of one tenant (plus `--other-events` of another tenant, so
the export reads a tenant's range out of a shared table) into a fresh PostgreSQL database
and a SQLite file. Then, on each backend, exports the tenant's whole range to CSV with the
real command (`python -m xavyo_siem export ... -o FILE`, a child process: its wall time and
peak RSS include start-up, the count, the manifest and the SHA-256). On PostgreSQL the same
rows and columns go through `psql -c "\\copy (SELECT ...) TO FILE CSV HEADER"`, and on
SQLite through `sqlite3 -csv`, for reference. Each measurement is the best of `--repeat`
runs after one warm-up read. Peak RSS is the child's own (`wait4`). The benchmark database
is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# The export's CSV columns, as stored (the timestamp as epoch microseconds).
COLUMNS = (
    "event_id, tenant_id, ts_us, event_type, category, severity, outcome, source_ip, "
    "event_name, action, actor_id, actor_email, user_agent, target_user, target_resource, "
    "reason, session_id, request_id, metadata"
)


@dataclass(frozen=True, slots=True)
class Run:
    """One measured command: its wall time, the child's peak RSS, and for an export the
    job's own time (from its started and finished times: without interpreter start-up)."""

    seconds: float
    peak_mb: float
    job_seconds: float | None = None


# Runs one command and reports its own peak RSS. A small process of its own, because a child
# forked from a big parent starts its high-water mark at the parent's size.
_MEASURE = """
import os, sys, time
began = time.perf_counter()
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - began, usage.ru_maxrss)
"""


def measure(command: list[str], *, env: dict[str, str] | None = None) -> Run:
    """Run `command` as a child; its wall time and its own peak RSS (from wait4)."""
    helper = subprocess.run(
        [sys.executable, "-S", "-c", _MEASURE, *command],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    try:
        code, seconds, peak_kb = helper.stdout.split()[-3:]
    except ValueError:
        raise SystemExit(f"{command[:4]} failed: {helper.stderr.decode()[-2000:]}") from None
    if int(code) != 0:
        raise SystemExit(f"{command[:4]} failed ({int(code)}): {helper.stderr.decode()[-2000:]}")
    job_seconds = None
    for line in helper.stdout.splitlines():
        if line.startswith(b"{"):  # `export --json`: the finished job
            job = orjson.loads(line)
            began, ended = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
            job_seconds = (ended - began).total_seconds()
    return Run(float(seconds), int(peak_kb) / 1024, job_seconds)


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda run: run.seconds)


def load(url: str, events: int, other: int) -> str:
    """Store the sample events; the exported tenant's id."""
    from sqlalchemy import text

    from xavyo_siem.sample import generate_events
    from xavyo_siem.store import append_events, make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    mine = generate_events(events, 1, seed=1)
    first = next(mine)
    with engine.begin() as conn:
        append_events(conn, [first])
        append_events(conn, mine)
        append_events(conn, generate_events(other, 1, seed=2))
    if engine.dialect.name == "postgresql":  # what autovacuum does after a bulk load
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE audit_events"))
    engine.dispose()
    return str(first.tenant_id)


def export_command(
    url: str, tenant: str, out: Path, chunk: int
) -> tuple[list[str], dict[str, str]]:
    from xavyo_siem.sample import DEFAULT_START

    end = DEFAULT_START + timedelta(days=3650)
    command = [sys.executable, "-m", "xavyo_siem", "export", "--tenant", tenant,
               "--from", DEFAULT_START.isoformat(), "--to", end.isoformat(), "--format", "csv",
               "-o", str(out), "--force", "--chunk-events", str(chunk), "--json"]  # fmt: skip
    return command, {**os.environ, "XAVYO_SIEM_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src")}


def where(tenant: str) -> str:
    from xavyo_siem.model import to_epoch_us
    from xavyo_siem.sample import DEFAULT_START

    start = to_epoch_us(DEFAULT_START)
    end = to_epoch_us(DEFAULT_START + timedelta(days=3650))
    return f"tenant_id = '{tenant}' AND ts_us >= {start} AND ts_us < {end} ORDER BY ts_us, seq"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--other-events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-events", type=int, default=10_000)
    parser.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"xavyo_siem_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    pg = make_url(args.pg_admin_url).set(database=name)
    pg_url = pg.render_as_string(hide_password=False)
    psql_dsn = (
        f"host={pg.host or '127.0.0.1'} port={pg.port or 5432} user={pg.username} dbname={name}"
    )
    rows: list[tuple[str, str, int, Run]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            sqlite_url = f"sqlite:///{work}/bench.db"
            for backend, url in (("PostgreSQL", pg_url), ("SQLite", sqlite_url)):
                print(f"loading {args.events:,} + {args.other_events:,} events into {backend}…",
                      file=sys.stderr, flush=True)  # fmt: skip
                began = time.perf_counter()
                tenant = load(url, args.events, args.other_events)
                print(f"  loaded in {time.perf_counter() - began:.0f} s", file=sys.stderr)
                out = work / "export.csv"
                command, env = export_command(url, tenant, out, args.chunk_events)
                select = f"SELECT {COLUMNS} FROM audit_events WHERE {where(tenant)}"
                if backend == "PostgreSQL":
                    reference = [
                        "psql",
                        psql_dsn,
                        "-c",
                        f"\\copy ({select}) TO '{work}/copy.csv' CSV HEADER",
                    ]
                    tool = "psql \\copy"
                else:
                    reference = ["sqlite3", "-csv", "-header", f"{work}/bench.db",
                                 f".output {work}/copy.csv", select]  # fmt: skip
                    tool = "sqlite3 -csv"
                measure(reference)  # warm-up: the table in the page cache for both
                exports, copies = [], []
                for _ in range(args.repeat):
                    exports.append(measure(command, env=env))
                    copies.append(measure(reference))
                manifest = orjson.loads((work / "export.csv.manifest.json").read_bytes())
                assert manifest["events"] == args.events, manifest
                copied = sum(1 for _ in (work / "copy.csv").open("rb")) - 1
                assert copied == args.events, copied
                rows.append((backend, "xavyo-siem export --format csv", args.events, best(exports)))
                rows.append((backend, tool, args.events, best(copies)))
                for leftover in work.glob("export.csv*"):
                    leftover.unlink()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    print(f"\n{args.events:,} events of one tenant (+{args.other_events:,} of another) exported "
          f"to CSV; best of {args.repeat}; {describe_machine()}\n")  # fmt: skip
    print("Command: wall time of the whole command (interpreter start-up included); job: the "
          "export job's own time, from its started to its finished time.\n")  # fmt: skip
    print("| backend | command | events/s (command) | vs. reference | seconds | events/s (job) "
          "| vs. reference | peak RSS |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for index in range(0, len(rows), 2):
        (backend, export_tool, count, export), (_, copy_tool, _, copy) = rows[index : index + 2]
        for tool, run in ((export_tool, export), (copy_tool, copy)):
            ratio = copy.seconds / run.seconds
            job = "" if run.job_seconds is None else f"{count / run.job_seconds:,.0f}"
            job_ratio = "" if run.job_seconds is None else f"{copy.seconds / run.job_seconds:.2f}"
            rate = count / run.seconds
            print(f"| {backend} | `{tool}` | {rate:,.0f} | {ratio:.2f} | {run.seconds:.1f} "
                  f"| {job} | {job_ratio} | {run.peak_mb:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
