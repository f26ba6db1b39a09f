"""The audit store on SQLite and PostgreSQL: idempotent appends, tenant-scoped ordered reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy import event as sqlalchemy_event

from file_output import add_file_destination
from store_final import wait_until_final
from store_roles import owner_connection
from xavyo_siem.errors import TenantRequired
from xavyo_siem.model import FIELD_NAMES, AuditEvent, EventCategory, EventFilter
from xavyo_siem.sample import generate_events, tenant_ids
from xavyo_siem.store import (
    START,
    EventCursor,
    append_events,
    head_cursor,
    make_engine,
    read_events_after,
    read_events_in_range,
    upgrade,
    writing,
)
from xavyo_siem.store import events as events_module
from xavyo_siem.store.engine import LARGE_PAGE_CACHE, SMALL_PAGE_CACHE
from xavyo_siem.store.feed import read_feed
from xavyo_siem.store.leases import acquire_leases, heartbeat
from xavyo_siem.store.tables import EVENT_COLUMN_NAMES
from xavyo_siem.store.tables import audit_events as audit_events_table

from strategies import audit_events, hostile_event_dicts


def read_all(engine: Engine, tenant: UUID, *, limit: int = 7, filter: EventFilter = EventFilter()
             ) -> list[AuditEvent]:  # fmt: skip
    found: list[AuditEvent] = []
    cursor = START
    while True:
        with engine.connect() as conn:
            page = read_events_after(
                conn, tenant_id=tenant, after=cursor, limit=limit, filter=filter
            )
        found += page.events
        if page.cursor == cursor:
            return found
        cursor = page.cursor


def read_final(engine: Engine, tenant: UUID, *, count: int) -> list[AuditEvent]:
    """The tenant's events once `count` of them are final (another transaction of the
    shared cluster can hold the horizon back for a while); raises if they never are."""
    deadline = time.monotonic() + 120
    while (found := read_all(engine, tenant, limit=1000)) and len(found) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} events final after 120 s")
        time.sleep(0.2)
    return found


def test_appending_the_same_events_twice_stores_each_once(engine: Engine) -> None:
    """A second append of the same events stores nothing and counts them all as duplicates."""
    events = list(generate_events(50, 2, seed=1))
    with engine.begin() as conn:
        first = append_events(conn, events)
    with engine.begin() as conn:
        second = append_events(conn, events[:30] + list(generate_events(60, 2, seed=1))[50:])
    assert (first.stored, first.duplicates) == (50, 0)
    assert (second.stored, second.duplicates) == (10, 30)


def test_sqlite_ingest_takes_a_large_page_cache_only_while_it_writes(tmp_path: Path) -> None:
    """On SQLite a connection reads with the small page cache, ingest sets the large one
    while its rows go in (seen from inside the events it is given), and the small one is
    set again after, also when the events raise midway (the error comes through as it was)."""
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(engine)
    seen: list[int] = []

    def cache_size(conn: Connection) -> int:
        return int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())

    def events(conn: Connection, *, fail_after: int | None = None) -> Iterator[AuditEvent]:
        for number, event in enumerate(generate_events(20, 1, seed=5)):
            if number == fail_after:
                raise ValueError("a bad line")
            seen.append(cache_size(conn))
            yield event

    with writing(engine) as conn:
        seen.append(cache_size(conn))
        assert append_events(conn, events(conn)).stored == 20
        seen.append(cache_size(conn))
    with engine.connect() as conn:
        seen.append(cache_size(conn))
    assert seen == [SMALL_PAGE_CACHE] + [LARGE_PAGE_CACHE] * 20 + [SMALL_PAGE_CACHE] * 2
    assert LARGE_PAGE_CACHE < SMALL_PAGE_CACHE < 0  # sizes in KiB, the large one larger
    seen.clear()
    with writing(engine) as conn:
        with pytest.raises(ValueError, match="a bad line"):
            append_events(conn, events(conn, fail_after=3))
        seen.append(cache_size(conn))
        conn.rollback()
    assert seen == [LARGE_PAGE_CACHE] * 3 + [SMALL_PAGE_CACHE]
    engine.dispose()


def test_duplicates_within_one_append_are_stored_once(engine: Engine) -> None:
    """An input that repeats an event stores it once and reports the repeat."""
    event = next(generate_events(1, 1, seed=2))
    with engine.begin() as conn:
        result = append_events(conn, [event, event, event])
    assert (result.stored, result.duplicates) == (1, 2)


def test_same_event_id_in_two_tenants_is_two_events(engine: Engine) -> None:
    """Idempotency is per (tenant, event id): another tenant may reuse an id."""
    event = next(generate_events(1, 1, seed=3))
    other = replace(event, tenant_id=uuid4())
    with engine.begin() as conn:
        result = append_events(conn, [event, other])
    assert result.stored == 2


def test_the_event_columns_made_from_the_model_are_those_the_migrations_create(
    engine: Engine,
) -> None:
    """The columns tables.py makes from the field declaration have the migrated table's names,
    types and nullability, one per field in declaration order."""
    migrated = {column["name"]: column for column in inspect(engine).get_columns("audit_events")}
    assert tuple("ts_us" if n == "timestamp" else n for n in FIELD_NAMES) == EVENT_COLUMN_NAMES
    assert set(migrated) == {"seq", "txid", "received_us", *EVENT_COLUMN_NAMES}
    for name in EVENT_COLUMN_NAMES:
        declared = audit_events_table.c[name]
        assert migrated[name]["nullable"] == declared.nullable, name
        assert migrated[name]["type"].compile(dialect=engine.dialect) == declared.type.compile(
            dialect=engine.dialect
        ), name


def test_reads_return_one_tenants_events_in_store_order(engine: Engine) -> None:
    """Paging through a tenant returns exactly its events, in insertion order, none twice."""
    events = list(generate_events(200, 3, seed=4))
    with engine.begin() as conn:
        append_events(conn, events)
    wait_until_final(engine)
    for tenant in tenant_ids(3, seed=4):
        assert read_all(engine, tenant) == [e for e in events if e.tenant_id == tenant]


def test_reading_without_a_tenant_is_refused(engine: Engine) -> None:
    """No function reads events without a tenant."""
    with engine.connect() as conn, pytest.raises(TenantRequired):
        read_events_after(conn, tenant_id=None)  # type: ignore[arg-type]
    with engine.connect() as conn, pytest.raises(TenantRequired):
        read_events_in_range(conn, tenant_id=None)  # type: ignore[arg-type]


def test_filter_selects_in_sql_and_cursor_moves_past_skipped_rows(engine: Engine) -> None:
    """A filtered read returns exactly the matching events, and its cursor ends past the rest."""
    events = list(generate_events(300, 1, seed=5))
    tenant = events[0].tenant_id
    with engine.begin() as conn:
        append_events(conn, events)
    wait_until_final(engine)
    wanted = EventFilter(
        categories=frozenset({EventCategory.AUTHENTICATION, EventCategory.SECURITY}),
        event_types=frozenset({"AUTH_FAILURE", "MFA_ENROLLED", "USER_CREATED"}),
        min_severity=4,
    )
    assert read_all(engine, tenant, filter=wanted) == [e for e in events if wanted.matches(e)]
    with engine.connect() as conn:
        page = read_events_after(conn, tenant_id=tenant, limit=1000, filter=wanted)
        assert page.cursor == head_cursor(conn, tenant_id=tenant)


def test_a_filtered_read_never_moves_past_events_committed_while_it_reads(engine: Engine) -> None:
    """Events committed by another connection between a filtered read's page and its move
    past skipped rows are not passed over: the next read returns them."""
    first, later = (list(generate_events(50, 1, seed=seed)) for seed in (6, 7))
    tenant = first[0].tenant_id
    later = [replace(event, tenant_id=tenant) for event in later]
    with engine.begin() as conn:
        append_events(conn, first)
    wait_until_final(engine)
    wanted = EventFilter(categories=frozenset(EventCategory))  # every event, but filtered
    with engine.connect() as conn:
        committed: list[bool] = []

        def commit_more(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            # The move past skipped rows looks for the tenant's last row (ORDER BY … DESC).
            if not committed and "DESC" in statement:
                committed.append(True)
                with engine.begin() as other:
                    append_events(other, later)

        sqlalchemy_event.listen(conn, "before_cursor_execute", commit_more)
        page = read_events_after(conn, tenant_id=tenant, limit=1000, filter=wanted)
        sqlalchemy_event.remove(conn, "before_cursor_execute", commit_more)
    assert committed
    wait_until_final(engine)
    with engine.connect() as conn:
        after = read_events_after(conn, tenant_id=tenant, after=page.cursor, filter=wanted)
    assert after.events == later


def test_head_cursor_starts_after_existing_events(engine: Engine) -> None:
    """A reader starting at the head sees only events stored afterwards."""
    events = list(generate_events(20, 1, seed=6))
    tenant = events[0].tenant_id
    with engine.begin() as conn:
        append_events(conn, events[:10])
    wait_until_final(engine)
    with engine.connect() as conn:
        head = head_cursor(conn, tenant_id=tenant)
    with engine.begin() as conn:
        append_events(conn, events[10:])
    wait_until_final(engine)
    with engine.connect() as conn:
        page = read_events_after(conn, tenant_id=tenant, after=head, limit=100)
    assert page.events == events[10:]


def test_time_range_is_start_inclusive_end_exclusive(engine: Engine) -> None:
    """Events exactly at the start are included and exactly at the end are not."""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    template = next(generate_events(1, 1, seed=7))
    events = [
        replace(template, event_id=uuid4(), timestamp=base + timedelta(microseconds=offset))
        for offset in (-1, 0, 1, 999_999, 1_000_000)
    ]
    with engine.begin() as conn:
        append_events(conn, events)
        found, key = read_events_in_range(
            conn, tenant_id=template.tenant_id, start=base, end=base + timedelta(seconds=1)
        )
    assert found == events[1:4]
    assert key is not None


def test_time_range_pages_continue_from_the_key(engine: Engine) -> None:
    """Reading a range in small pages gives the same events as one big read."""
    events = list(generate_events(100, 2, seed=8))
    tenant = events[0].tenant_id
    with engine.begin() as conn:
        append_events(conn, events)
    found: list[AuditEvent] = []
    key = None
    with engine.connect() as conn:
        while True:
            page, next_key = read_events_in_range(conn, tenant_id=tenant, after=key, limit=9)
            if not page:
                break
            found += page
            key = next_key
    expected = sorted((e for e in events if e.tenant_id == tenant), key=lambda e: e.timestamp)
    assert found == expected


def test_time_range_read_uses_the_tenant_time_index(engine: Engine) -> None:
    """The query plan for a tenant's time range uses the (tenant, time) index, not a scan
    of the events (on PostgreSQL, under the row-level security policies)."""
    events = list(generate_events(3000, 3, seed=9))
    with engine.begin() as conn:
        append_events(conn, events)
    tenant = str(events[0].tenant_id)
    sql = (
        f"SELECT event_id FROM audit_events WHERE tenant_id = '{tenant}' AND ts_us >= 0 "
        "AND ts_us < 9000000000000000 ORDER BY ts_us, seq LIMIT 100"
    )
    if engine.dialect.name == "postgresql":
        with owner_connection(engine) as conn:
            conn.execute(text("ANALYZE audit_events"))  # the owner's right
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + sql)))
        else:
            plan = "\n".join(
                str(row[-1]) for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql))
            )
    assert "ix_audit_events_tenant_time" in plan
    assert "Seq Scan on audit_events" not in plan
    assert "SCAN audit_events\n" not in plan + "\n"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(audit_events(), min_size=1, max_size=8, unique_by=lambda e: e.event_id))
def test_any_valid_event_survives_a_store_round_trip(
    engine: Engine, events: list[AuditEvent]
) -> None:
    """Whatever valid events are stored, reading them back gives equal events."""
    tenant = uuid4()
    events = [replace(e, tenant_id=tenant) for e in events]
    with engine.begin() as conn:
        append_events(conn, events)
    wait_until_final(engine)
    assert read_all(engine, tenant, limit=3) == events


def test_transaction_that_commits_late_is_not_skipped(engine: Engine) -> None:
    """An event inserted by a transaction that commits after a later one is still read, once.

    Writer A inserts and holds its transaction open; writer B inserts afterwards and commits
    (on SQLite B waits for A's lock). A reader polls throughout and the union of what it read
    must be every event exactly once, with A's event not skipped.
    """
    a_event, b_event, c_event = generate_events(3, 1, seed=10)
    tenant = a_event.tenant_id
    read: list[AuditEvent] = []
    cursor = START

    def poll() -> None:
        nonlocal cursor
        with engine.connect() as conn:
            page = read_events_after(conn, tenant_id=tenant, after=cursor, limit=100)
        read.extend(page.events)
        cursor = page.cursor

    with engine.begin() as conn:
        append_events(conn, [c_event])  # something already there
    poll()
    a_conn = engine.connect()
    a_tx = a_conn.begin()
    if engine.dialect.name == "postgresql":
        a_conn.execute(text("SELECT pg_current_xact_id()"))  # A takes its xid first
    append_events(a_conn, [a_event])
    b_done = threading.Event()

    def writer_b() -> None:
        with engine.begin() as conn:
            append_events(conn, [b_event])
        b_done.set()

    b_thread = threading.Thread(target=writer_b)
    b_thread.start()
    if engine.dialect.name == "postgresql":
        assert b_done.wait(10), "B should commit while A is open on PostgreSQL"
    poll()  # B is committed (PostgreSQL) but must not be handed out before A is final
    assert a_event not in read
    if engine.dialect.name == "postgresql":
        assert b_event not in read, "reading B before A commits would let A be skipped"
    a_tx.commit()
    a_conn.close()
    b_thread.join(10)
    poll()
    poll()
    assert sorted(map(str, (e.event_id for e in read))) == sorted(
        str(e.event_id) for e in (a_event, b_event, c_event)
    )
    assert len(read) == 3


def test_many_concurrent_writers_never_make_a_reader_skip(engine: Engine) -> None:
    """With writers committing in random order while a reader polls, nothing is lost or doubled."""
    tenant = uuid4()
    batches = [
        [replace(e, tenant_id=tenant) for e in generate_events(20, 1, seed=100 + i)]
        for i in range(8)
    ]
    stop = threading.Event()
    read: list[AuditEvent] = []

    def reader() -> None:
        cursor: EventCursor = START
        while True:
            finished = stop.is_set()
            with engine.connect() as conn:
                page = read_events_after(conn, tenant_id=tenant, after=cursor, limit=13)
            read.extend(page.events)
            cursor = page.cursor
            if finished and not page.events:
                return

    def writer(batch: list[AuditEvent]) -> None:
        for event in batch:
            with engine.begin() as conn:
                append_events(conn, [event])

    reader_thread = threading.Thread(target=reader)
    reader_thread.start()
    writers = [threading.Thread(target=writer, args=(batch,)) for batch in batches]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader_thread.join(30)
    expected = {e.event_id for batch in batches for e in batch}
    assert len(read) == len(expected)
    assert {e.event_id for e in read} == expected


def test_a_transaction_that_reads_then_writes_survives_a_writer_in_between(
    engine: Engine,
) -> None:
    """A writing transaction that reads, then writes after another connection tried to
    commit a write, succeeds, and so does the other writer: neither fails with "database is
    locked" (SQLite in WAL mode cannot upgrade a deferred reader whose snapshot went stale)."""
    first, second = list(generate_events(2, 1, seed=5))
    read_done = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        read_done.wait(10)
        try:
            with writing(engine) as conn:
                append_events(conn, [second])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=other_writer)
    thread.start()
    with writing(engine) as conn:
        before = read_all_in(conn, first.tenant_id)
        read_done.set()
        thread.join(0.3)  # the other writer commits here unless this transaction holds it off
        result = append_events(conn, [first])
    thread.join(30)
    assert errors == []
    assert before == []
    assert result.stored == 1
    assert {e.event_id for e in read_all(engine, first.tenant_id)} == {
        first.event_id,
        second.event_id,
    }


