"""Partitioned PostgreSQL at scale: ingest rate over 10 million events, and retention.

    .venv/bin/python benchmarks/bench_partitions.py [--events 10000000] [--batch 100000]
        [--tenants 50] [--pg-admin-url URL | --shared-buffers SIZE [--setting NAME=VALUE ...]]
        [--keep] [--one-transaction]

Ingests `--events` sample events into a fresh, migrated PostgreSQL database (partitioned
`audit_events`, the key table that keeps ingest idempotent) through `append_events`, one
transaction per `--batch` events, and prints the rate of every million: the last million
should run within 15 % of the first (an index that grows with the table shows up as a
falling rate). Then retention of the partition that holds them all, step by step, as
`retention apply` does with a partition nothing holds:

* `detach_s`: detaching it (`detach_partition`, one transaction): its events are gone when
  it returns, and it is the longest `audit_events` is locked (ACCESS EXCLUSIVE);
* `drop_s`: dropping the detached table (`drop_detached`, one transaction that locks that
  table alone), which returns its disk space; meanwhile a probe inserts one event at a time
  into `audit_events` (received tomorrow, so into another partition) from another
  connection and reports how many inserts ran during the drop and their slowest
  (`probe_during_drop`) beside the slowest outside it;
* `keys_s`: removing their keys in chunks of 10,000.

`--one-transaction` instead drops the partition as retention did before, `DROP TABLE` of
the attached partition in one transaction (`one_transaction_drop_s`, with the same probe),
for comparison.

The database is made on the server at `--pg-admin-url`, or with `--shared-buffers SIZE`
(e.g. `1GB`) on a PostgreSQL cluster of the benchmark's own, started with that buffer
cache and otherwise the server's defaults, durable (fsync on): ingest touches the key
table's index (about 50 bytes per stored event) at a random place per event, so its rate
over millions of stored events depends on whether that index fits the buffer cache.
`--setting NAME=VALUE` (repeatable) sets another server setting of that cluster, e.g.
`wal_compression=lz4` or `max_wal_size=8GB`: after each checkpoint, the first change of
each index page writes the whole page to the write-ahead log, and with random inserts that
is nearly every change.

The database is dropped at the end unless `--keep` (a cluster of the benchmark's own is
always removed). Prints the machine and its yardstick first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_store import drop_postgres, fresh_postgres

from machine import describe_machine

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))

from peers.postgres_cluster import PostgresCluster

_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=50)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pg-admin-url", default=_ADMIN)
    where.add_argument(
        "--shared-buffers",
        metavar="SIZE",
        help="run on a cluster of the benchmark's own with this buffer cache (e.g. 1GB)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --shared-buffers: another setting of that cluster (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--one-transaction", action="store_true", help="drop the attached partition at once"
    )
    args = parser.parse_args()
    extra = dict(setting.partition("=")[::2] for setting in args.setting)
    if extra and not args.shared_buffers:
        parser.error("--setting applies to the cluster of --shared-buffers")
    if any(not name or not value for name, value in extra.items()):
        parser.error("--setting takes NAME=VALUE")

    from xavyo_siem.cli import tune_gc

    tune_gc()
    print(describe_machine(), flush=True)
    print(f"started {datetime.now(UTC).isoformat()[:19]}Z", flush=True)
    with contextlib.ExitStack() as stack:
        admin_url = args.pg_admin_url
        if args.shared_buffers:
            settings = {"fsync": "on", "shared_buffers": args.shared_buffers, **extra}
            cluster = stack.enter_context(PostgresCluster(settings=settings))
            admin_url = cluster.url("postgres")
            print(f"own cluster: {settings}", flush=True)
        run(args, admin_url)
    print(f"finished {datetime.now(UTC).isoformat()[:19]}Z", flush=True)


def run(args: argparse.Namespace, admin_url: str) -> None:
    """Ingest, then retention, in a fresh database on the server at `admin_url`."""
    from xavyo_siem.sample import generate_events
    from xavyo_siem.store import append_events, make_engine, upgrade
    from xavyo_siem.store.partitions import (
        Detached,
        detach_partition,
        drop_detached,
        ensure_partitions,
        forget_detached,
        list_detached,
        list_partitions,
        now_us,
    )
    from xavyo_siem.store.retention import _Run

    name, url = fresh_postgres(admin_url)
    engine = make_engine(url)
    try:
        upgrade(engine)
        events = generate_events(args.events, tenants=args.tenants, seed=7)
        rates: list[float] = []
        done = 0
        mark, mark_count = time.perf_counter(), 0
        while done < args.events:
            size = min(args.batch, args.events - done)
            with engine.begin() as conn:
                result = append_events(conn, (next(events) for _ in range(size)))
            assert result.stored == size, result
            done += size
            if done - mark_count >= 1_000_000 or done == args.events:
                now = time.perf_counter()
                rate = (done - mark_count) / (now - mark)
                rates.append(rate)
                print(json.dumps({"events": done, "rate_eps": round(rate)}), flush=True)
                mark, mark_count = now, done
        print(
            json.dumps(
                {
                    "first_million_eps": round(rates[0]),
                    "last_million_eps": round(rates[-1]),
                    "last_vs_first": round(rates[-1] / rates[0], 3),
                }
            ),
            flush=True,
        )
        with engine.connect() as conn:
            conn.exec_driver_sql("SET search_path TO public")
            holding = [
                p
                for p in list_partitions(conn)
                if conn.exec_driver_sql(f"SELECT EXISTS (SELECT FROM {p.name})").scalar()
            ]
            size_mb = conn.exec_driver_sql(
                "SELECT pg_total_relation_size(%s) / 1048576", (holding[-1].name,)
            ).scalar()
        partition = holding[-1]
        ensure_partitions(engine)  # tomorrow's partition, which the probe writes into
        probe = _Probe(engine, generate_events(10_000, tenants=args.tenants, seed=8))
        figures: dict[str, Any] = {"partition": partition.name, "partition_mb": size_mb}
        if args.one_transaction:
            probe.start()
            time.sleep(1.0)
            began = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP TABLE "{partition.name}"')
                conn.exec_driver_sql(
                    "DELETE FROM audit_partitions WHERE name = %s", (partition.name,)
                )
            ended = time.perf_counter()
            time.sleep(1.0)
            probe.stop()
            figures["one_transaction_drop_s"] = round(ended - began, 3)
            gone = Detached(partition.name, partition.from_us, partition.to_us, True, now_us())
        else:
            began = time.perf_counter()
            figures["detached"] = detach_partition(engine, partition)
            figures["detach_s"] = round(time.perf_counter() - began, 4)
            with engine.connect() as conn:
                (gone,) = list_detached(conn)
            probe.start()
            time.sleep(1.0)
            began = time.perf_counter()
            figures["dropped"] = drop_detached(engine, gone)
            ended = time.perf_counter()
            time.sleep(1.0)
            probe.stop()
            figures["drop_s"] = round(ended - began, 3)
        began_keys = time.perf_counter()
        _Run(engine, False, 10_000).drop_keys(gone)
        figures["keys_s"] = round(time.perf_counter() - began_keys, 1)
        if not args.one_transaction:
            forget_detached(engine, gone)
        print(json.dumps({**figures, **probe.summary(began, ended)}), flush=True)
    finally:
        engine.dispose()
        if not args.keep:
            drop_postgres(admin_url, name)


class _Probe:
    """Inserts one event at a time into `audit_events`, received a day from now (its own
    connection, a transaction each), recording when each insert started and ended."""

    def __init__(self, engine: Any, events: Any) -> None:
        from xavyo_siem.store.event_rows import EVENT_COLUMNS

        names = ", ".join(column.name for column in EVENT_COLUMNS)
        marks = ", ".join("%s" for _ in EVENT_COLUMNS)
        self._insert = (
            f"INSERT INTO audit_events (received_us, {names}) VALUES"
            f" ((extract(epoch FROM clock_timestamp()) * 1000000)::bigint + 86400000000, {marks})"
        )
        self._engine, self._events = engine, events
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.spans: list[tuple[float, float]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from xavyo_siem.store.event_rows import row_of

        with self._engine.connect() as conn:
            while not self._stop.is_set():
                row = row_of(next(self._events), {})
                began = time.perf_counter()
                with conn.begin():
                    conn.exec_driver_sql(self._insert, tuple(row))
                self.spans.append((began, time.perf_counter()))
                time.sleep(0.005)

    def summary(self, began: float, ended: float) -> dict[str, Any]:
        """The inserts that overlapped [began, ended] (the drop) and the others."""
        during = [e - s for s, e in self.spans if s < ended and e > began]
        outside = [e - s for s, e in self.spans if not (s < ended and e > began)]
        return {
            "probe_during_drop": {
                "inserts": len(during),
                "max_ms": round(max(during, default=0) * 1000, 1),
            },
            "probe_outside_drop": {
                "inserts": len(outside),
                "max_ms": round(max(outside, default=0) * 1000, 1),
            },
        }


if __name__ == "__main__":
    sys.exit(main())
