"""The event keys: ingest numbers events in input order whatever it skips; on PostgreSQL a
key says where its event is, a read by id goes through it to one partition, and a store
migrated from before the keys held positions gets them (both backends where it applies)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, Select, select, text
from sqlalchemy.engine import make_url

from dated_events import NOW, events_of
from store_roles import OWNER_ROLE, as_role, make_owner_role
from xavyo_siem.model import AuditEvent, EventCategory, to_epoch_us
from xavyo_siem.store import append_events, make_engine, upgrade, writing
from xavyo_siem.store import engine as engine_module
from xavyo_siem.store import events as events_module
from xavyo_siem.store.event_rows import EVENT_COLUMNS, row_of
from xavyo_siem.store.events import fetch_rows, read_events_by_id
from xavyo_siem.store.partitions import DAY_US, MAKE_PARTITIONS, list_partitions
from xavyo_siem.store.scope import scope_to_tenant
from xavyo_siem.store.tables import audit_events

A, B = UUID(int=0xA1), UUID(int=0xB2)
COLUMN_NAMES = [column.name for column in EVENT_COLUMNS]
BEFORE_KEYS_HELD_POSITIONS = "0014_detached_partitions"
BEFORE_PARTITIONS = "0011_sources"
_T = audit_events.c


def migrate(owner: Engine, revision: str, *, down: bool = False) -> None:
    """Upgrade (or, with `down`, downgrade) the store of `owner` to `revision`."""
    config = engine_module._alembic_config()
    with writing(owner) as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def insert_rows(conn: Connection, events: list[AuditEvent], *, received_us: int | None) -> None:
    """`events` as rows of `audit_events`, written directly (no key, no ingest), received at
    `received_us` (None: a store before partitioning, which has no such column)."""
    names = ", ".join(COLUMN_NAMES)
    marks = ", ".join(f":{name}" for name in COLUMN_NAMES)
    received = ("", "") if received_us is None else ("received_us, ", f"{received_us}, ")
    conn.execute(
        text(f"INSERT INTO audit_events ({received[0]}{names}) VALUES ({received[1]}{marks})"),
        [dict(zip(COLUMN_NAMES, row_of(event, {}), strict=True)) for event in events],
    )


def store_as_before(conn: Connection, tenant: UUID, events: list[AuditEvent]) -> None:
    """`events` of `tenant`, received at 5, with their keys on PostgreSQL, as a store
    before revision 0015 held them (ids as text, no positions)."""
    insert_rows(conn, events, received_us=5)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "INSERT INTO audit_event_keys (tenant_id, event_id, received_us)"
            " SELECT tenant_id, event_id, received_us FROM audit_events WHERE tenant_id = %s",
            (str(tenant),),
        )


def positions(conn: Connection, tenant: UUID) -> dict[UUID, tuple[int, int, int]]:
    """The tenant's events: event id -> (txid, seq, received_us)."""
    scope_to_tenant(conn, tenant)
    rows = conn.execute(
        select(_T.event_id, _T.txid, _T.seq, _T.received_us).where(_T.tenant_id == str(tenant))
    )
    return {UUID(ident): (int(txid), int(seq), int(us)) for ident, txid, seq, us in rows}


def key_positions(conn: Connection, tenant: UUID) -> dict[UUID, tuple[int, int, int]]:
    """The tenant's keys (PostgreSQL): event id -> (txid, seq, received_us)."""
    scope_to_tenant(conn, tenant)
    rows = conn.exec_driver_sql(
        "SELECT event_id::text, txid, seq, received_us FROM audit_event_keys"
        " WHERE tenant_id = %s::uuid",
        (str(tenant),),
    )
    return {UUID(ident): (int(txid), int(seq), int(us)) for ident, txid, seq, us in rows}


def test_seq_follows_the_input_order_across_duplicates_and_conflicts(engine: Engine) -> None:
    """Chunks mixing new events with events stored before, a repeat within the chunk and a
    conflict store the new events with `seq` increasing in input order after the events
    stored before; on PostgreSQL each key holds its event's position and received time."""
    stored = events_of(A, 3)
    with writing(engine) as conn:
        append_events(conn, stored, tenant_id=A)
    fresh = events_of(A, 5, at=NOW + timedelta(hours=1))
    changed = AuditEvent(
        event_id=stored[1].event_id,
        tenant_id=A,
        timestamp=stored[1].timestamp,
        event_type="USER_LOGOUT",
        category=EventCategory.AUTHENTICATION,
    )
    chunk = [fresh[0], stored[0], fresh[1], fresh[1], changed, fresh[2], stored[2], fresh[3]]
    with writing(engine) as conn:
        result = append_events(conn, [*chunk, fresh[4]], tenant_id=A, chunk_size=4)
    assert (result.stored, result.duplicates, result.conflicts) == (5, 3, (changed,))
    with engine.connect() as conn:
        found = positions(conn, A)
        by_seq = sorted(found, key=lambda ident: found[ident][1])
        assert by_seq == [e.event_id for e in stored + fresh]
        assert read_events_by_id(conn, tenant_id=A, event_ids=list(found)) == stored + fresh
        if engine.dialect.name == "postgresql":
            assert key_positions(conn, A) == found