def read_all_in(conn: Connection, tenant: UUID) -> list[AuditEvent]:
    return read_events_after(conn, tenant_id=tenant, after=START, limit=100).events


def test_a_read_never_waits_for_a_writer(engine: Engine) -> None:
    """While a writing transaction is open (and holds SQLite's write lock), a read on
    another connection answers at once with what was committed before it."""
    first, second = list(generate_events(2, 1, seed=6))
    with writing(engine) as conn:
        append_events(conn, [first])
    wait_until_final(engine)
    done: list[list[AuditEvent]] = []
    with writing(engine) as conn:
        append_events(conn, [second])
        reader = threading.Thread(target=lambda: done.append(read_all(engine, first.tenant_id)))
        reader.start()
        reader.join(10)  # a reader queued behind the lock would still be waiting here
        assert not reader.is_alive()
    assert [e.event_id for e in done[0]] == [first.event_id]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(hostile_event_dicts(), min_size=1, max_size=6, unique_by=lambda d: d["event_id"]))
def test_normalised_events_survive_a_store_round_trip(
    engine: Engine, items: list[dict[str, object]]
) -> None:
    """Events built from hostile input are stored and read back equal, `normalized` and
    `source_address` included; appending them again finds duplicates, not conflicts."""
    tenant = uuid4()
    events = [AuditEvent.from_dict({**item, "tenant_id": str(tenant)}) for item in items]
    with engine.begin() as conn:
        assert append_events(conn, events).stored == len(events)
    with engine.begin() as conn:
        again = append_events(conn, events)
    assert (again.duplicates, again.conflicts) == (len(events), ())
    wait_until_final(engine)
    assert sorted(read_all(engine, tenant), key=lambda e: e.event_id) == sorted(
        events, key=lambda e: e.event_id
    )


