"""Retention on both backends: expired events go, unless a destination (enabled or not) has
not delivered them, a dead letter refers to them or a running export needs them; `force`
removes those too and counts them; a tenant's own policy overrides the platform's; health
names the destination that holds retention back; the command line prints it. On
PostgreSQL a whole partition goes in steps (detach, drop, keys), a run stopped between them
is finished by the next, and the drop keeps no ingest or read waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from psycopg.errors import LockNotAvailable
from sqlalchemy import Engine, event, select, text

from dated_events import events_of
from file_output import add_file_destination
from store_roles import as_role
from xavyo_siem import delivery_health
from xavyo_siem import destinations as manage
from xavyo_siem.model import AuditEvent
from xavyo_siem.store import append_events, make_engine, upgrade, writing
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.destinations import list_destinations
from xavyo_siem.store.events import read_events_by_id
from xavyo_siem.store.fleet import read_fleet_health
from xavyo_siem.store.partitions import (
    Partition,
    detach_partition,
    drop_detached,
    ensure_partitions,
    list_detached,
    list_partitions,
)
from xavyo_siem.store.purge import count_tenant_rows
from xavyo_siem.store.retention import (
    apply_retention,
    list_retention_holds,
    read_retention,
    set_retention,
)
from xavyo_siem.store.scope import scope_to_tenant
from xavyo_siem.store.tables import audit_event_keys

A, B = UUID(int=0xA1), UUID(int=0xB2)
LATER = datetime.now(UTC) + timedelta(days=10)  # every event stored now is 10 days old then
DAY_S = 86400


@pytest.fixture
def pg_engine(pg_url: str, pg_app_role: str) -> Iterator[Engine]:
    """A migrated PostgreSQL store, used through the app's login role."""
    owner = make_engine(pg_url)
    upgrade(owner)
    owner.dispose()
    engine = make_engine(as_role(pg_url, pg_app_role))
    yield engine
    engine.dispose()


def store_events(engine: Engine, events: list[AuditEvent]) -> None:
    with writing(engine) as conn:
        append_events(conn, events)


def left(engine: Engine, tenant: UUID, events: list[AuditEvent]) -> int:
    """How many of `events` (all of `tenant`) are still stored."""
    with engine.connect() as conn:
        return len(
            read_events_by_id(conn, tenant_id=tenant, event_ids=[e.event_id for e in events])
        )


def keep(engine: Engine, keep_s: int | None, tenant: UUID | None = None) -> None:
    with writing(engine) as conn:
        set_retention(conn, tenant_id=tenant, keep_s=keep_s, now=datetime.now(UTC))


def destination_of(engine: Engine, tenant: UUID, tmp_path: Path, name: str = "siem") -> UUID:
    add_file_destination(engine, tenant, tmp_path / f"{name}-{tenant.int:x}.jsonl")
    with engine.connect() as conn:
        return list_destinations(conn, tenant_id=tenant)[-1].id


def deliver_all(engine: Engine, tenant: UUID, destination: UUID) -> None:
    """Move the destination's cursor past every stored event of its tenant."""
    with writing(engine) as conn:
        # The last stored event, committed (not the head below the horizon, which other
        # transactions of the cluster may hold back).
        scope_to_tenant(conn, tenant)
        head = conn.execute(
            text(
                "SELECT txid, seq FROM audit_events WHERE tenant_id = :t"
                " ORDER BY txid DESC, seq DESC LIMIT 1"
            ),
            {"t": str(tenant)},
        ).one()
        conn.execute(
            text(
                "UPDATE destination_state SET cursor_txid = :t, cursor_seq = :s"
                " WHERE destination_id = :d"
            ),
            {"t": head.txid, "s": head.seq, "d": str(destination)},
        )


def test_policies_are_set_shown_and_overridden_per_tenant(engine: Engine) -> None:
    """The platform's policy applies to every tenant without one of its own; a tenant's
    own overrides it, and removing it makes the tenant follow the platform's again."""
    keep(engine, 90 * DAY_S)
    keep(engine, 400 * DAY_S, A)
    with engine.connect() as conn:
        policies = read_retention(conn)
    assert policies.keep_for(A) == 400 * DAY_S
    assert policies.keep_for(B) == 90 * DAY_S
    keep(engine, None, A)
    with engine.connect() as conn:
        assert read_retention(conn).keep_for(A) == 90 * DAY_S


