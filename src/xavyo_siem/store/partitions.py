"""The partitions of `audit_events` on PostgreSQL: by the time the store received an event.

Each partition holds the events received in one UTC day (`received_us`, the database's
clock), listed in `audit_partitions`. Why the received time and not the event's own: the
change feed and a destination's catch-up read in commit order, `(txid, seq)`, and a late
event (an old timestamp) still lands in today's partition, so a read from a position
touches only the partitions received since then. What makes that exact is the partition's
*txid ceiling*: once a partition is closed (its day ended `CLOSE_ALLOWANCE_US` ago, so no
event can be received into it any more), `xavyo_siem_make_partitions` stamps it with the
next transaction id to be assigned. Every row it holds was written by a transaction whose
id was assigned before its day ended (ingest assigns it in the statement that reads the
clock, `append.py`; the column defaults assign it before the clock is read), so every
row's txid is below the ceiling, and a read after position `(txid, seq)` skips each
partition whose ceiling is at or below `txid` (`received_floor`). Exports read by event
time: an export of `[from, to)` reads the partitions received from `from` less
`EXPORT_SKEW_US` onwards (`received_since`).

Partitions are made ahead by the worker (`ensure_partitions`, two days ahead), and by
ingest when the one for now is missing, so ingest never fails because no worker ran. Both
run `xavyo_siem_make_partitions`, a function with its owner's rights (only a table's owner
may add a partition), in a short transaction of their own: it holds the table's lock for
the moment the new partition is attached, never for an ingest.

Retention removes a partition in steps (migration 0014). `detach_partition` detaches it
from `audit_events` and moves its row from `audit_partitions` to `detached_partitions`, in
one short transaction: a catalog change whose cost does not grow with the partition, after
which no read sees its events. `drop_detached` then drops the detached table in a
transaction of its own, which locks that table alone: the removal of its files (seconds
for a large partition) keeps no one else waiting. Its row stays until its events' keys are
removed too (`forget_detached`), so a run stopped between any two steps is finished by the
next (`list_detached`). SQLite keeps one table: there every function here answers "no
partitions" and adds no condition.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect

from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE, partition_policy_statements
from xavyo_siem.store.tables import audit_events, audit_partitions, detached_partitions

__all__ = [
    "CLOSE_ALLOWANCE_US",
    "DAY_US",
    "DETACH_PARTITION",
    "DROP_DETACHED",
    "EXPORT_SKEW_US",
    "FORGET_DETACHED",
    "MAKE_PARTITIONS",
    "PARTITION_TENANTS",
    "Detached",
    "Partition",
    "create_detach_functions",
    "create_partition_functions",
    "detach_partition",
    "drop_detach_functions",
    "drop_detached",
    "ensure_partitions",
    "forget_detached",
    "forget_partitions",
    "list_detached",
    "list_partitions",
    "partition_tenants",
    "received_floor",
    "received_floor_now",
    "received_since",
]

DAY_US: Final = 86_400_000_000
CLOSE_ALLOWANCE_US: Final = 3_600_000_000
"""A partition is closed this long after its day ended (a clock stepped back stays inside)."""
EXPORT_SKEW_US: Final = DAY_US
"""How far ahead of its receipt an event's own timestamp may be and still be exported."""
AHEAD_US: Final = 2 * DAY_US
"""How far ahead the partitions are made."""