@pytest.fixture
def pg_owner(pg_url: str) -> Iterator[Engine]:
    """A migrated PostgreSQL store, as its owner."""
    owner = make_engine(pg_url)
    upgrade(owner)
    yield owner
    owner.dispose()


def explained_analyze(plans: list[str]) -> Any:
    def run(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plans.append(
            "\n".join(
                row[0]
                for row in conn.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {compiled}"
                )
            )
        )
        return fetch_rows(conn, statement)

    return run


def test_a_read_by_id_goes_from_the_key_to_one_partition_by_index(
    pg_url: str, pg_owner: Engine, pg_app_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With events received over four days, a tenant's read by id (PostgreSQL) finds the
    keys through their primary key and each event through the `(tenant_id, txid, seq)`
    index of the one partition its received time names; no other partition is read."""
    with pg_owner.begin() as conn:
        today = int(conn.exec_driver_sql("SELECT extract(epoch FROM now()) * 1e6").scalar_one())
        today -= today % DAY_US
        conn.exec_driver_sql(f"SELECT {MAKE_PARTITIONS}({today + 6 * DAY_US})")
    wanted: list[AuditEvent] = []
    for day in range(1, 5):
        stamp = datetime.fromtimestamp((today + day * DAY_US) / 1e6, UTC)
        for tenant, count in ((A, 40), (B, 2000)):
            batch = events_of(tenant, count, at=stamp)
            if tenant == A and day == 3:
                wanted = batch[10:13]
            with writing(pg_owner) as conn:
                scope_to_tenant(conn, tenant)
                insert_rows(conn, batch, received_us=to_epoch_us(stamp) + 60_000_000)
    with pg_owner.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_event_keys (tenant_id, event_id, received_us, txid, seq)"
            " SELECT tenant_id::uuid, event_id::uuid, received_us, txid, seq FROM audit_events"
        )
        conn.exec_driver_sql("ANALYZE audit_events")
        conn.exec_driver_sql("ANALYZE audit_event_keys")
        name = {p.from_us: p.name for p in list_partitions(conn)}
    plans: list[str] = []
    monkeypatch.setattr(events_module, "fetch_rows", explained_analyze(plans))
    app = make_engine(as_role(pg_url, pg_app_role))
    try:
        with app.connect() as conn:
            found = read_events_by_id(conn, tenant_id=A, event_ids=[e.event_id for e in wanted])
    finally:
        app.dispose()
    assert found == wanted
    (plan,) = plans
    assert "Index Scan using audit_event_keys_pkey on audit_event_keys" in plan
    day3 = name[today + 3 * DAY_US]
    assert f"Index Scan using {day3}_tenant_id_txid_seq_idx on {day3}" in plan
    assert "Seq Scan on audit_event_keys" not in plan
    others = [n for n in name.values() if n != day3]
    for line in plan.splitlines():
        if any(f" on {other} " in line or line.endswith(f" on {other}") for other in others):
            assert "never executed" in line, line


def test_an_existing_store_keys_learn_where_their_events_are(store_url: str) -> None:
    """Events and keys stored before the keys held positions are read by id after the
    upgrade; on PostgreSQL their keys hold their events' positions (a key whose event is
    gone: (0, 0)) and still make a repeat a duplicate, the keys' ids are `uuid`, the
    events' index by id is gone, and a downgrade and a second upgrade bring both back
    and forth with the events read by id again."""
    owner = make_engine(store_url)
    postgres = owner.dialect.name == "postgresql"
    migrate(owner, BEFORE_KEYS_HELD_POSITIONS)
    before = {A: events_of(A, 4), B: events_of(B, 2)}
    gone = events_of(A, 1)[0]  # its key stays, its event was removed
    for tenant, events in before.items():
        with writing(owner) as conn:
            if postgres:
                conn.execute(text("SELECT set_config('xavyo_siem.tenant', :t, true)"),
                             {"t": str(tenant)})  # fmt: skip
            store_as_before(conn, tenant, events)
    if postgres:
        with writing(owner) as conn:
            conn.exec_driver_sql(
                "INSERT INTO audit_event_keys (tenant_id, event_id, received_us)"
                " VALUES (%s, %s, 5)",
                (str(A), str(gone.event_id)),
            )
    upgrade(owner)

    def check_reads() -> None:
        with owner.connect() as conn:
            for tenant, events in before.items():
                ids = [e.event_id for e in events]
                assert read_events_by_id(conn, tenant_id=tenant, event_ids=ids) == events
                if postgres:
                    keys = key_positions(conn, tenant)
                    if tenant == A:
                        assert keys.pop(gone.event_id) == (0, 0, 5)
                    assert keys == positions(conn, tenant)

    check_reads()
    fresh = events_of(A, 1, at=NOW + timedelta(days=1))
    with writing(owner) as conn:
        again = append_events(conn, [*before[A][:2], gone, *fresh])
    # SQLite's key table is empty: there the event whose key alone stayed is new.
    added = fresh if postgres else [gone, *fresh]
    assert (again.stored, again.duplicates, again.conflicts) == (len(added), 4 - len(added), ())
    before[A] += added
    check_reads()
    if postgres:
        with owner.connect() as conn:
            assert _key_types(conn) == {"uuid"}
            assert not _has_index_by_id(conn)
        migrate(owner, BEFORE_KEYS_HELD_POSITIONS, down=True)
        with owner.connect() as conn:
            assert _key_types(conn) == {"character varying"}
            assert _has_index_by_id(conn)
            assert {
                row[0]
                for row in conn.exec_driver_sql(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'audit_event_keys' AND table_schema = current_schema()"
                )
            } == {"tenant_id", "event_id", "received_us"}
        upgrade(owner)
        check_reads()
    owner.dispose()


def _key_types(conn: Connection) -> set[str]:
    return {
        row[0]
        for row in conn.exec_driver_sql(
            "SELECT data_type FROM information_schema.columns WHERE table_name ="
            " 'audit_event_keys' AND table_schema = current_schema()"
            " AND column_name IN ('tenant_id', 'event_id')"
        )
    }


def _has_index_by_id(conn: Connection) -> bool:
    return (
        conn.exec_driver_sql("SELECT to_regclass('ix_audit_events_tenant_event')").scalar()
        is not None
    )


def as_superuser(pg_url: str, statement: str) -> None:
    """Run `statement` on the store of `pg_url` as the superuser (policies do not bind)."""
    superuser = make_engine(pg_url)
    with superuser.begin() as conn:
        conn.exec_driver_sql(statement)
    superuser.dispose()


def owned_by_no_superuser(pg_url: str) -> Engine:
    """An engine of a store whose schema `OWNER_ROLE` owns (see `make_owner_role`)."""
    schema = str(make_url(pg_url).query["options"]).split("=")[-1]
    make_owner_role(str(make_url(pg_url).database))
    as_superuser(pg_url, f"ALTER SCHEMA {schema} OWNER TO {OWNER_ROLE}")
    return make_engine(as_role(pg_url, OWNER_ROLE))


def stored_before_partitions(owner: Engine, events: list[AuditEvent]) -> None:
    """`events` of tenant A stored as a store before partitioning held them."""
    with writing(owner) as conn:
        scope_to_tenant(conn, A)
        insert_rows(conn, events, received_us=None)


def test_an_owner_that_is_no_superuser_migrates_the_keys_with_their_positions(
    pg_url: str, pg_app_role: str
) -> None:
    """Migrated by an owner that is no superuser (the forced policies bind it), the keys
    keep every event's position and no key is lost; the policies are forced again after."""
    owner = owned_by_no_superuser(pg_url)
    migrate(owner, BEFORE_KEYS_HELD_POSITIONS)
    stored = events_of(A, 3)
    with writing(owner) as conn:
        scope_to_tenant(conn, A)
        store_as_before(conn, A, stored)
    upgrade(owner)
    with owner.connect() as conn:
        found = positions(conn, A)
        assert len(found) == 3
        assert key_positions(conn, A) == found
        forced = conn.exec_driver_sql(
            "SELECT relname, relforcerowsecurity FROM pg_class"
            " WHERE relname IN ('audit_events', 'audit_event_keys')"
            " AND relnamespace = current_schema()::regnamespace"
        ).all()
        assert dict(forced) == {"audit_events": True, "audit_event_keys": True}
        assert read_events_by_id(conn, tenant_id=A, event_ids=list(found)) == stored
    owner.dispose()


