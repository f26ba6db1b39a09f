"""Every destination's health in one read (`store/fleet.py`): a tenant's health in a few
statements whatever its number of destinations, with the same figures as one by one; and on
PostgreSQL the API's role reading every tenant's health through `xavyo_siem_fleet_health`,
which gives it the health columns and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from file_output import add_file_destination
from store_roles import OWNER_ROLE, as_role, make_login_role, make_owner_role
from xavyo_siem import delivery_health
from xavyo_siem.api import create_app
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.fleet_metrics import FleetSnapshot, FleetView
from xavyo_siem.model import EVENT_FIELDS, AuditEvent, EventCategory, EventFilter
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events, make_engine, upgrade, writing
from xavyo_siem.store import destinations as rows
from xavyo_siem.store.fleet import FLEET_COLUMNS, FLEET_HEALTH, read_fleet_health
from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE
from xavyo_siem.store.tokens import Role, issue_token

API_ROLE: Final = "xavyo_siem_test_api"  # a login role in xavyo_siem_service only
WORKER_ONLY_ROLE: Final = "xavyo_siem_test_worker_only"


def events_of(tenant: UUID, count: int, category: EventCategory) -> list[AuditEvent]:
    now = datetime.now(UTC)
    return [
        AuditEvent(
            event_id=uuid4(),
            tenant_id=tenant,
            timestamp=now - timedelta(minutes=5),
            event_type="USER_LOGIN",
            category=category,
        )
        for _ in range(count)
    ]


def statements_of(engine: Engine, run: object) -> int:
    """How many SQL statements `run()` sends through `engine`."""
    sent: list[str] = []

    def record(*args: object) -> None:
        sent.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()  # type: ignore[operator]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return len(sent)


def test_a_tenants_health_costs_the_same_statements_for_3_or_30_destinations(
    engine: Engine, tmp_path: Path
) -> None:
    """`list_health` of a tenant whose destinations are caught up sends as many statements
    for 30 destinations as for 3 (counted, not timed)."""
    tenant = uuid4()
    counts = {}
    for total in (3, 30):
        while len(rows_of(engine, tenant)) < total:
            add_file_destination(engine, tenant, tmp_path / f"{uuid4().hex}.jsonl")

        def read(total: int = total) -> None:
            with engine.connect() as conn:
                assert len(delivery_health.list_health(conn, tenant_id=tenant)) == total

        counts[total] = statements_of(engine, read)
    assert counts[30] == counts[3], counts


def rows_of(engine: Engine, tenant: UUID) -> list[object]:
    with engine.connect() as conn:
        return list(rows.list_destinations(conn, tenant_id=tenant))


def test_a_tenants_health_in_bulk_equals_its_destinations_one_by_one(
    engine: Engine, tmp_path: Path
) -> None:
    """For a destination without a filter and one whose filter skips some waiting events,
    `list_health` gives exactly what `destination_health` gives for each (lag filtered as
    before); the fleet read counts every waiting event, the filter not applied."""
    tenant = uuid4()
    security = EventFilter(categories=frozenset({EventCategory.SECURITY}))
    add_file_destination(engine, tenant, tmp_path / "plain.jsonl")
    add_file_destination(engine, tenant, tmp_path / "picky.jsonl", filters=security)
    with writing(engine) as conn:
        append_events(conn, events_of(tenant, 4, EventCategory.AUTHENTICATION))
        append_events(conn, events_of(tenant, 2, EventCategory.SECURITY))
    with engine.connect() as conn:
        bulk = delivery_health.list_health(conn, tenant_id=tenant)
        single = [
            delivery_health.destination_health(conn, d)
            for d in rows.list_destinations(conn, tenant_id=tenant)
        ]
        fleet = read_fleet_health(conn, tenant_id=tenant, now=datetime.now(UTC))
    by_id = {report.destination_id: report for report in single}
    ids = {report.name: report.destination_id for report in single}
    for report in bulk:
        expected = by_id[report.destination_id]
        assert report.to_dict() | {"lag_seconds": 0} == expected.to_dict() | {"lag_seconds": 0}
        assert abs(report.lag_seconds - expected.lag_seconds) < 5  # read moments apart
    lags = {report.destination_id: report.lag_events for report in bulk}
    assert lags == {ids["plain"]: 6, ids["picky"]: 2}
    assert {entry.health.destination_id: entry.health.lag_events for entry in fleet} == {
        ids["plain"]: 6, ids["picky"]: 6
    }  # fmt: skip


def test_reads_of_the_fleet_within_its_age_share_one(engine: Engine, tmp_path: Path) -> None:
    """A second snapshot of the fleet while the first is fresh sends no statement and is
    the same read; another tenant's, or every tenant's after `max_age_s`, reads again."""
    tenant = uuid4()
    add_file_destination(engine, tenant, tmp_path / "one.jsonl")
    kept = FleetView(engine, max_age_s=3600)
    first = kept.snapshot(tenant_id=None)
    assert [entry.health.tenant_id for entry in first.destinations] == [tenant]
    again: list[FleetSnapshot] = []
    assert statements_of(engine, lambda: again.append(kept.snapshot(tenant_id=None))) == 0
    assert again == [first]
    assert statements_of(engine, lambda: kept.snapshot(tenant_id=tenant)) > 0
    fresh = FleetView(engine, max_age_s=0)
    fresh.snapshot(tenant_id=None)
    assert statements_of(engine, lambda: fresh.snapshot(tenant_id=None)) > 0


@pytest.fixture
def pg_store(pg_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Engine, list[UUID]]]:
    """A PostgreSQL store migrated by its owner, with a file destination (and events) of
    each of two tenants; the owner's engine and one as a login role in
    `xavyo_siem_service` alone (the API)."""
    owner = make_engine(pg_url)
    upgrade(owner)
    tenants = [uuid4(), uuid4()]
    for n, tenant in enumerate(tenants):
        add_file_destination(owner, tenant, tmp_path / f"t{n}.jsonl")
    with writing(owner) as conn:
        for tenant in tenants:
            append_events(conn, events_of(tenant, 3, EventCategory.AUTHENTICATION))
    api = make_engine(as_role(pg_url, make_login_role(API_ROLE, (SERVICE_ROLE,))))
    yield owner, api, tenants
    api.dispose()
    owner.dispose()


def test_the_fleet_function_gives_the_api_health_columns_and_nothing_else(
    pg_store: tuple[Engine, Engine, list[UUID]], pg_url: str
) -> None:
    """As the API's role, which sees no destination without a tenant, the function lists
    both tenants' destinations with exactly the health columns: no endpoint, option,
    filter or credential, and no event field; a role that is only a worker may not run it."""
    _, api, tenants = pg_store
    with api.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM destinations")).scalar_one() == 0
        result = conn.execute(text(f"SELECT * FROM {FLEET_HEALTH}(NULL, 1000)"))
        columns = list(result.keys())
        found = result.mappings().all()
    assert columns == [name for name, _ in FLEET_COLUMNS]
    forbidden = {"endpoint", "options", "filters", "secret", "format", "cursor_txid"}
    event_fields = {field.name for field in EVENT_FIELDS} - {"tenant_id"}
    assert not set(columns) & (forbidden | event_fields)
    assert sorted(UUID(row["tenant_id"]) for row in found) == sorted(tenants)
    assert {row["lag_events"] for row in found} == {3}
    worker_only = make_engine(as_role(pg_url, make_login_role(WORKER_ONLY_ROLE, (WORKER_ROLE,))))
    try:
        with worker_only.connect() as conn, pytest.raises(ProgrammingError, match="permission"):
            conn.execute(text(f"SELECT * FROM {FLEET_HEALTH}(NULL, 1000)"))
    finally:
        worker_only.dispose()


def test_the_fleet_function_reads_under_a_non_superuser_owner(
    pg_database_url: str, pg_app_role: str
) -> None:
    """Migrated by an owner that is no superuser (so row-level security binds it too), the
    function still reads every tenant's destinations for the API's role: its policies let
    the owner read inside it, and nowhere else."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    make_owner_role(str(make_url(pg_database_url).database))
    make_login_role(API_ROLE, (SERVICE_ROLE,))  # makes the group roles the owner grants to
    db_admin = create_engine(pg_database_url, isolation_level="AUTOCOMMIT")
    with db_admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema} AUTHORIZATION {OWNER_ROLE}"))
    db_admin.dispose()
    url = (
        make_url(pg_database_url)
        .set(username=OWNER_ROLE)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    owner = make_engine(url)
    api = make_engine(as_role(url, API_ROLE))
    app = make_engine(as_role(url, pg_app_role))  # writes as the service and worker do
    try:
        upgrade(owner)
        tenants = [uuid4(), uuid4()]
        with writing(app) as conn:
            for tenant in tenants:
                append_events(conn, events_of(tenant, 2, EventCategory.AUTHENTICATION))
        for n, tenant in enumerate(tenants):
            add_file_destination(app, tenant, Path(f"/tmp/{schema}-{n}.jsonl"))
        with owner.connect() as conn:  # the owner alone, outside the function: nothing
            assert conn.execute(text("SELECT count(*) FROM destinations")).scalar_one() == 0
        with api.connect() as conn:
            found = read_fleet_health(conn, tenant_id=None, now=datetime.now(UTC))
        assert sorted(entry.health.tenant_id for entry in found) == sorted(tenants)
        assert {entry.health.lag_events for entry in found} == {2}
    finally:
        for engine in (app, api, owner):
            engine.dispose()


def test_the_health_page_shows_a_platform_token_every_tenant_on_postgresql(
    pg_store: tuple[Engine, Engine, list[UUID]],
) -> None:
    """Served by the API's role (row-level security in force), the page signed in with a
    platform token and no tenant named lists the destinations of both tenants."""
    owner, api, tenants = pg_store
    with owner.begin() as conn:
        _, token = issue_token(
            conn, tenant_id=None, role=Role.VIEWER, name="ops", now=datetime.now(UTC)
        )
    app = create_app(Settings(), api, keyring=KeyRing.parse(new_key_text()))
    with TestClient(app) as client:
        signed = client.post("/ui/login", data={"token": token}, follow_redirects=False)
        assert signed.status_code == 303
        page = client.get("/ui/")
    assert page.status_code == 200
    for tenant in tenants:
        assert str(tenant) in page.text
    assert "2 destination(s)" in page.text
    assert "one tenant at a time" not in page.text
