"""Row-level security on PostgreSQL: the database checks the tenant a second time.

Each test looks at the tables directly, the way a query that forgot its tenant would, as a
login role in `xavyo_siem_service` only (the API) or in both group roles (a worker), and
sets the scope by hand where the store functions would.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from sqlalchemy import Connection, Engine, Select, text
from sqlalchemy.exc import ProgrammingError

from dated_events import NOW, events_of
from file_output import add_file_destination
from store_roles import as_role, make_login_role
from xavyo_siem.store import append_events, make_engine, upgrade, writing
from xavyo_siem.store import events as events_module
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.events import START, EventCursor, fetch_rows, read_horizon, select_by_id
from xavyo_siem.store.feed import catch_up, read_catch_up, read_feed
from xavyo_siem.store.leases import acquire_leases, heartbeat, refresh_lease_statistics
from xavyo_siem.store.quarantine import QuarantineEntry, add_quarantined
from xavyo_siem.store.scope import (
    PLATFORM_SETTING,
    SERVICE_ROLE,
    TENANT_SETTING,
    TENANT_TABLES,
    WORKER_SETTING,
)
from xavyo_siem.store.tables import audit_events

_T = audit_events.c
API_ROLE = "xavyo_siem_test_api"  # a login role in xavyo_siem_service only
TTL = timedelta(seconds=30)


@dataclass
class Store:
    """One migrated store with three tenants' rows in every tenant table."""

    owner: Engine
    api: Engine  # xavyo_siem_service only
    worker: Engine  # xavyo_siem_service and xavyo_siem_worker
    tenants: list[UUID]
    destinations: dict[UUID, str]  # tenant -> its destination's id


@pytest.fixture(scope="session")
def pg_api_role() -> str:
    """A login role in `xavyo_siem_service` alone (made once per cluster)."""
    return make_login_role(API_ROLE, (SERVICE_ROLE,))


@pytest.fixture
def store(pg_url: str, pg_app_role: str, pg_api_role: str, tmp_path: Path) -> Iterator[Store]:
    """Tenants A, B and C, each with 30 events, a file destination (and its state), a dead
    letter, an export job, a quarantine entry (and one entry without a tenant), a retention
    policy and a retention hold; stored
    by the owner, which row-level security does not restrict (a superuser here)."""
    owner = make_engine(pg_url)
    upgrade(owner)
    tenants = [UUID(int=0xA), UUID(int=0xB), UUID(int=0xC)]
    found: dict[UUID, str] = {}
    for tenant in tenants:
        add_file_destination(owner, tenant, tmp_path / f"{tenant.int:x}.jsonl")
    with writing(owner) as conn:
        append_events(conn, [e for tenant in tenants for e in events_of(tenant, 30)])
        for tenant_text, ident in conn.execute(text("SELECT tenant_id, id FROM destinations")):
            found[UUID(tenant_text)] = ident
        for tenant in tenants:
            add_dead_letters(
                conn,
                tenant_id=tenant,
                destination_id=UUID(found[tenant]),
                entries=[(uuid4(), "refused")],
                now=NOW,
            )
            conn.execute(
                text(
                    "INSERT INTO export_jobs (id, tenant_id, target_kind, target, format,"
                    " options, start_us, end_us, filters, status, exported, created_us)"
                    " VALUES (:id, :tenant, 'file', '/tmp/x.csv', 'csv', '{}', 0, 1, '{}',"
                    " 'done', 0, 0)"
                ),
                {"id": str(uuid4()), "tenant": str(tenant)},
            )
            add_quarantined(
                conn, [QuarantineEntry("line 1: x", "f:1", "{}", tenant)], tenant_id=tenant, now=NOW
            )
            conn.execute(
                text(
                    "INSERT INTO retention_policies (tenant_id, keep_s, updated_us)"
                    " VALUES (:tenant, 86400, 0)"
                ),
                {"tenant": str(tenant)},
            )
            conn.execute(
                text(
                    "INSERT INTO retention_holds (tenant_id, holder, reason, held_events,"
                    " since_us, checked_us) VALUES (:tenant, 'export:x', 'export', 1, 0, 0)"
                ),
                {"tenant": str(tenant)},
            )
        # A line that named no tenant: the platform's alone.
        add_quarantined(conn, [QuarantineEntry("not JSON", "f:2", "?")], tenant_id=None, now=NOW)
    made = Store(
        owner=owner,
        api=make_engine(as_role(pg_url, pg_api_role)),
        worker=make_engine(as_role(pg_url, pg_app_role)),
        tenants=tenants,
        destinations=found,
    )
    yield made
    for engine in (made.owner, made.api, made.worker):
        engine.dispose()