def test_an_id_stored_with_other_content_is_returned_as_a_conflict(engine: Engine) -> None:
    """Appending an event whose id is stored with different content skips it and returns it
    as a conflict (the stored event stays); the same content is a duplicate."""
    events = list(generate_events(4, 1, seed=21))
    with engine.begin() as conn:
        append_events(conn, events, tenant_id=events[0].tenant_id)
    edited = replace(events[2], reason="edited")
    with engine.begin() as conn:  # for the platform: compared within the event's tenant
        result = append_events(conn, [events[1], edited, events[3]])
    assert (result.stored, result.duplicates, result.conflicts) == (0, 2, (edited,))
    wait_until_final(engine)
    assert read_all(engine, events[0].tenant_id)[2] == events[2]


def test_a_page_is_one_statement_on_either_backend(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Once a connection knows the partitions, each full page of a tenant's read and of the
    change feed is one statement: on PostgreSQL the horizon and the partitions' floor are
    read in the page's own statement."""
    events = list(generate_events(30, 1, seed=3))
    tenant = events[0].tenant_id
    with writing(engine) as conn:
        append_events(conn, events, tenant_id=tenant)
    read_final(engine, tenant, count=30)
    statements: list[str] = []
    sqlalchemy_event.listen(
        engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    real_fetch_rows = events_module.fetch_rows

    def counted(conn: Connection, statement: object) -> object:  # the raw cursor's path
        statements.append(str(statement))
        return real_fetch_rows(conn, statement)  # type: ignore[arg-type]

    monkeypatch.setattr(events_module, "fetch_rows", counted)
    with engine.connect() as conn:
        read_events_after(conn, tenant_id=tenant, limit=1)  # learns the partitions
        cursor, per_page = START, []
        for _ in range(3):
            statements.clear()
            page = read_events_after(conn, tenant_id=tenant, after=cursor, limit=10)
            per_page.append(len(statements))
            assert len(page.events) == 10
            cursor = page.cursor
    assert per_page == [1, 1, 1]
    add_file_destination(engine, tenant, tmp_path / "out.jsonl")
    now = datetime.now(UTC)
    with writing(engine) as conn:
        heartbeat(conn, owner="w1", ttl=timedelta(seconds=30), now=now)
        acquire_leases(conn, owner="w1", limit=1, ttl=timedelta(seconds=30), now=now)
    with engine.connect() as conn:
        read_feed(conn, owner="w1", after=START, limit=1)
        statements.clear()
        page = read_feed(conn, owner="w1", after=START, limit=10)
    assert page.count == 10
    assert len(statements) == 1
