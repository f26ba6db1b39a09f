"""Partitions of `audit_events` (PostgreSQL; SQLite keeps one table): migrating a
populated table keeps every event and the read order; ingest makes a missing partition;
ingest stays idempotent, and finds conflicts, across partitions; the change feed's read and
one tenant's day read touch only the partitions they need, with index scans."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, Select, text

from dated_events import events_of
from file_output import add_file_destination
from store_roles import as_role
from xavyo_siem.model import AuditEvent, EventCategory, to_epoch_us
from xavyo_siem.store import append_events, make_engine, upgrade, writing
from xavyo_siem.store import engine as engine_module
from xavyo_siem.store import events as events_module
from xavyo_siem.store import partitions as partitions_module
from xavyo_siem.store.event_rows import EVENT_COLUMNS, row_of
from xavyo_siem.store.events import START, EventCursor, fetch_rows, read_events_after
from xavyo_siem.store.feed import read_feed
from xavyo_siem.store.leases import acquire_leases, heartbeat
from xavyo_siem.store.partitions import DAY_US, MAKE_PARTITIONS, detach_partition, list_partitions
from xavyo_siem.store.scope import scope_to_tenant

A, B = UUID(int=0xA1), UUID(int=0xB2)
COLUMN_NAMES = [column.name for column in EVENT_COLUMNS]


def read_all(engine: Engine, tenant: UUID, *, at_least: int = 0) -> list[AuditEvent]:
    """The tenant's events in store order, once at least `at_least` are final (other
    transactions of the shared cluster can hold the horizon back for a while)."""
    deadline = time.monotonic() + 120
    while True:
        found = _read_all(engine, tenant)
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _read_all(engine: Engine, tenant: UUID) -> list[AuditEvent]:
    found: list[AuditEvent] = []
    cursor = START
    while True:
        with engine.connect() as conn:
            page = read_events_after(conn, tenant_id=tenant, after=cursor, limit=7)
        found += page.events
        if page.cursor == cursor:
            return found
        cursor = page.cursor


def test_migrating_a_populated_table_keeps_every_event_and_the_order(store_url: str) -> None:
    """Events stored before migration 0012 (several transactions, two tenants) are all
    there after it, read in the same order, and events stored after it follow them."""
    owner = make_engine(store_url)
    config = engine_module._alembic_config()
    with writing(owner) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0010")
    names = ", ".join(column.name for column in EVENT_COLUMNS)
    marks = ", ".join(f":{column.name}" for column in EVENT_COLUMNS)
    before = {A: events_of(A, 25), B: events_of(B, 12)}
    for start in range(0, 25, 5):  # a transaction of A's and B's events at a time
        with writing(owner) as conn:
            for tenant, events in before.items():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT set_config('xavyo_siem.tenant', :t, true)"),
                                 {"t": str(tenant)})  # fmt: skip
                for event in events[start : start + 5]:
                    values = dict(
                        zip([c.name for c in EVENT_COLUMNS], row_of(event, {}), strict=True)
                    )
                    conn.execute(
                        text(f"INSERT INTO audit_events ({names}) VALUES ({marks})"), values
                    )
    upgrade(owner)
    assert read_all(owner, A, at_least=25) == before[A]
    assert read_all(owner, B, at_least=12) == before[B]
    after = events_of(A, 3)
    with writing(owner) as conn:
        stored = append_events(conn, before[A][:4] + after)
    assert (stored.stored, stored.duplicates) == (3, 4)  # the old events' keys hold
    assert read_all(owner, A, at_least=28) == before[A] + after
    owner.dispose()


@pytest.fixture
def pg_engines(pg_url: str, pg_app_role: str) -> Iterator[tuple[Engine, Engine]]:
    """A migrated PostgreSQL store: (its owner, the app's login role)."""
    owner = make_engine(pg_url)
    upgrade(owner)
    app = make_engine(as_role(pg_url, pg_app_role))
    yield owner, app
    owner.dispose()
    app.dispose()


def test_ingest_makes_the_partition_it_needs(pg_engines: tuple[Engine, Engine]) -> None:
    """With no partition for now (no worker ran), ingest makes one and stores its events."""
    owner, app = pg_engines
    with owner.connect() as conn:
        partitions = list_partitions(conn)[1:]  # all but the events before 0012
    for partition in partitions:
        assert detach_partition(owner, partition)
    with owner.connect() as conn:
        assert [p.name for p in list_partitions(conn)] == ["audit_events_p0"]
    events = events_of(A, 40)
    with writing(app) as conn:
        assert append_events(conn, events, chunk_size=16).stored == 40
    assert read_all(app, A, at_least=40) == events
    with owner.connect() as conn:
        partitions = list_partitions(conn)
        now_us = int(conn.exec_driver_sql("SELECT extract(epoch FROM now()) * 1e6").scalar_one())
    assert any(p.from_us <= now_us < p.to_us for p in partitions[1:])


def test_ingest_stays_idempotent_and_finds_conflicts_across_partitions(engine: Engine) -> None:
    """An event stored in an older partition, sent again, is a duplicate; sent again with
    other content, a conflict; both backends."""
    first = events_of(A, 3)
    with writing(engine) as conn:
        append_events(conn, first)
    if engine.dialect.name == "postgresql":
        with writing(engine) as conn:  # move them into the partition before migration 0012
            scope_to_tenant(conn, A)
            conn.execute(text("UPDATE audit_events SET received_us = 0 WHERE tenant_id = :t"),
                         {"t": str(A)})  # fmt: skip
            # and their keys with them: a key holds its event's received time
            conn.execute(text("UPDATE audit_event_keys SET received_us = 0"
                              " WHERE tenant_id = CAST(:t AS uuid)"), {"t": str(A)})  # fmt: skip
            assert (
                conn.execute(
                    text("SELECT count(*) FROM audit_events_p0 WHERE tenant_id = :t"), {"t": str(A)}
                ).scalar_one()
                == 3
            )
    changed = AuditEvent(
        event_id=first[1].event_id,
        tenant_id=A,
        timestamp=first[1].timestamp,
        event_type="USER_LOGOUT",
        category=EventCategory.AUTHENTICATION,
    )
    fresh = events_of(A, 2)
    with writing(engine) as conn:
        result = append_events(conn, [first[0], changed, *fresh, first[2]])
    assert (result.stored, result.duplicates) == (2, 2)
    assert result.conflicts == (changed,)
    assert read_all(engine, A, at_least=5) == first + fresh


def wait_until_final(engine: Engine, tenant: UUID, *, after: EventCursor, count: int) -> None:
    """Wait until `count` of the tenant's events after `after` are final (another
    transaction of the shared cluster can hold the horizon back); raises if they never are."""
    deadline = time.monotonic() + 120
    while True:
        with engine.connect() as conn:
            page = read_events_after(conn, tenant_id=tenant, after=after, limit=count)
        if len(page.events) == count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(page.events)} of {count} events final after 120 s")
        time.sleep(0.2)


