"""Source benchmark: events/s from the identity provider's audit table into the store.

    .venv/bin/python benchmarks/bench_source.py [--events 200000] [--repeat 3]
        [--store sqlite|postgresql|both] [--batch-rows 5000] [--pg-admin-url URL] [--peer own]

The peer is a throw-away database (on a PostgreSQL cluster of the benchmark's own, or with
`--peer shared` on the one at `--pg-admin-url`, where the stores always are) holding the table
docs/sources.md describes (the writing transaction's id and a sequence beside fifteen event
columns, a `jsonb` metadata column among them), filled with `--events` sample events in
transactions of 1,000 rows. Each run adds a source for it to a fresh store (a SQLite file,
or a PostgreSQL database) and runs the worker's `SourceTailer` until the source counted
every row: the rate is rows over the time from the tailer's start to that moment, which
includes reading the peer in `(xid, seq)` order below the horizon, mapping, normalising
(`AuditEvent.from_dict`), storing idempotently and moving the cursor in the same
transaction. Every event is then counted in the store. The best of `--repeat` runs is kept.

Beside each run, the same sample events are ingested from a JSON lines file into a fresh
store of the same kind (`xavyo-siem ingest`'s path): a reference measured under the same
load, since on a shared machine the absolute figures swing with the neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from peers.postgres_cluster import PostgresCluster  # noqa: E402

PEER_TABLE = """
CREATE SCHEMA audit;
CREATE TABLE audit.events (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id uuid NOT NULL,
    tenant uuid NOT NULL,
    created_at timestamptz NOT NULL,
    kind text NOT NULL,
    category text,
    severity smallint,
    outcome text,
    actor_id text,
    actor_email text,
    ip inet,
    user_agent text,
    target_user text,
    session_id text,
    reason text,
    details jsonb
);
CREATE INDEX ON audit.events (xact_id, seq);
"""
COLUMNS = (
    "id", "tenant", "created_at", "kind", "category", "severity", "outcome", "actor_id",
    "actor_email", "ip", "user_agent", "target_user", "session_id", "reason", "details",
)  # fmt: skip
MAPPING = [
    "event_id=id", "tenant_id=tenant", "timestamp=created_at", "event_type=kind",
    "category=category", "severity=severity", "outcome=outcome", "actor_id=actor_id",
    "actor_email=actor_email", "source_ip=ip", "user_agent=user_agent",
    "target_user=target_user", "session_id=session_id", "reason=reason", "metadata=details",
]  # fmt: skip


def _dsn(admin_url: str, database: str) -> str:
    url = make_url(admin_url)
    return f"postgresql://{url.username}@{url.host}:{url.port or 5432}/{database}"


def _create_database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_dsn(admin_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(_dsn(admin_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill_peer(dsn: str, events: int, tenants: int) -> None:
    """The identity provider's table with `events` sample events, 1,000 per transaction."""
    import orjson

    from xavyo_siem.sample import generate_events

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PEER_TABLE)
        chunk: list[tuple[object, ...]] = []

        def flush() -> None:
            with conn.transaction(), conn.cursor() as cursor:
                copy_sql = f"COPY audit.events ({', '.join(COLUMNS)}) FROM STDIN"
                with cursor.copy(copy_sql) as copy:
                    for row in chunk:
                        copy.write_row(row)
            chunk.clear()

        for event in generate_events(events, tenants):
            chunk.append((
                event.event_id, event.tenant_id, event.timestamp, event.event_type,
                event.category.value, event.severity,
                None if event.outcome is None else event.outcome.value, event.actor_id,
                event.actor_email, event.source_ip, event.user_agent, event.target_user,
                event.session_id, event.reason,
                orjson.dumps(dict(event.metadata)).decode() if event.metadata else None,
            ))  # fmt: skip
            if len(chunk) == 1000:
                flush()
        if chunk:
            flush()
        conn.execute("ANALYZE audit.events")