def test_an_owner_that_is_no_superuser_partitions_the_events_with_every_key(
    pg_url: str, pg_app_role: str
) -> None:
    """Partitioned by an owner that is no superuser, every event stored before keeps its key
    (so it is still read by id and never stored twice), and events stored after follow it
    in the store's order."""
    owner = owned_by_no_superuser(pg_url)
    migrate(owner, BEFORE_PARTITIONS)
    before = events_of(A, 3)
    stored_before_partitions(owner, before)
    upgrade(owner)
    after = events_of(A, 2, at=NOW + timedelta(seconds=3))
    with writing(owner) as conn:
        scope_to_tenant(conn, A)
        result = append_events(conn, [*before, *after])
    assert (result.stored, result.duplicates) == (2, 3)
    with owner.connect() as conn:
        found = positions(conn, A)
        assert len(found) == 5
        assert key_positions(conn, A) == found
        order = sorted(found, key=lambda ident: found[ident][:2])
        assert order == [event.event_id for event in [*before, *after]]
        forced = conn.exec_driver_sql(
            "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'audit_events_p0'"
            " AND relnamespace = current_schema()::regnamespace"
        ).scalar_one()
        assert forced
    owner.dispose()


BEFORE_KEYS_OF_FIRST_PARTITION = "0015_compact_event_keys"
REPAIRED = "the first partition's events had no keys"