def test_without_a_policy_nothing_is_removed(engine: Engine) -> None:
    """With no policy at all every event is kept, however old."""
    events = events_of(A, 5)
    store_events(engine, events)
    report = apply_retention(engine, now=LATER)
    assert report.removed == 0
    assert not report.dropped_partitions
    assert left(engine, A, events) == 5


@pytest.mark.parametrize("enabled", [True, False])
def test_a_destination_that_has_not_delivered_keeps_only_its_tenants_events(
    engine: Engine, tmp_path: Path, enabled: bool
) -> None:
    """Expired events a destination (enabled or disabled) has not delivered stay, and
    health names it; the other tenant's expired events go all the same."""
    mine, others = events_of(A, 20), events_of(B, 30)
    store_events(engine, mine + others)
    stuck = destination_of(engine, A, tmp_path)
    if not enabled:
        manage.set_enabled(engine, tenant_id=A, destination_id=stuck, enabled=False)
    keep(engine, DAY_S)
    report = apply_retention(engine, now=LATER)
    assert left(engine, A, mine) == 20
    assert left(engine, B, others) == 0
    assert report.removed_undelivered == 0
    assert [(h.tenant_id, h.holder, h.held_events) for h in report.held] == [
        (A, f"destination:{stuck}", 20)
    ]
    with engine.connect() as conn:
        (health,) = delivery_health.list_health(conn, tenant_id=A)
        assert health.retention_held_events == 20
        assert health.retention_held_since is not None
        first_since = health.retention_held_since
    apply_retention(engine, now=LATER)  # still held: the hold keeps its first time
    with engine.connect() as conn:
        (hold,) = list_retention_holds(conn, tenant_id=A)
    assert hold.since == first_since


def test_a_delivered_event_goes_and_the_hold_is_cleared(engine: Engine, tmp_path: Path) -> None:
    """Once the destination delivered everything, its tenant's expired events go and it no
    longer holds retention back."""
    mine = events_of(A, 10)
    store_events(engine, mine)
    destination = destination_of(engine, A, tmp_path)
    keep(engine, DAY_S)
    assert apply_retention(engine, now=LATER).held
    deliver_all(engine, A, destination)
    report = apply_retention(engine, now=LATER)
    assert not report.held
    assert left(engine, A, mine) == 0
    with engine.connect() as conn:
        (health,) = delivery_health.list_health(conn, tenant_id=A)
    assert health.retention_held_since is None


def test_a_dead_letter_keeps_the_event_it_refers_to(engine: Engine, tmp_path: Path) -> None:
    """An expired event that a dead letter (not replayed or purged) refers to stays;
    the tenant's other delivered events go."""
    mine = events_of(A, 10)
    store_events(engine, mine)
    destination = destination_of(engine, A, tmp_path)
    deliver_all(engine, A, destination)
    with writing(engine) as conn:
        add_dead_letters(
            conn,
            tenant_id=A,
            destination_id=destination,
            entries=[(mine[3].event_id, "refused")],
            now=datetime.now(UTC),
        )
    keep(engine, DAY_S)
    report = apply_retention(engine, now=LATER)
    assert left(engine, A, mine) == 1
    assert left(engine, A, [mine[3]]) == 1
    assert [(h.holder, h.reason, h.held_events) for h in report.held] == [
        (f"destination:{destination}", "dead letters", 1)
    ]


def test_a_running_export_keeps_the_events_it_may_read(engine: Engine) -> None:
    """While an export of the tenant runs, the events it may read stay; once it finished
    they go."""
    mine = events_of(A, 10)
    store_events(engine, mine)
    job = str(uuid4())
    with writing(engine) as conn:
        scope_to_tenant(conn, A)
        conn.execute(
            text(
                "INSERT INTO export_jobs (id, tenant_id, target_kind, target, format, options,"
                " start_us, end_us, filters, status, exported, created_us) VALUES (:id, :t,"
                " 'file', '/tmp/x.jsonl', 'json', '{}', 0, 1, '{}', 'running', 0, 0)"
            ),
            {"id": job, "t": str(A)},
        )
    keep(engine, DAY_S)
    report = apply_retention(engine, now=LATER)
    assert left(engine, A, mine) == 10
    assert [h.holder for h in report.held] == [f"export:{job}"]
    with writing(engine) as conn:
        scope_to_tenant(conn, A)
        conn.execute(
            text("UPDATE export_jobs SET status = 'completed' WHERE id = :id"), {"id": job}
        )
    assert not apply_retention(engine, now=LATER).held
    assert left(engine, A, mine) == 0