def one_run(store_url: str, peer_dsn: str, events: int, batch_rows: int) -> float:
    """Tail the peer into a fresh store at `store_url`; events/s."""
    from xavyo_siem.cli import tune_gc
    from xavyo_siem.crypto import KeyRing, new_key_text
    from xavyo_siem.egress import EgressGuard
    from xavyo_siem.sources.manage import SourceSpec, add_source, find_source
    from xavyo_siem.sources.tail import SourceTailer, TailSettings
    from xavyo_siem.store import open_store

    tune_gc()
    engine = open_store(store_url)
    keyring = KeyRing.parse(new_key_text())
    egress = EgressGuard(allow=("127.0.0.0/8", "::1/128"))
    spec = SourceSpec(name="idp", source_type="postgres_table", table="audit.events",
                      mapping=MAPPING, options={"batch_rows": str(batch_rows)})  # fmt: skip
    add_source(engine, spec=spec, dsn=peer_dsn, keyring=keyring, egress=egress)
    tailer = SourceTailer(engine, keyring=keyring, egress=egress,
                          settings=TailSettings(poll_interval_s=0.05))  # fmt: skip
    thread = threading.Thread(target=lambda: asyncio.run(tailer.run()))
    began = time.perf_counter()
    thread.start()
    while find_source(engine, name_or_id="idp").state.events_read < events:
        time.sleep(0.1)  # a coarse look: the poll must not slow the tailer down
    seconds = time.perf_counter() - began
    tailer.stop()
    thread.join()
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
    if stored != events:
        raise SystemExit(f"stored {stored} events of {events}")
    engine.dispose()
    return events / seconds


@contextlib.contextmanager
def fresh_store(store: str, admin_url: str) -> Iterator[tuple[str, Path]]:
    """A fresh, migrated store of kind `store` (a SQLite file, or a PostgreSQL database
    dropped afterwards) and a scratch directory."""
    from xavyo_siem.store import upgrade

    with TemporaryDirectory() as scratch:
        directory = Path(scratch)
        if store == "sqlite":
            yield f"sqlite:///{directory}/store.db", directory
            return
        name = _create_database(admin_url, "xavyo_siem_bench_store")
        url = make_url(admin_url).set(database=name)
        try:
            owner = create_engine(url)
            upgrade(owner)
            owner.dispose()
            yield url.render_as_string(hide_password=False), directory
        finally:
            _drop_database(admin_url, name)


def file_ingest(store_url: str, events: int, tenants: int, directory: Path) -> float:
    """The same-load reference: the same sample events ingested from a JSON lines file into
    a fresh store at `store_url` (`xavyo-siem ingest`'s path); events/s."""
    import orjson

    from xavyo_siem.cli import tune_gc
    from xavyo_siem.ingest import events_of_lines, store_events
    from xavyo_siem.sample import generate_events
    from xavyo_siem.store import open_store

    tune_gc()
    path = directory / "events.jsonl"
    with path.open("wb") as out:
        for event in generate_events(events, tenants):
            out.write(orjson.dumps(event.to_dict()) + b"\n")
    engine = open_store(store_url)
    began = time.perf_counter()
    with path.open("rb", buffering=1 << 20) as lines:
        result = store_events(engine, events_of_lines(lines), set_aside=[], source="bench")
    seconds = time.perf_counter() - began
    engine.dispose()
    if result.stored != events:
        raise SystemExit(f"file ingest stored {result.stored} of {events}")
    return events / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument(
        "--peer",
        choices=["own", "shared"],
        default="own",
        help="the identity provider's PostgreSQL: a cluster of the benchmark's own (default),"
        " or the one at --pg-admin-url (where other work's open transactions hold the"
        " horizon back)",
    )
    args = parser.parse_args()
    print(describe_machine())
    with contextlib.ExitStack() as stack:
        peer_admin = args.pg_admin_url
        if args.peer == "own":
            cluster = stack.enter_context(PostgresCluster())
            peer_admin = f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres"
        peer = _create_database(peer_admin, "xavyo_siem_bench_idp")
        stack.callback(_drop_database, peer_admin, peer)
        measure(args, _dsn(peer_admin, peer))


def measure(args: argparse.Namespace, peer_dsn: str) -> None:
    """Fill the peer, then run and print each store's figures."""
    began = time.perf_counter()
    fill_peer(peer_dsn, args.events, args.tenants)
    print(f"peer filled with {args.events} rows in {time.perf_counter() - began:.1f} s")
    stores = ("sqlite", "postgresql") if args.store == "both" else (args.store,)
    for store in stores:
        rates, references = [], []
        for _ in range(args.repeat):
            for kind in ("source", "file"):
                with fresh_store(store, args.pg_admin_url) as (url, directory):
                    if kind == "source":
                        rates.append(one_run(url, peer_dsn, args.events, args.batch_rows))
                    else:
                        references.append(file_ingest(url, args.events, args.tenants, directory))
        figures = {
            "store": store,
            "events": args.events,
            "batch_rows": args.batch_rows,
            "source_events_per_s": [round(rate) for rate in rates],
            "best": round(max(rates)),
            "file_ingest_events_per_s": [round(rate) for rate in references],
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