def explained(plans: list[str]) -> Any:
    def run(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plans.append("\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}")))
        return fetch_rows(conn, statement)

    return run


def test_the_feed_and_a_day_read_touch_only_the_partitions_they_need(
    pg_engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With events received over five days (two tenants), the change feed's read near the
    end of day 5 reads only the partitions from day 5 on (those before are closed below
    its position), a tenant's one-day read only the partitions received from a day before
    that day, and a tenant's catch-up inside a large transaction of day 5 only the
    partitions from day 5 on, merged in index order; each with index scans."""
    owner, app = pg_engines
    with owner.begin() as conn:
        today = int(conn.exec_driver_sql("SELECT extract(epoch FROM now()) * 1e6").scalar_one())
        today -= today % DAY_US
        conn.exec_driver_sql(f"SELECT {MAKE_PARTITIONS}({today + 8 * DAY_US})")
    names = ", ".join(column.name for column in EVENT_COLUMNS)
    marks = ", ".join(f":{column.name}" for column in EVENT_COLUMNS)
    for day in range(1, 6):  # days 1..5 ahead: each received then, stamped that day
        stamp = datetime.fromtimestamp((today + day * DAY_US) / 1e6, UTC)
        for tenant, count in ((A, 200), (B, 3000)):  # A: a small share of each day
            with writing(owner) as conn:
                scope_to_tenant(conn, tenant)
                conn.execute(
                    text(f"INSERT INTO audit_events (received_us, {names})"
                         f" VALUES ({to_epoch_us(stamp) + 60_000_000}, {marks})"),
                    [dict(zip(COLUMN_NAMES, row_of(event, {}), strict=True))
                     for event in events_of(tenant, count, at=stamp)],
                )  # fmt: skip
    with owner.begin() as conn:
        conn.exec_driver_sql("ANALYZE audit_events")
        # Up to day 3 closed: each stamped with a ceiling above its rows' transactions.
        conn.exec_driver_sql(
            "UPDATE audit_partitions p SET txid_ceiling = coalesce((SELECT max(txid) + 1"
            " FROM audit_events a WHERE a.received_us >= p.from_us"
            " AND a.received_us < p.to_us), 1) WHERE p.to_us <= %s AND p.from_us >= 0",
            (today + 5 * DAY_US,),
        )
        # The feed is near the end of day 5 (100 events from the last).
        position = conn.exec_driver_sql(
            "SELECT txid, seq FROM audit_events ORDER BY txid DESC, seq DESC OFFSET 100 LIMIT 1"
        ).one()
        name = {p.from_us: p.name for p in list_partitions(conn)}
    add_file_destination(app, A, tmp_path / "a.jsonl")  # so that w1 serves A
    with writing(app) as conn:
        heartbeat(conn, owner="w1", ttl=timedelta(seconds=30), now=datetime.now(UTC))
        acquire_leases(conn, owner="w1", limit=1, ttl=timedelta(seconds=30), now=datetime.now(UTC))
    # B's catch-up from the middle of its day-5 transaction (3,000 events, one txid).
    with owner.connect() as conn:
        middle = conn.exec_driver_sql(
            "SELECT txid, seq FROM audit_events WHERE tenant_id = %s"
            " ORDER BY txid DESC, seq DESC OFFSET 1500 LIMIT 1",
            (str(B),),
        ).one()
    wait_until_final(app, B, after=EventCursor(*middle), count=100)
    plans: list[str] = []
    monkeypatch.setattr(events_module, "fetch_rows", explained(plans))
    with app.connect() as conn:
        read_feed(conn, owner="w1", after=EventCursor(*position), limit=100)
    with app.connect() as conn:
        day4 = datetime.fromtimestamp((today + 4 * DAY_US) / 1e6, UTC)
        events_module.read_events_in_range(
            conn, tenant_id=A, start=day4, end=day4 + timedelta(days=1), limit=100
        )
    with app.connect() as conn:
        read_events_after(conn, tenant_id=B, after=EventCursor(*middle), limit=100)
    feed_plan, day_plan, catch_up_plan = plans
    for day in (1, 2, 3, 4):
        assert name[today + day * DAY_US] not in feed_plan
    assert "audit_events_p0 " not in feed_plan
    assert f"_txid_seq_idx on {name[today + 5 * DAY_US]}" in feed_plan
    for day in (1, 2):
        assert name[today + day * DAY_US] not in day_plan
    assert "audit_events_p0 " not in day_plan
    for day in (3, 4):  # the partitions holding events: read through a tenant index
        assert f"using {name[today + day * DAY_US]}_tenant_id_" in day_plan.replace(
            "Bitmap Index Scan on", "using"
        )
        assert f"Seq Scan on {name[today + day * DAY_US]} " not in day_plan
    # The catch-up reads day 5 on (day 4 is closed below its position) in index order,
    # merging the partitions: no sort of the 1,500 rows left for one page of 100.
    for day in (1, 2, 3, 4):
        assert name[today + day * DAY_US] not in catch_up_plan
    assert "Merge Append" in catch_up_plan
    assert f"_tenant_id_txid_seq_idx on {name[today + 5 * DAY_US]}" in catch_up_plan
    assert not [line for line in catch_up_plan.splitlines() if "Sort  (" in line]
    # The horizon and the floor are read in the page's own statement.
    assert "pg_current_snapshot()" in catch_up_plan
    assert "audit_partitions" in catch_up_plan


def test_a_stale_guess_of_the_floor_costs_a_second_read_never_an_event(
    pg_engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that believes the partitions holding a tenant's new events are closed
    below its position (its guess of the floor lies past them) reads the page again from
    the floor its statement saw, returns every event, and learns the partitions anew."""
    _, app = pg_engines
    events = events_of(A, 12)
    with writing(app) as conn:
        append_events(conn, events, tenant_id=A)
    assert read_all(app, A, at_least=12) == events
    pages: list[str] = []
    real_fetch_rows = events_module.fetch_rows

    def counted(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
        pages.append(str(statement))
        return real_fetch_rows(conn, statement)

    monkeypatch.setattr(events_module, "fetch_rows", counted)
    with app.connect() as conn:
        # As if every partition but one far ahead were stamped below any position.
        conn.info[partitions_module._CEILINGS] = [(-(1 << 63), 0), (1 << 61, None)]
        page = read_events_after(conn, tenant_id=A, after=START, limit=100)
        assert page.events == events
        assert len(pages) == 2  # the guess was too high: read again from the true floor
        assert partitions_module._CEILINGS not in conn.info  # the partitions are read anew
        pages.clear()
        read_events_after(conn, tenant_id=A, after=START, limit=100)
        read_events_after(conn, tenant_id=A, after=START, limit=100)
        assert len(pages) == 2  # one statement a page again