def test_force_removes_held_events_and_counts_the_undelivered(
    engine: Engine, tmp_path: Path
) -> None:
    """`force` removes expired events a destination has not delivered, and counts them."""
    mine, others = events_of(A, 12), events_of(B, 5)
    store_events(engine, mine + others)
    destination_of(engine, A, tmp_path)
    keep(engine, DAY_S)
    report = apply_retention(engine, now=LATER, force=True)
    assert left(engine, A, mine) == 0
    assert left(engine, B, others) == 0
    assert report.removed_undelivered == 12
    assert not report.held


def test_a_tenants_own_policy_overrides_the_platforms(engine: Engine) -> None:
    """A tenant that keeps events longer keeps them; the other tenant's expired events, in
    the same partition, go."""
    mine, others = events_of(A, 8), events_of(B, 9)
    store_events(engine, mine + others)
    keep(engine, DAY_S)
    keep(engine, 400 * DAY_S, A)
    report = apply_retention(engine, now=LATER)
    assert left(engine, A, mine) == 8
    assert left(engine, B, others) == 0
    assert report.removed == 9  # one by one: the partition holds A's events too
    keep(engine, DAY_S, A)  # now shorter than 10 days
    apply_retention(engine, now=LATER)
    assert left(engine, A, mine) == 0


def test_removed_events_can_be_ingested_again(engine: Engine) -> None:
    """Retention removes an event's key with it: the same event ingested again is stored."""
    mine = events_of(A, 4)
    store_events(engine, mine)
    keep(engine, DAY_S)
    apply_retention(engine, now=LATER, chunk_size=3)
    assert left(engine, A, mine) == 0
    with engine.connect() as conn:
        scope_to_tenant(conn, A)
        assert not conn.execute(select(audit_event_keys.c.event_id)).all()
    with writing(engine) as conn:
        assert append_events(conn, mine).stored == 4


def tables_named(engine: Engine, prefix: str) -> list[str]:
    """The tables of the store's schema whose name starts with `prefix`."""
    with engine.connect() as conn:
        return [
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
                " AND relkind = 'r' AND starts_with(relname, %s)",
                (prefix,),
            )
        ]


def keys_of(engine: Engine, tenant: UUID) -> list[int]:
    """The received times of the tenant's stored keys."""
    with engine.connect() as conn:
        scope_to_tenant(conn, tenant)
        return [int(row[0]) for row in conn.execute(select(audit_event_keys.c.received_us))]


def partition_of(engine: Engine, tenant: UUID) -> Partition:
    """The partition holding the tenant's (first) stored event."""
    received = min(keys_of(engine, tenant))
    with engine.connect() as conn:
        (partition,) = [p for p in list_partitions(conn) if p.from_us <= received < p.to_us]
    return partition


def test_a_partition_nothing_holds_is_dropped_whole(pg_engine: Engine) -> None:
    """On PostgreSQL a partition whose events all expired, none needed, is detached, its
    table dropped and its keys removed in one run, which leaves nothing behind, and ingest
    afterwards makes the partition it needs again."""
    mine = events_of(A, 6)
    store_events(pg_engine, mine)
    keep(pg_engine, DAY_S)
    partition = partition_of(pg_engine, A)
    with pg_engine.connect() as conn:
        before = {p.name for p in list_partitions(conn)}
    report = apply_retention(pg_engine, now=LATER)
    assert report.removed == 0  # nothing one by one
    assert partition.name in report.dropped_partitions
    assert set(report.dropped_partitions) <= before
    assert report.finished == []  # nothing an earlier run left
    assert left(pg_engine, A, mine) == 0
    assert tables_named(pg_engine, partition.name) == []  # nor a detached table
    assert keys_of(pg_engine, A) == []
    with pg_engine.connect() as conn:
        assert list_detached(conn) == []
        assert partition.name not in {p.name for p in list_partitions(conn)}
    with writing(pg_engine) as conn:
        assert append_events(conn, mine).stored == 6
    assert left(pg_engine, A, mine) == 6