def wait_until_final(store: Store) -> None:
    """Wait until every stored event is final: below the horizon of the transactions still
    running in the cluster, which the change feed does not read past."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with store.owner.connect() as conn:
            last = conn.exec_driver_sql("SELECT max(txid) FROM audit_events").scalar_one()
            if read_horizon(conn) > last:
                return
        time.sleep(0.05)
    raise AssertionError("a transaction elsewhere in the cluster stayed open for 2 minutes")


def set_scope(conn: Connection, **settings: str) -> None:
    """Set the scope as the store functions do: transaction-locally."""
    names = {"tenant": TENANT_SETTING, "worker": WORKER_SETTING, "platform": PLATFORM_SETTING}
    for key, value in settings.items():
        conn.exec_driver_sql("SELECT set_config(%s, %s, true)", (names[key], value))


def tenants_seen(conn: Connection, table: str) -> set[str]:
    return {tenant for (tenant,) in conn.exec_driver_sql(f"SELECT tenant_id::text FROM {table}")}


def test_every_tenant_table_is_protected_and_forced(store: Store) -> None:
    """Each tenant table, and each partition of `audit_events`, has row-level security
    enabled and forced (it binds the owner too)."""
    with store.owner.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')"
        ).all()
        partitions = {row[0] for row in conn.exec_driver_sql("SELECT name FROM audit_partitions")}
    protected = {name for name, enabled, forced in rows if enabled and forced}
    assert "audit_events_p0" in partitions
    assert len(partitions) >= 3  # the events before partitioning, today and ahead
    assert protected == set(TENANT_TABLES) | partitions


def test_without_a_tenant_the_service_sees_no_row_of_any_tenant_table(store: Store) -> None:
    """With no scope set, or after a transaction that set one ended, every tenant table
    looks empty to the service role and to a worker."""
    for engine in (store.api, store.worker):
        with engine.connect() as conn:
            for table in TENANT_TABLES:
                assert tenants_seen(conn, table) == set(), table
            conn.rollback()
            with conn.begin():
                set_scope(conn, tenant=str(store.tenants[0]), worker="w1")
            for table in TENANT_TABLES:  # the settings now read '', not NULL
                assert tenants_seen(conn, table) == set(), table


def test_with_tenant_a_set_no_row_of_tenant_b_is_visible(store: Store) -> None:
    """Scoped to tenant A, every tenant table shows A's rows and never another tenant's."""
    a = store.tenants[0]
    for engine in (store.api, store.worker):
        with engine.connect() as conn:
            set_scope(conn, tenant=str(a))
            for table in TENANT_TABLES:
                assert tenants_seen(conn, table) == {str(a)}, table
            count = conn.exec_driver_sql(
                "SELECT count(*) FROM audit_events WHERE tenant_id = %s", (str(store.tenants[1]),)
            ).scalar_one()
            assert count == 0


def test_the_service_cannot_write_a_row_for_another_tenant(store: Store) -> None:
    """Scoped to tenant A, the service can neither insert B's event nor move a row to B,
    and its updates and deletes of B's rows touch nothing."""
    a, b = str(store.tenants[0]), str(store.tenants[1])
    with store.api.connect() as conn:
        set_scope(conn, tenant=a)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            append_events(conn, events_of(store.tenants[1], 1), tenant_id=store.tenants[0])
        conn.rollback()
        set_scope(conn, tenant=a)
        with pytest.raises(ProgrammingError, match="row-level security"):
            conn.exec_driver_sql("UPDATE destinations SET tenant_id = %s", (b,))
        conn.rollback()
        set_scope(conn, tenant=a)
        for table in TENANT_TABLES:
            deleted = conn.exec_driver_sql(f"DELETE FROM {table} WHERE tenant_id = %s", (b,))
            assert deleted.rowcount == 0, table
        conn.commit()
    with store.owner.connect() as conn:
        for table in TENANT_TABLES:
            assert b in tenants_seen(conn, table), table


def test_the_service_role_has_no_worker_or_platform_scope(store: Store) -> None:
    """A login role in `xavyo_siem_service` alone gains nothing by naming a worker or the
    platform: it sees no row and cannot append an event for any tenant."""
    with writing(store.worker) as conn:
        heartbeat(conn, owner="w1", ttl=TTL, now=NOW)
        assert acquire_leases(conn, owner="w1", limit=3, ttl=TTL, now=NOW)
    with store.api.connect() as conn:
        set_scope(conn, worker="w1", platform="on")
        for table in TENANT_TABLES:
            assert tenants_seen(conn, table) == set(), table
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            append_events(conn, events_of(store.tenants[0], 1))