def test_keys_the_first_partitioning_lost_are_made_again_where_each_event_is(
    pg_url: str, pg_app_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A store whose first partition's events lost their keys (as migration 0012 lost them
    for an owner that is no superuser, before it was mended) has every one of them again,
    with its event's position, and says so; an event stored a second time meanwhile keeps
    its second copy's key; and ingest then finds them all duplicates."""
    owner = owned_by_no_superuser(pg_url)
    migrate(owner, BEFORE_PARTITIONS)
    before = events_of(A, 4)
    stored_before_partitions(owner, before)
    migrate(owner, BEFORE_KEYS_OF_FIRST_PARTITION)
    as_superuser(pg_url, "DELETE FROM audit_event_keys")  # what the unmended 0012 left
    with writing(owner) as conn:  # without its key, an event sent again is stored again
        scope_to_tenant(conn, A)
        assert append_events(conn, [before[3]]).stored == 1
    with owner.connect() as conn:
        second_copy = key_positions(conn, A)[before[3].event_id]
    upgrade(owner)
    assert f"{REPAIRED}: made 3" in caplog.text
    with owner.connect() as conn:
        keys = key_positions(conn, A)
        first = conn.exec_driver_sql(
            "SELECT event_id, txid, seq, received_us FROM audit_events_p0"
        ).all()
        assert len(first) == 4
        in_first = {UUID(ident): (int(txid), int(seq), int(us)) for ident, txid, seq, us in first}
        assert keys == {**in_first, before[3].event_id: second_copy}
        ids = [event.event_id for event in before]
        assert read_events_by_id(conn, tenant_id=A, event_ids=ids) == before
        forced = conn.exec_driver_sql(
            "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'audit_event_keys'"
            " AND relnamespace = current_schema()::regnamespace"
        ).scalar_one()
        assert forced
    with writing(owner) as conn:
        scope_to_tenant(conn, A)
        result = append_events(conn, before)
    assert (result.stored, result.duplicates) == (0, 4)
    owner.dispose()


def test_a_store_whose_first_keys_are_whole_is_not_repaired(
    pg_url: str, pg_app_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Partitioned with every key by an owner that is no superuser (the forced policies
    hide the keys from it), the store is found sound: no key is made and the keys stay as
    they were."""
    owner = owned_by_no_superuser(pg_url)
    migrate(owner, BEFORE_PARTITIONS)
    stored_before_partitions(owner, events_of(A, 3))
    migrate(owner, BEFORE_KEYS_OF_FIRST_PARTITION)
    with owner.connect() as conn:
        keys = key_positions(conn, A)
    upgrade(owner)
    assert REPAIRED not in caplog.text
    with owner.connect() as conn:
        assert len(keys) == 3
        assert key_positions(conn, A) == keys
    owner.dispose()


def test_a_store_whose_first_partition_retention_removed_migrates(pg_url: str) -> None:
    """Once retention removed the first partition, making its keys again finds nothing to
    do and the store migrates."""
    owner = make_engine(pg_url)
    migrate(owner, BEFORE_PARTITIONS)
    stored_before_partitions(owner, events_of(A, 2))
    migrate(owner, BEFORE_KEYS_OF_FIRST_PARTITION)
    as_superuser(
        pg_url,
        "ALTER TABLE audit_events DETACH PARTITION audit_events_p0;"
        " DROP TABLE audit_events_p0; DELETE FROM audit_event_keys;"
        " DELETE FROM audit_partitions WHERE name = 'audit_events_p0'",
    )
    upgrade(owner)
    with owner.connect() as conn:
        assert key_positions(conn, A) == {}
    owner.dispose()