def test_a_partition_in_use_is_left_for_the_next_run_and_the_run_goes_on(
    pg_engine: Engine,
) -> None:
    """While a transaction holds a lock on an expired partition (a long query, a vacuum),
    its detach gives up after its wait, the run reports it as busy and still records the
    holds and finishes; its events stay, and the next run, once the lock is let go,
    drops it."""
    mine = events_of(A, 6)
    store_events(pg_engine, mine)
    keep(pg_engine, DAY_S)
    partition = partition_of(pg_engine, A)
    with pg_engine.connect() as holder:
        reading = holder.begin()
        holder.exec_driver_sql(f'SELECT count(*) FROM "{partition.name}"').scalar_one()
        report = apply_retention(pg_engine, now=LATER)
        reading.rollback()
    assert report.busy_partitions == [partition.name]
    assert partition.name not in report.dropped_partitions
    assert report.to_dict()["busy_partitions"] == [partition.name]
    assert left(pg_engine, A, mine) == 6
    with pg_engine.connect() as conn:
        assert partition.name in {p.name for p in list_partitions(conn)}
        assert list_detached(conn) == []
    again = apply_retention(pg_engine, now=LATER)
    assert again.busy_partitions == []
    assert partition.name in again.dropped_partitions
    assert left(pg_engine, A, mine) == 0


@pytest.mark.parametrize("stopped_after", ["detach", "drop"])
def test_a_run_stopped_between_the_steps_is_finished_by_the_next(
    pg_engine: Engine, tmp_path: Path, stopped_after: str
) -> None:
    """A partition detached (and perhaps dropped) by a run that stopped there: its events
    are gone at once, the service cannot read its table, and the listings, ingest, tenant
    counts and fleet health ignore it; the next run (even with no policy) drops what is
    left and removes the keys, touches nothing else, and says so."""
    mine = events_of(A, 6)
    store_events(pg_engine, mine)
    destination = destination_of(pg_engine, A, tmp_path)
    partition = partition_of(pg_engine, A)
    assert detach_partition(pg_engine, partition)
    assert not detach_partition(pg_engine, partition)  # gone from the list already
    assert left(pg_engine, A, mine) == 0
    with pg_engine.connect() as conn:
        (detached,) = list_detached(conn)
        assert partition.name not in {p.name for p in list_partitions(conn)}
    assert (detached.from_us, detached.to_us, detached.dropped) == (
        partition.from_us, partition.to_us, False,
    )  # fmt: skip
    assert tables_named(pg_engine, partition.name) == [detached.name]
    with pg_engine.connect() as conn:  # the service's roles lost every right on it
        assert not conn.exec_driver_sql(
            "SELECT has_table_privilege(%s, 'SELECT')", (detached.name,)
        ).scalar_one()
    if stopped_after == "drop":
        assert drop_detached(pg_engine, detached)
        assert not drop_detached(pg_engine, detached)
        assert tables_named(pg_engine, partition.name) == []
    ensure_partitions(pg_engine)  # the days it held are made again, beside it
    others = events_of(B, 3)
    store_events(pg_engine, others)
    assert left(pg_engine, B, others) == 3
    with pg_engine.connect() as conn:
        counts = count_tenant_rows(conn, tenant_id=A)
        assert (counts["events"], counts["event_keys"]) == (0, 6)  # the keys follow
        fleet = read_fleet_health(conn, tenant_id=None, now=datetime.now(UTC))
    (health,) = [f.health for f in fleet if f.health.destination_id == destination]
    assert health.lag_events == 0
    if stopped_after == "detach":  # no policy: only the steps left
        report = apply_retention(pg_engine, now=LATER)
        assert report.finished == [detached.name]
        assert report.dropped_partitions == []
    else:  # the command line says so
        url = pg_engine.url.render_as_string(hide_password=False)
        done = run_cli(url, "retention", "apply")
        assert done.returncode == 0, done.stderr
        assert "dropping the detached tables (with 1 an earlier run left)" in done.stderr
    assert tables_named(pg_engine, partition.name) == [partition.name]  # the one made again
    assert keys_of(pg_engine, A) == []
    assert left(pg_engine, B, others) == 3
    with pg_engine.connect() as conn:
        assert list_detached(conn) == []


