"""One `/metrics` scrape of the fleet view on PostgreSQL: statements and wall time.

    .venv/bin/python benchmarks/bench_fleet_metrics.py [--destinations 1000,10000]
        [--per-tenant 10] [--events-per-tenant 5] [--repeat 5]

A fresh PostgreSQL database on 127.0.0.1:5432 (dropped at the end), migrated by the
superuser, holds file destinations made with `add_destination`, `--per-tenant` to a
tenant, and `--events-per-tenant` events of each tenant; half the destinations have their
cursor moved past their tenant's events (caught up), the others have every event waiting.
The API (`create_app`) connects as a login role in `xavyo_siem_service` alone, as an
API-only deployment does, so the fleet view goes through `xavyo_siem_fleet_health` under
row-level security. For each size in `--destinations` (made in turn, adding to the last),
`--repeat` scrapes by a platform token, each reading the store afresh (no cache), report:
SQL statements sent by the service (a SQLAlchemy `before_cursor_execute` count: the same
on any machine), the response's bytes, and the median and best wall time (the machine's
load shows in these; the yardstick line says how fast it ran Python), and the wall time of
the store's read alone (`read_fleet_health`, the rest is the exposition). Then one tenant's
health (`delivery_health.list_health`) against the same read one destination at a time
(`destination_health` for each, what `list_health` did before), in statements.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xavyo_siem import delivery_health
from xavyo_siem import destinations as manage
from xavyo_siem.api import create_app
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.fleet_metrics import FleetView
from xavyo_siem.model import AuditEvent, DeliveryType, EventCategory, ExportFormat
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events, make_engine, upgrade, writing
from xavyo_siem.store import destinations as rows
from xavyo_siem.store.fleet import read_fleet_health
from xavyo_siem.store.scope import SERVICE_ROLE
from xavyo_siem.store.tokens import Role, issue_token

from machine import describe_machine

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
API_ROLE = "xavyo_siem_bench_api"


class Statements:
    """Counts the SQL statements an engine sends while `on`."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.on = False
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, *args: object) -> None:
        if self.on:
            self.count += 1

    def measure(self, run: object) -> tuple[int, object]:
        self.count, self.on = 0, True
        try:
            result = run()  # type: ignore[operator]
        finally:
            self.on = False
        return self.count, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--destinations", default="1000,10000")
    parser.add_argument("--per-tenant", type=int, default=10)
    parser.add_argument("--events-per-tenant", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(n) for n in args.destinations.split(",")]
    print(f"# machine: {describe_machine()}")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, PostgreSQL on 127.0.0.1:5432")
    name = f"xavyo_siem_bench_fleet_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name)
    owner = make_engine(url.render_as_string(hide_password=False))
    api = None
    try:
        upgrade(owner)
        with admin.connect() as conn:
            conn.execute(
                text(
                    "DO $$ BEGIN"
                    f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}') THEN"
                    f" CREATE ROLE {API_ROLE} LOGIN; END IF; END $$"
                )
            )
            conn.execute(text(f"GRANT {SERVICE_ROLE} TO {API_ROLE}"))
        api = make_engine(url.set(username=API_ROLE).render_as_string(hide_password=False))
        with owner.begin() as conn:
            _, token = issue_token(
                conn, tenant_id=None, role=Role.VIEWER, name="bench", now=datetime.now(UTC)
            )
        app = create_app(Settings(), api, keyring=KeyRing.parse(new_key_text()))
        app.state.context = replace(app.state.context, fleet=FleetView(api, max_age_s=0))
        counter = Statements(api)
        tenants = [uuid.uuid4() for _ in range(max(sizes) // args.per_tenant)]
        made = 0
        print(
            "destinations | tenants | statements/scrape | bytes | median s | best s"
            " | store read alone, median s"
            " | tenant health: list_health / one by one (statements, destinations)"
        )
        with tempfile.TemporaryDirectory() as out, TestClient(app) as client:
            for size in sizes:
                used = tenants[: size // args.per_tenant]
                per = args.per_tenant
                for j in range(made, size):
                    manage.add_destination(
                        owner,
                        tenant_id=used[j // per],
                        spec=DestinationSpec(
                            name=f"file-{j:05d}",
                            delivery_type=DeliveryType.FILE,
                            format=ExportFormat.JSON,
                            endpoint=f"file://{out}/{j}.jsonl",
                            options={"start": "beginning"},
                        ),
                        secret=None,
                        keyring=None,
                        development=False,
                    )
                new_tenants = used[made // per :]
                made = size
                now = datetime.now(UTC)
                with writing(owner) as conn:
                    append_events(
                        conn,
                        [
                            AuditEvent(
                                event_id=uuid.uuid4(),
                                tenant_id=tenant,
                                timestamp=now - timedelta(minutes=n),
                                event_type="USER_LOGIN",
                                category=EventCategory.AUTHENTICATION,
                            )
                            for tenant in new_tenants
                            for n in range(args.events_per_tenant)
                        ],
                    )
                with owner.begin() as conn:  # half of them caught up
                    conn.execute(
                        text(
                            "UPDATE destination_state s SET (cursor_txid, cursor_seq) ="
                            " (SELECT a.txid, a.seq FROM audit_events a"
                            " WHERE a.tenant_id = s.tenant_id ORDER BY a.txid DESC, a.seq DESC"
                            " LIMIT 1) FROM destinations d WHERE d.id = s.destination_id"
                            " AND right(d.name, 1) IN ('0', '2', '4', '6', '8')"
                        )
                    )
                    conn.execute(text("ANALYZE"))
                times, counts, sizes_b = [], [], []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    count, response = counter.measure(
                        lambda: client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                    )
                    times.append(time.perf_counter() - began)
                    counts.append(count)
                    sizes_b.append(len(response.content))  # type: ignore[attr-defined]
                    assert response.status_code == 200  # type: ignore[attr-defined]
                reads = []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    with api.connect() as conn:
                        read_fleet_health(conn, tenant_id=None, now=datetime.now(UTC))
                    reads.append(time.perf_counter() - began)
                tenant = used[0]
                with api.connect() as conn:
                    bulk, _ = counter.measure(
                        lambda conn=conn, tenant=tenant: delivery_health.list_health(
                            conn, tenant_id=tenant
                        )
                    )
                with api.connect() as conn:
                    single, _ = counter.measure(
                        lambda conn=conn, tenant=tenant: [
                            delivery_health.destination_health(conn, d)
                            for d in rows.list_destinations(conn, tenant_id=tenant)
                        ]
                    )
                print(
                    f"{size:,} | {len(used):,} | {statistics.median(counts):.0f}"
                    f" (min {min(counts)}, max {max(counts)}) | {statistics.median(sizes_b):,.0f}"
                    f" | {statistics.median(times):.3f} | {min(times):.3f}"
                    f" | {statistics.median(reads):.3f}"
                    f" | {bulk} / {single} ({per})"
                )
    finally:
        if api is not None:
            api.dispose()
        owner.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