def test_a_worker_sees_only_the_events_of_the_tenants_it_leases(store: Store) -> None:
    """Named w1, a worker reads the events, cursors and dead letters of the tenants whose
    destinations w1 leases, and nothing of the others; its change feed reads only those
    tenants' events, yet moves past the others' (which it cannot see); so does its walk
    over a backlog it starts behind."""
    a, b, c = store.tenants
    with writing(store.worker) as conn:
        heartbeat(conn, owner="w1", ttl=TTL, now=NOW)
        heartbeat(conn, owner="w2", ttl=TTL, now=NOW)
        taken = acquire_leases(conn, owner="w1", limit=1, ttl=TTL, now=NOW)
        assert set(taken) == {UUID(store.destinations[a])}  # tenant by tenant: A first
        acquire_leases(conn, owner="w2", limit=1, ttl=TTL, now=NOW)
    with store.worker.connect() as conn:
        set_scope(conn, worker="w1", platform="on")
        for table in ("audit_events", "destination_state", "dead_letters"):
            assert tenants_seen(conn, table) == {str(a)}, table
        # Work is shared out from every destination and export job.
        assert tenants_seen(conn, "destinations") == {str(a), str(b), str(c)}
        conn.rollback()
        wait_until_final(store)
        page = read_feed(conn, owner="w1", after=START, limit=1000)
        assert set(page.by_tenant) == {a}
        assert page.count == 30
        with store.owner.connect() as owner:
            last = owner.exec_driver_sql(
                "SELECT txid, seq FROM audit_events ORDER BY txid DESC, seq DESC LIMIT 1"
            ).one()
        assert page.position == EventCursor(last[0], last[1])
        # The feed's walk over a backlog it starts behind reads the same tenants alone.
        walk = catch_up(conn, owner="w1", start=START)
        assert walk is not None
        assert walk.through == page.position
        walked, rest = read_catch_up(conn, owner="w1", walk=walk, limit=1000)
        assert set(walked.by_tenant) == {a}
        assert walked.count == 30
        assert rest is None


def test_a_read_by_id_through_the_keys_finds_only_what_its_scope_may_read(store: Store) -> None:
    """A read by id goes through the key table: in tenant A's scope the service finds A's
    events and none of B's (it sees A's keys alone); a worker named w1, leasing A's
    destination only, finds A's events and none of B's, whose keys it may see (its
    scope includes the platform's, which ingest needs) but whose events it may not."""
    a, b, _ = store.tenants
    with store.owner.connect() as conn:
        ids = {
            tenant: [
                row[0]
                for row in conn.exec_driver_sql(
                    "SELECT event_id FROM audit_events WHERE tenant_id = %s", (str(tenant),)
                )
            ]
            for tenant in (a, b)
        }

    def found(conn: Connection, tenant: UUID) -> int:
        statement = select_by_id(conn, _T.seq, tenant=str(tenant), event_ids=ids[tenant])
        return len(conn.execute(statement).all())

    with store.api.connect() as conn:
        set_scope(conn, tenant=str(a))
        assert tenants_seen(conn, "audit_event_keys") == {str(a)}
        assert (found(conn, a), found(conn, b)) == (30, 0)
    with writing(store.worker) as conn:
        heartbeat(conn, owner="w1", ttl=TTL, now=NOW)
        assert set(acquire_leases(conn, owner="w1", limit=1, ttl=TTL, now=NOW)) == {
            UUID(store.destinations[a])
        }
    with store.worker.connect() as conn:
        set_scope(conn, worker="w1", platform="on")
        assert (found(conn, a), found(conn, b)) == (30, 0)


def test_a_worker_cannot_write_for_a_tenant_it_does_not_serve(store: Store) -> None:
    """Named w1 and leasing A's destination only, a worker cannot add a dead letter or move
    a cursor of tenant B; and the platform scope appends events but reads none."""
    a, b = store.tenants[0], store.tenants[1]
    with writing(store.worker) as conn:
        heartbeat(conn, owner="w1", ttl=TTL, now=NOW)
        acquire_leases(conn, owner="w1", limit=1, ttl=TTL, now=NOW)
    with store.worker.connect() as conn:
        set_scope(conn, worker="w1", platform="on")
        with pytest.raises(ProgrammingError, match="row-level security"):
            conn.exec_driver_sql(
                "INSERT INTO dead_letters (tenant_id, destination_id, event_id, reason,"
                " replay, created_us) VALUES (%s, %s, %s, 'x', false, 0)",
                (str(b), store.destinations[b], str(uuid4())),
            )
        conn.rollback()
        set_scope(conn, worker="w1", platform="on")
        moved = conn.exec_driver_sql("UPDATE destination_state SET cursor_seq = 99")
        assert moved.rowcount == 1  # A's only
        conn.rollback()
        set_scope(conn, platform="on")
        stored = append_events(conn, events_of(b, 2))
        assert stored.stored == 2
        assert tenants_seen(conn, "audit_events") == set()
        conn.rollback()
    assert a != b


