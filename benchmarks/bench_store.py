"""Store benchmark: ingest and read rates (events/s) and peak memory, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_store.py [--events 200000] [--repeat 3] [--pg-admin-url URL]
        [--backend sqlite|postgresql|both] [--hostile]

Ingest is what `xavyo-siem ingest FILE` does (parse the JSON lines, validate every event,
store it idempotently); read is `read_events_after` paging through every tenant into
`AuditEvent` objects. Each measurement runs in a fresh process so its peak RSS is its own;
ingest also runs on a quarter of the input to show that memory does not grow with its size.
With `--repeat N` every measurement runs N times (each ingest into a fresh database) and the
best rate is kept: on a shared virtual machine the slow runs measure the neighbours.
With `--hostile` every event of the input carries values ingest must normalise (a NUL in the
e-mail, an empty or non-address source IP, a number and an empty key in the metadata, a
leap second, an escaped lone surrogate, a key that is no field), one or several each.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from machine import describe_machine

# What `--hostile` puts into events, in turn: each a change ingest must normalise.
_HOSTILE: list[dict[str, object]] = [
    {"actor_email": "zoe\u0000@example.com", "source_ip": ""},
    {"source_ip": "gateway.internal", "metadata": {"": "x", "attempt": 3}},
    {"timestamp": "2016-12-31T23:59:60Z", "shoe_size": 44},
    {"user_agent": "\ud800agent", "reason": ""},
]


def hostile_line(data: dict[str, object], index: int) -> bytes:
    """The JSON line of `data` with the `index`-th hostile change (a lone surrogate is
    written as its JSON escape, as a producer would send it)."""
    line = json.dumps({**data, **_HOSTILE[index % len(_HOSTILE)]}, ensure_ascii=False)
    return line.encode("utf-8", "backslashreplace") + b"\n"  # a surrogate: its \\u escape


def worker(kind: str, url: str, path: str, tenants: int, seed: int) -> None:
    """One measurement in this process; prints a JSON line with rate and peak RSS."""
    from xavyo_siem.cli import tune_gc
    from xavyo_siem.ingest import events_of_lines
    from xavyo_siem.sample import tenant_ids
    from xavyo_siem.store import START, append_events, open_store, read_events_after

    tune_gc()  # as every xavyo-siem command does
    engine = open_store(url)
    began = time.perf_counter()
    if kind == "ingest":
        with open(path, "rb", buffering=1 << 20) as stream, engine.begin() as conn:
            result = append_events(conn, events_of_lines(stream))
        count = result.stored + result.duplicates
    else:
        count = 0
        for tenant in tenant_ids(tenants, seed):
            cursor = START
            while True:
                with engine.connect() as conn:
                    page = read_events_after(conn, tenant_id=tenant, after=cursor, limit=5000)
                if not page.events:
                    break
                count += len(page.events)
                cursor = page.cursor
    seconds = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "seconds": seconds, "peak_mb": peak_mb}))


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """The fastest run's rate, with the highest peak RSS of all runs."""
    fastest = max(runs, key=lambda run: run["count"] / run["seconds"])
    return {**fastest, "peak_mb": max(run["peak_mb"] for run in runs)}


def run_worker(kind: str, url: str, path: Path, tenants: int, seed: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--url", url, "--file", str(path),
         "--tenants", str(tenants), "--seed", str(seed)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fresh_postgres(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"xavyo_siem_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; best kept")
    parser.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--hostile", action="store_true", help="events ingest must normalise")
    parser.add_argument("--worker", choices=["ingest", "read"])
    parser.add_argument("--url")
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.url, args.file, args.tenants, args.seed)
        return

    from sqlalchemy import text

    from xavyo_siem.sample import generate_events
    from xavyo_siem.store import make_engine, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "events.jsonl"
        quarter = Path(tmp) / "quarter.jsonl"
        with full.open("wb") as out, quarter.open("wb") as small:
            for index, event in enumerate(generate_events(args.events, args.tenants, args.seed)):
                if args.hostile:
                    line = hostile_line(event.to_dict(), index)
                else:
                    line = orjson.dumps(event.to_dict()) + b"\n"
                out.write(line)
                if index < args.events // 4:
                    small.write(line)
        rows = []
        backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
        for backend in backends:
            runs: dict[str, list[dict[str, float]]] = {
                "ingest": [], "quarter": [], "again": [], "read": []
            }  # fmt: skip
            for attempt in range(args.repeat):
                dbs = []
                for label in ("full", "quarter"):
                    if backend == "sqlite":
                        url, name = f"sqlite:///{tmp}/{label}-{attempt}.db", None
                    else:
                        name, url = fresh_postgres(args.pg_admin_url)
                    engine = make_engine(url)
                    upgrade(engine)
                    engine.dispose()
                    dbs.append((label, url, name))
                try:
                    full_url, quarter_url = dbs[0][1], dbs[1][1]
                    runs["quarter"].append(
                        run_worker("ingest", quarter_url, quarter, args.tenants, args.seed)
                    )
                    runs["ingest"].append(
                        run_worker("ingest", full_url, full, args.tenants, args.seed)
                    )
                    if backend == "postgresql":
                        # What autovacuum does after a bulk load; without statistics the
                        # planner sorts instead of walking the index.
                        engine = make_engine(full_url)
                        with engine.connect().execution_options(
                            isolation_level="AUTOCOMMIT"
                        ) as conn:
                            conn.execute(text("VACUUM ANALYZE audit_events"))
                        engine.dispose()
                    runs["read"].append(run_worker("read", full_url, full, args.tenants, args.seed))
                    runs["again"].append(
                        run_worker("ingest", full_url, full, args.tenants, args.seed)
                    )
                finally:
                    for _, url, name in dbs:
                        if name:
                            drop_postgres(args.pg_admin_url, name)
                        else:
                            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
            best = {kind: best_of(measured) for kind, measured in runs.items()}
            rows.append((backend, best["ingest"], best["quarter"], best["again"], best["read"]))

    print(
        f"\n{args.events:,} sample events{' (hostile)' if args.hostile else ''}, "
        f"{args.tenants} tenants, best of {args.repeat}; "
        f"{describe_machine()}\n"
    )
    print(
        "| backend | ingest events/s | ingest peak RSS (¼ input → full) "
        "| re-ingest (all duplicates) events/s | read events/s | read peak RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for backend, ingest, quarter_ingest, again, read in rows:
        print(
            f"| {backend} | {ingest['count'] / ingest['seconds']:,.0f} "
            f"| {quarter_ingest['peak_mb']:.0f} MB → {ingest['peak_mb']:.0f} MB "
            f"| {again['count'] / again['seconds']:,.0f} "
            f"| {read['count'] / read['seconds']:,.0f} | {read['peak_mb']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