MAKE_PARTITIONS: Final = "xavyo_siem_make_partitions"
PARTITION_TENANTS: Final = "xavyo_siem_partition_tenants"
DETACH_PARTITION: Final = "xavyo_siem_detach_partition"
DROP_DETACHED: Final = "xavyo_siem_drop_detached"
FORGET_DETACHED: Final = "xavyo_siem_forget_detached"
_NOW_US: Final = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
_T = audit_events.c
_P = audit_partitions.c


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: the events received in `[from_us, to_us)`."""

    name: str
    from_us: int
    to_us: int
    txid_ceiling: int | None


_WHOLE_TABLE: Final = Partition("audit_events", -(1 << 63), 1 << 62, None)


@dataclass(frozen=True, slots=True)
class Detached:
    """A partition detached by retention whose table or events' keys are still to go: it
    held the events received in `[from_us, to_us)`, all before `detached_us`; `dropped`
    once its table is."""

    name: str
    from_us: int
    to_us: int
    dropped: bool
    detached_us: int


def partition_name(from_us: int) -> str:
    """`audit_events_p20261205` for the partition of the day starting at `from_us`."""
    return "audit_events_p" + datetime.fromtimestamp(from_us / 1e6, UTC).strftime("%Y%m%d")


def create_partition_functions(bind: Connection) -> None:
    """Create two functions that run with their owner's rights (migration 0012):

    * `xavyo_siem_make_partitions(until_us)`: a partition for each day up to `until_us`
      that has none (each protected as `audit_events` is), and the ceiling of each closed
      partition; serialised by an advisory lock.
    * `xavyo_siem_partition_tenants(from_us, to_us)`: the tenants with events received in
      that range, and nothing else (retention decides per tenant).
    """
    policies = "\n".join(
        f"    EXECUTE format('{statement.replace(chr(39), chr(39) * 2)}', name);"
        for statement in partition_policy_statements("%1$I")
    )
    # `%` doubled: the driver reads the statement as a template. From now on, each moment
    # no partition holds gets one: its day, cut to the gap between its neighbours.
    make = (
        f"CREATE OR REPLACE FUNCTION {MAKE_PARTITIONS}(until_us bigint) RETURNS void"
        " LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$\n"
        "DECLARE t bigint; lo bigint; hi bigint; covered bigint; name text;\n"
        "BEGIN\n"
        "  PERFORM pg_advisory_xact_lock(hashtext('xavyo_siem.partitions'));\n"
        "  UPDATE audit_partitions SET txid_ceiling ="
        " (pg_snapshot_xmax(pg_current_snapshot())::text)::bigint"
        f" WHERE txid_ceiling IS NULL AND to_us + {CLOSE_ALLOWANCE_US} <= {_NOW_US};\n"
        f"  t := {_NOW_US};\n"
        "  WHILE t <= until_us LOOP\n"
        "    SELECT p.to_us INTO covered FROM audit_partitions p"
        " WHERE p.from_us <= t AND p.to_us > t;\n"
        "    IF covered IS NOT NULL THEN t := covered; CONTINUE; END IF;\n"
        f"    lo := greatest(t - t % {DAY_US}, coalesce((SELECT max(p.to_us)"
        f" FROM audit_partitions p WHERE p.to_us <= t), t - t % {DAY_US}));\n"
        f"    hi := least(t - t % {DAY_US} + {DAY_US}, coalesce((SELECT min(p.from_us)"
        f" FROM audit_partitions p WHERE p.from_us > t), t - t % {DAY_US} + {DAY_US}));\n"
        "    name := 'audit_events_p' || to_char(to_timestamp(lo / 1000000.0)"
        " AT TIME ZONE 'UTC', 'YYYYMMDD');\n"
        f"    IF lo % {DAY_US} <> 0 THEN name := name || '_' || (lo % {DAY_US})::text; END IF;\n"
        "    EXECUTE format('CREATE TABLE %I (LIKE audit_events)', name);\n"
        f"{policies}\n"
        "    EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I"
        " FOR VALUES FROM (%s) TO (%s)', name, lo, hi);\n"
        "    INSERT INTO audit_partitions (name, from_us, to_us) VALUES (name, lo, hi);\n"
        "    t := hi;\n"
        "  END LOOP;\n"
        "END $$"
    )
    bind.exec_driver_sql(make.replace("%", "%%"))
    bind.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {PARTITION_TENANTS}(from_us bigint, to_us bigint)"
        " RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER"
        " SET search_path FROM CURRENT SET xavyo_siem.feed_marks = 'on' AS $$"
        " WITH RECURSIVE t(tenant_id) AS ("
        " SELECT min(a.tenant_id)::text FROM audit_events a"
        " WHERE a.received_us >= from_us AND a.received_us < to_us"
        " UNION ALL SELECT (SELECT min(a.tenant_id) FROM audit_events a"
        " WHERE a.received_us >= from_us AND a.received_us < to_us"
        " AND a.tenant_id > t.tenant_id) FROM t WHERE t.tenant_id IS NOT NULL)"
        " SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL $$"
    )
    _grant_only(
        bind,
        (f"{MAKE_PARTITIONS}(bigint)", f"{PARTITION_TENANTS}(bigint, bigint)"),
        f"{SERVICE_ROLE}, {WORKER_ROLE}",
    )


def _grant_only(bind: Connection, signatures: Sequence[str], roles: str) -> None:
    """Let `roles`, and no one else, execute these functions."""
    for signature in signatures:
        bind.exec_driver_sql(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        bind.exec_driver_sql(f"GRANT EXECUTE ON FUNCTION {signature} TO {roles}")


_DETACH_SIGNATURES: Final = (
    f"{DETACH_PARTITION}(text)",
    f"{DROP_DETACHED}(text)",
    f"{FORGET_DETACHED}(text)",
)


def create_detach_functions(bind: Connection) -> None:
    """Create the three functions of retention's partition steps, with their owner's rights
    (only a table's owner may detach or drop it), for `xavyo_siem_worker` (migration 0014):

    * `xavyo_siem_detach_partition(name)`: detach a listed partition from `audit_events`,
      waiting at most two seconds for the table's lock, rename it `<name>_detached_<txid>`
      (so that a partition made again for its days never meets it), take every right on it
      from the group roles, and move its row to `detached_partitions`; false when it is
      not listed.
    * `xavyo_siem_drop_detached(name)`: drop a table listed in `detached_partitions` and
      not dropped yet (its row locked first, so two runs never drop it twice), and mark it
      dropped; false when there was nothing to drop. It locks no other table.
    * `xavyo_siem_forget_detached(name)`: remove the row of a dropped one.
    """
    bind.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {DETACH_PARTITION}(part text) RETURNS boolean"
        " LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$\n"
        "DECLARE lo bigint; hi bigint; gone text;\n"
        "BEGIN\n"
        "  PERFORM pg_advisory_xact_lock(hashtext('xavyo_siem.partitions'));\n"
        "  DELETE FROM audit_partitions WHERE name = part RETURNING from_us, to_us INTO lo, hi;\n"
        "  IF NOT FOUND THEN RETURN false; END IF;\n"
        "  gone := left(part, 40) || '_detached_' || pg_current_xact_id()::text;\n"
        "  SET LOCAL lock_timeout = '2s';\n"
        "  EXECUTE format('ALTER TABLE audit_events DETACH PARTITION %%I', part);\n"
        "  EXECUTE format('ALTER TABLE %%I RENAME TO %%I', part, gone);\n"
        f"  EXECUTE format('REVOKE ALL ON %%I FROM {SERVICE_ROLE}, {WORKER_ROLE}', gone);\n"
        "  INSERT INTO detached_partitions (name, from_us, to_us, detached_us)"
        f" VALUES (gone, lo, hi, {_NOW_US});\n"
        "  RETURN true;\n"
        "END $$"
    )
    bind.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {DROP_DETACHED}(part text) RETURNS boolean"
        " LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$\n"
        "BEGIN\n"
        "  PERFORM FROM detached_partitions WHERE name = part AND dropped_us IS NULL"
        " FOR UPDATE;\n"
        "  IF NOT FOUND THEN RETURN false; END IF;\n"
        "  EXECUTE format('DROP TABLE IF EXISTS %%I', part);\n"
        f"  UPDATE detached_partitions SET dropped_us = {_NOW_US} WHERE name = part;\n"
        "  RETURN true;\n"
        "END $$"
    )
    bind.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {FORGET_DETACHED}(part text) RETURNS void"
        " LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$"
        " DELETE FROM detached_partitions WHERE name = part AND dropped_us IS NOT NULL $$"
    )
    _grant_only(bind, _DETACH_SIGNATURES, WORKER_ROLE)


def drop_detach_functions(bind: Connection) -> None:
    """Drop what `create_detach_functions` made (a migration's downgrade)."""
    for signature in _DETACH_SIGNATURES:
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature}")


def ensure_partitions(engine: Engine, *, ahead_us: int = AHEAD_US) -> None:
    """Make the partitions up to `ahead_us` from now, and stamp the closed ones, in a
    transaction of its own (PostgreSQL; nothing on SQLite)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"SELECT {MAKE_PARTITIONS}({_NOW_US} + %s)", (ahead_us,)
        ).scalar_one_or_none()


def list_partitions(conn: Connection) -> list[Partition]:
    """Every partition, oldest first; on SQLite the one table, as one partition."""
    if conn.dialect.name != "postgresql":
        return [_WHOLE_TABLE]
    rows = conn.execute(select(_P.name, _P.from_us, _P.to_us, _P.txid_ceiling).order_by(_P.from_us))
    return [Partition(*row) for row in rows]


_CEILINGS: Final = "xavyo_siem.partition_ceilings"


def received_floor(conn: Connection, after_txid: int) -> int | None:
    """Where a read in `(txid, seq)` order after a position of transaction `after_txid`
    starts, as the least `received_us` it needs (None: no bound; always on SQLite): the
    start of the oldest partition whose ceiling is above `after_txid` or not stamped yet.

    A guess, from the partitions this connection saw last (read once per connection, and
    again after `forget_partitions`): a page that reads with it also reads
    `received_floor_now`, the floor in its own snapshot, and reads again when the guess
    was too high (`events.read_page`). So the guess costs no round trip, and a stale one
    costs a second read, never an event.
    """
    if conn.dialect.name != "postgresql":
        return None
    ceilings = conn.info.get(_CEILINGS)
    if ceilings is None:
        ceilings = conn.info[_CEILINGS] = [
            (int(row[0]), row[1]) for row in conn.execute(select(_P.from_us, _P.txid_ceiling))
        ]
    return min(
        (from_us for from_us, ceiling in ceilings if ceiling is None or ceiling > after_txid),
        default=None,
    )


def received_floor_now(after_txid: int) -> ScalarSelect[Any]:
    """`received_floor` as SQL, read in the snapshot of the statement it is part of."""
    return (
        select(func.min(_P.from_us))
        .where(_P.txid_ceiling.is_(None) | (_P.txid_ceiling > after_txid))
        .scalar_subquery()
    )


def forget_partitions(conn: Connection) -> None:
    """Make this connection's next `received_floor` read the partitions again."""
    conn.info.pop(_CEILINGS, None)


def received_since(conn: Connection, start_us: int | None) -> list[ColumnElement[bool]]:
    """The partitions an export of events stamped from `start_us` on needs (PostgreSQL)."""
    if start_us is None or conn.dialect.name != "postgresql":
        return []
    return [_T.received_us >= start_us - EXPORT_SKEW_US]


def partition_tenants(conn: Connection, partition: Partition) -> list[str]:
    """The tenants with events in `partition`, in order."""
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            f"SELECT * FROM {PARTITION_TENANTS}(%s, %s)", (partition.from_us, partition.to_us)
        )
        return [row[0] for row in rows]
    return [
        row[0]
        for row in conn.execute(
            select(_T.tenant_id)
            .distinct()
            .where(_T.received_us >= partition.from_us, _T.received_us < partition.to_us)
        )
    ]