def test_the_drop_keeps_no_ingest_or_read_waiting(pg_engine: Engine) -> None:
    """While the drop of a detached table is not committed, another connection inserts
    into `audit_events` and reads it under a lock timeout; while a detach is not
    committed the same insert times out, so the probe does see a lock on the table."""
    mine = events_of(A, 4)
    store_events(pg_engine, mine)
    partition = partition_of(pg_engine, A)
    assert detach_partition(pg_engine, partition)
    ensure_partitions(pg_engine)
    with pg_engine.connect() as conn:
        (detached,) = list_detached(conn)
        ahead = list_partitions(conn)[-1]
    probe = make_engine(pg_engine.url.render_as_string(hide_password=False))

    @event.listens_for(probe, "connect")
    def _lock_timeout(dbapi_connection: object, _record: object) -> None:
        with dbapi_connection.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute("SET lock_timeout = '500ms'")
        dbapi_connection.commit()  # type: ignore[attr-defined]

    with pg_engine.connect() as holder:
        detaching = holder.begin()
        assert holder.exec_driver_sql(
            "SELECT xavyo_siem_detach_partition(%s)", (ahead.name,)
        ).scalar_one()
        with pytest.raises(LockNotAvailable):  # the driver's own error: ingest COPYs
            store_events(probe, events_of(B, 2))
        detaching.rollback()
        with holder.begin():
            assert holder.exec_driver_sql(
                "SELECT xavyo_siem_drop_detached(%s)", (detached.name,)
            ).scalar_one()
            others = events_of(B, 5)
            store_events(probe, others)
            assert left(probe, B, others) == 5
            assert left(probe, A, mine) == 0
    probe.dispose()
    assert tables_named(pg_engine, partition.name) == [partition.name]  # the one made again
    with pg_engine.connect() as conn:
        ((name, dropped),) = [(d.name, d.dropped) for d in list_detached(conn)]
    assert (name, dropped) == (detached.name, True)


def run_cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "XAVYO_SIEM_DATABASE_URL": db},
        check=False,
    )


def test_the_commands_print_clear_output_and_json(tmp_path: Path) -> None:
    """`retention set`, `show` and `apply` say what they did, in words and as JSON."""
    db = f"sqlite:///{tmp_path}/store.db"
    done = run_cli(db, "retention", "set", "--keep", "90d")
    assert done.returncode == 0, done.stderr
    assert "the platform keeps events 90d after they were received" in done.stderr
    done = run_cli(db, "retention", "set", "--tenant", str(A), "--keep", "400d")
    assert f"tenant {A} keeps events 400d" in done.stderr
    bad = run_cli(db, "retention", "set", "--keep", "ninety days")
    assert bad.returncode == 2
    assert "--keep" in bad.stderr
    shown = run_cli(db, "retention", "show")
    assert "platform" in shown.stdout
    assert "90d" in shown.stdout
    assert "400d" in shown.stdout
    shown = run_cli(db, "retention", "show", "--json")
    assert json.loads(shown.stdout) == {"keep_s": 90 * DAY_S, "tenants": {str(A): 400 * DAY_S}}
    applied = run_cli(db, "retention", "apply", "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["removed"] == 0
    assert json.loads(applied.stdout)["drop_s"] == 0  # no partitions on SQLite
    applied = run_cli(db, "retention", "apply", "--force")
    assert "removed 0 events" in applied.stderr
    assert "still needed" in applied.stderr


def test_health_and_apply_name_the_destination_that_holds_retention(tmp_path: Path) -> None:
    """With a destination that delivered nothing, `retention apply` lists it as holding
    the expired events and `health` says it holds retention back (text and JSON)."""
    db = f"sqlite:///{tmp_path}/store.db"
    source = tmp_path / "events.jsonl"
    made = run_cli(db, "sample", "--count", "7", "--tenants", "1", "--seed", "3", "-o", str(source))
    assert made.returncode == 0, made.stderr
    assert run_cli(db, "ingest", str(source)).returncode == 0
    tenant = json.loads(source.read_text().splitlines()[0])["tenant_id"]
    added = run_cli(
        db, "destination", "add", "--tenant", tenant, "--name", "stuck", "--type", "file",
        "--format", "json", "--endpoint", f"file://{tmp_path}/out.jsonl",
        "--option", "start=beginning",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert run_cli(db, "retention", "set", "--keep", "1s").returncode == 0
    deadline = time.monotonic() + 30  # until the events are more than a second old
    while True:
        applied = run_cli(db, "retention", "apply", "--json")
        held = json.loads(applied.stdout)["held"]
        if held or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(h["tenant_id"], h["reason"]) for h in held] == [(tenant, "not delivered yet")]
    assert held[0]["held_events"] >= 7  # the sample, and the trail's record of `add`
    shown = run_cli(db, "health", "--tenant", tenant)
    assert f"retention held back by stuck ({held[0]['holder'].split(':')[1]}" in shown.stdout
    (report,) = [json.loads(line) for line in run_cli(db, "health", "--json").stdout.splitlines()]
    assert report["retention_held_events"] == held[0]["held_events"]
    assert report["retention_held_since"] is not None