def test_the_feed_keeps_its_order_index_under_the_policies(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a worker's policies the change feed's read still walks the partial index
    `ix_audit_events_order` (each partition's), and the policy's lease lookup runs once per
    read (a hashed subplan), not once per row."""
    many = [UUID(int=0x100 + n) for n in range(30)]
    with writing(store.owner) as conn:
        append_events(conn, [e for tenant in many for e in events_of(tenant, 100)])
        for tenant in many:
            conn.exec_driver_sql(
                "INSERT INTO destinations (id, tenant_id, name, delivery_type, format, endpoint,"
                " options, filters, enabled, created_us, updated_us) VALUES"
                " (%s, %s, 'f', 'file', 'json', 'file:///dev/null', '{}', '{}', true, 0, 0)",
                (str(uuid4()), str(tenant)),
            )
    with writing(store.worker) as conn:
        heartbeat(conn, owner="w1", ttl=TTL, now=NOW)
        assert len(acquire_leases(conn, owner="w1", limit=100, ttl=TTL, now=NOW)) == 33
    with store.owner.connect() as conn:
        # This schema's tables only: the whole database holds every test's schema, and
        # analysing all their partitions in one transaction runs out of lock slots.
        for table in ("audit_events", "destinations", "leases"):
            conn.exec_driver_sql(f"ANALYZE {table}")
        txid, seq = conn.exec_driver_sql(
            "SELECT txid, seq FROM audit_events ORDER BY txid DESC, seq DESC OFFSET 200 LIMIT 1"
        ).one()
        conn.commit()
    plans: list[str] = []

    def explained(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plans.append("\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}")))
        return fetch_rows(conn, statement)

    wait_until_final(store)
    monkeypatch.setattr(events_module, "fetch_rows", explained)
    with store.worker.connect() as conn:
        page = read_feed(conn, owner="w1", after=EventCursor(txid, seq), limit=1000)
    assert page.count == 200
    (plan,) = plans
    # Each partition's copy of the partial index; the events stored before (all below the
    # position) are not read at all.
    assert "_txid_seq_idx on audit_events_p" in plan
    assert "audit_events_p0" not in plan
    assert "hashed SubPlan" in plan


def test_a_worker_refreshes_the_lease_statistics_it_does_not_own(store: Store) -> None:
    """The worker's role, which does not own `leases`, still has them analyzed (through a
    function with the owner's rights): the planner learns how many leases there are."""
    with writing(store.worker) as conn:
        heartbeat(conn, owner="w1", ttl=TTL, now=NOW)
        assert len(acquire_leases(conn, owner="w1", limit=3, ttl=TTL, now=NOW)) == 3
        refresh_lease_statistics(conn)
    with store.owner.connect() as conn:
        counted = conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'leases'::regclass"
        ).scalar_one()
    assert counted == 3


def test_db_upgrade_prints_how_the_service_connects(pg_url: str) -> None:
    """`db upgrade` on PostgreSQL says which roles it made and how the service connects:
    as a login role in them, with the store's URL under that role."""
    done = subprocess.run(
        [sys.executable, "-m", "xavyo_siem", "db", "upgrade", "--db", pg_url],
        capture_output=True,
        check=True,
    )
    said = done.stderr.decode()
    assert "LOGIN PASSWORD '...' IN ROLE xavyo_siem_service, xavyo_siem_worker;" in said
    assert f"XAVYO_SIEM_DATABASE_URL={as_role(pg_url, 'xavyo_siem_app')}" in said


def test_only_the_worker_role_may_touch_the_sources(store: Store) -> None:
    """`sources` (the platform's sealed connection strings) is readable by a member of
    `xavyo_siem_worker` and refused to a login role in `xavyo_siem_service` alone."""
    with store.worker.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sources").scalar_one() == 0
    with store.api.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
        conn.exec_driver_sql("SELECT sealed_dsn FROM sources").all()