def detach_partition(engine: Engine, partition: Partition) -> bool:
    """Retention's first step (PostgreSQL): detach `partition`, in a transaction of its own;
    no read sees its events once it returns. False when it was gone already."""
    return bool(_step(engine, DETACH_PARTITION, partition.name))


def list_detached(conn: Connection) -> list[Detached]:
    """The detached partitions whose table or keys are still to go, oldest first (none on
    SQLite)."""
    if conn.dialect.name != "postgresql":
        return []
    d = detached_partitions.c
    rows = conn.execute(
        select(d.name, d.from_us, d.to_us, d.dropped_us.is_not(None), d.detached_us).order_by(
            d.from_us
        )
    )
    return [
        Detached(name, int(lo), int(hi), bool(dropped), int(at))
        for name, lo, hi, dropped, at in rows
    ]


def drop_detached(engine: Engine, detached: Detached) -> bool:
    """Retention's second step: drop the detached table, in a transaction of its own that
    locks that table alone; False when it was dropped already."""
    return bool(_step(engine, DROP_DETACHED, detached.name))


def forget_detached(engine: Engine, detached: Detached) -> None:
    """Forget a dropped table once its events' keys are removed too."""
    _step(engine, FORGET_DETACHED, detached.name)


def _step(engine: Engine, function: str, name: str) -> object:
    """One of retention's partition functions on `name`, in a transaction of its own."""
    with engine.begin() as conn:
        return conn.exec_driver_sql(f"SELECT {function}(%s)", (name,)).scalar_one()


def now_us() -> int:
    """The local clock in microseconds since the epoch (SQLite's received time)."""
    return time.time_ns() // 1000
