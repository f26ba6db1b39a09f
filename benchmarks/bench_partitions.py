"""Partitioned PostgreSQL at scale: ingest rate over 10 million events, and retention.

    .venv/bin/python benchmarks/bench_partitions.py [--events 10000000] [--batch 100000]
        [--tenants 50] [--pg-admin-url URL] [--keep]

Ingests `--events` sample events into a fresh, migrated PostgreSQL database (partitioned
`audit_events`, the key table that keeps ingest idempotent) through `append_events`, one
transaction per `--batch` events, and prints the rate of every million: the last million
should run within 15 % of the first (an index that grows with the table shows up as a
falling rate). Then retention: the time to drop the partition that holds them all whole
(`drop_partition`, what `retention apply` does with a partition nothing holds), and the
time to remove their keys afterwards in chunks of 10,000. The database is dropped at the
end unless `--keep`. Prints the machine and its yardstick first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from bench_store import drop_postgres, fresh_postgres

from machine import describe_machine

_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--pg-admin-url", default=_ADMIN)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    from xavyo_siem.cli import tune_gc
    from xavyo_siem.sample import generate_events
    from xavyo_siem.store import append_events, make_engine, upgrade
    from xavyo_siem.store.partitions import drop_partition, list_partitions
    from xavyo_siem.store.retention import _Run

    tune_gc()
    print(describe_machine(), flush=True)
    print(f"started {datetime.now(UTC).isoformat()[:19]}Z", flush=True)
    name, url = fresh_postgres(args.pg_admin_url)
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
        began = time.perf_counter()
        dropped = drop_partition(engine, partition)
        drop_s = time.perf_counter() - began
        began = time.perf_counter()
        _Run(engine, False, 10_000)._drop_keys(partition)
        keys_s = time.perf_counter() - began
        print(
            json.dumps(
                {
                    "partition": partition.name,
                    "partition_mb": size_mb,
                    "dropped": dropped,
                    "drop_s": round(drop_s, 3),
                    "keys_removed_s": round(keys_s, 1),
                }
            ),
            flush=True,
        )
    finally:
        engine.dispose()
        if not args.keep:
            drop_postgres(args.pg_admin_url, name)
    print(f"finished {datetime.now(UTC).isoformat()[:19]}Z", flush=True)


if __name__ == "__main__":
    sys.exit(main())
