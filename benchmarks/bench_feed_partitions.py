"""What partition pruning saves the change feed: its read with and without pruning.

    .venv/bin/python benchmarks/bench_feed_partitions.py [--days 30] [--per-day 20000]
        [--reads 300] [--pg-admin-url URL]

Fills a fresh, migrated PostgreSQL database with `--per-day` events received on each of
`--days` days (one partition each; all closed but the last), then times `--reads` change
feed reads of 100 events near the end: as `read_feed` does them (only the partitions whose
ceiling is above the position, i.e. the newest), and with that condition left out, which
is what every read costs when no partition can be skipped (partitions keyed by the event's
own time: a late event may land in any of them). The horizon is set above every row (all
are committed; another transaction of the shared cluster would hold it back and leave the
reads empty). Connects as the database's owner. Prints the machine and its yardstick.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench_store import drop_postgres, fresh_postgres

from machine import describe_machine

_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--pg-admin-url", default=_ADMIN)
    args = parser.parse_args()

    from sqlalchemy import BigInteger, literal_column, text

    from xavyo_siem.sample import generate_events
    from xavyo_siem.store import events as events_module
    from xavyo_siem.store import make_engine, upgrade, writing
    from xavyo_siem.store.event_rows import EVENT_COLUMNS, row_of
    from xavyo_siem.store.events import EventCursor
    from xavyo_siem.store.feed import read_feed
    from xavyo_siem.store.partitions import DAY_US, MAKE_PARTITIONS
    from xavyo_siem.store.scope import scope_to_tenant

    print(describe_machine(), flush=True)
    print(f"started {datetime.now(UTC).isoformat()[:19]}Z", flush=True)
    name, url = fresh_postgres(args.pg_admin_url)
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            today = int(conn.exec_driver_sql("SELECT extract(epoch FROM now()) * 1e6").scalar())
            today -= today % DAY_US
            conn.exec_driver_sql(f"SELECT {MAKE_PARTITIONS}({today + (args.days + 1) * DAY_US})")
        names = ", ".join(column.name for column in EVENT_COLUMNS)
        marks = ", ".join(f":{column.name}" for column in EVENT_COLUMNS)
        columns = [column.name for column in EVENT_COLUMNS]
        tenant = None
        for day in range(1, args.days + 1):
            received = today + day * DAY_US + 60_000_000
            stamp = datetime.fromtimestamp(received / 1e6, UTC) - timedelta(minutes=1)
            events = list(generate_events(args.per_day, seed=day, start=stamp))
            tenant = events[0].tenant_id
            with writing(engine) as conn:
                scope_to_tenant(conn, tenant)
                conn.execute(
                    text(f"INSERT INTO audit_events (received_us, {names})"
                         f" VALUES ({received}, {marks})"),
                    [dict(zip(columns, row_of(e, {}), strict=True)) for e in events],
                )  # fmt: skip
        assert tenant is not None
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE audit_events")
            conn.exec_driver_sql(
                "UPDATE audit_partitions p SET txid_ceiling = coalesce((SELECT max(txid) + 1"
                " FROM audit_events a WHERE a.received_us >= p.from_us"
                " AND a.received_us < p.to_us), 1) WHERE p.to_us <= %s",
                (today + args.days * DAY_US,),
            )
            conn.exec_driver_sql(
                "INSERT INTO destinations (id, tenant_id, name, delivery_type, format, endpoint,"
                " options, filters, enabled, created_us, updated_us) VALUES"
                " (%s, %s, 'f', 'file', 'json', 'file:///dev/null', '{}', '{}', true, 0, 0)"
                " ON CONFLICT DO NOTHING",
                (str(uuid.uuid4()), str(tenant)),
            )
            conn.exec_driver_sql(
                "INSERT INTO leases (destination_id, owner, epoch, tenant_id)"
                " SELECT id, 'w1', 1, tenant_id FROM destinations"
            )
            position = EventCursor(
                *conn.exec_driver_sql(
                    "SELECT txid, seq FROM audit_events ORDER BY txid DESC, seq DESC"
                    " OFFSET 150 LIMIT 1"
                ).one()
            )
        # Every row here is committed; the cluster's other transactions (the machine is
        # shared) would hold the horizon below them and leave the reads empty.
        events_module._HORIZON = literal_column(str(1 << 61), BigInteger())  # type: ignore[misc]
        figures = {}
        for label, floor in (("pruned", events_module.received_floor), ("every partition", None)):
            if floor is None:  # no guess: the page reads every partition
                events_module.received_floor = lambda conn, txid: None  # type: ignore[assignment]
            times, read = [], 0
            for _ in range(args.reads):
                with engine.connect() as conn:
                    began = time.perf_counter()
                    page = read_feed(conn, owner="w1", after=position, limit=100)
                    times.append(time.perf_counter() - began)
                read = page.count
            figures[label] = {
                "median_ms": round(statistics.median(times) * 1000, 2),
                "p90_ms": round(sorted(times)[int(len(times) * 0.9)] * 1000, 2),
                "events_per_read": read,
            }
        print(json.dumps({"days": args.days, "per_day": args.per_day, **figures}), flush=True)
    finally:
        engine.dispose()
        drop_postgres(args.pg_admin_url, name)
    print(f"finished {datetime.now(UTC).isoformat()[:19]}Z", flush=True)


if __name__ == "__main__":
    sys.exit(main())
