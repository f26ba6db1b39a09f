"""Leases: each destination is delivered by one worker at a time.

Workers register in `workers` with a heartbeat. A lease row names the worker that holds it,
and lasts as long as that worker's heartbeat is younger than the lease time: one row
updated renews all of a worker's leases, however many. Another worker may take a lease
over only once its holder's heartbeat has lapsed (or the lease was given back). Each
takeover increments `epoch`, which fences the previous holder's writes (see state.py). A
released lease keeps its row (no owner), so its epoch keeps counting.

Everything works in bulk, a few statements per interval whatever the number of
destinations: `heartbeat` (and the fair share of destinations among the live workers),
`held_leases` (what a worker still holds), `acquire_leases` (up to a number of free ones,
tenant by tenant, in one statement) and `release_leases`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.model import from_epoch_us, to_epoch_us, uuid_from_canonical
from xavyo_siem.store.scope import ANALYZE_LEASES, platform_wide, scoped
from xavyo_siem.store.tables import destinations, leases, workers

__all__ = [
    "LeaseLost",
    "acquire_leases",
    "forget_worker",
    "heartbeat",
    "held_leases",
    "refresh_lease_statistics",
    "release_leases",
    "worker_heartbeats",
]

_L = leases.c
_D = destinations.c
_W = workers.c


class LeaseLost(Exception):
    """Another worker owns the destination now; the loop that held it must stop writing."""


@scoped
def heartbeat(conn: Connection, *, owner: str, ttl: timedelta, now: datetime) -> int:
    """Say `owner` is alive; returns its fair share of the enabled destinations.

    The share is the enabled destinations divided among the workers whose heartbeat is
    younger than `ttl`, rounded up, so the live workers together always cover them all.
    """
    now_us = to_epoch_us(now)
    updated = conn.execute(update(workers).where(_W.owner == owner).values(heartbeat_us=now_us))
    if updated.rowcount == 0:
        conn.execute(insert(workers).values(owner=owner, started_us=now_us, heartbeat_us=now_us))
    live_since = to_epoch_us(now - ttl)
    live, enabled = conn.execute(
        select(
            select(func.count()).where(_W.heartbeat_us > live_since).scalar_subquery(),
            select(func.count()).where(_D.enabled.is_(True)).scalar_subquery(),
        )
    ).one()
    return math.ceil(int(enabled) / max(int(live), 1))


@platform_wide
def worker_heartbeats(conn: Connection) -> dict[str, datetime]:
    """Each registered worker's last heartbeat, by worker name (a stopped worker has left)."""
    rows = conn.execute(select(_W.owner, _W.heartbeat_us)).all()
    return {owner: from_epoch_us(beat) for owner, beat in rows}


def forget_worker(conn: Connection, *, owner: str) -> None:
    """A worker that stops leaves the register (and the others' fair share grows at once)."""
    conn.execute(delete(workers).where(_W.owner == owner))


@scoped
def held_leases(conn: Connection, *, owner: str) -> dict[UUID, tuple[int, int]]:
    """The leases `owner` holds on enabled destinations, in one read.

    Returns destination id → (lease epoch, the destination's `updated_us`, which tells a
    worker that its settings changed). A lease missing from the answer was lost (taken over
    while the worker's heartbeat had lapsed) or its destination was disabled or removed.
    """
    rows = conn.execute(
        select(_L.destination_id, _L.epoch, _D.updated_us)
        .join(destinations, _D.id == _L.destination_id)
        .where(_L.owner == owner, _D.enabled.is_(True))
    )
    return {uuid_from_canonical(ident): (epoch, updated) for ident, epoch, updated in rows}


def _free(table: Any, *, ttl: timedelta, now: datetime) -> ColumnElement[bool]:
    """A lease nobody holds: given back, or held by a worker whose heartbeat lapsed."""
    live = select(_W.owner).where(_W.heartbeat_us > to_epoch_us(now - ttl))
    return or_(table.c.owner == "", table.c.owner.not_in(live))


@scoped
def acquire_leases(
    conn: Connection, *, owner: str, limit: int, ttl: timedelta, now: datetime
) -> dict[UUID, int]:
    """Take up to `limit` enabled destinations nobody holds (see `_free`).

    Destinations are taken tenant by tenant, so a tenant's destinations tend to share a
    worker (and its change feed). Returns destination id → lease epoch. On PostgreSQL,
    rows another worker is taking at the same moment are skipped, not waited for.
    """
    if limit < 1:
        return {}
    # A lease row for every enabled destination that has none yet (new destinations).
    missing = select(_D.id, literal(""), literal(0), _D.tenant_id).where(
        _D.enabled.is_(True), ~select(_L.destination_id).where(_L.destination_id == _D.id).exists()
    )
    make = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        make(leases)
        .from_select(["destination_id", "owner", "epoch", "tenant_id"], missing)
        .on_conflict_do_nothing()
    )
    free = leases.alias("free")
    chosen = (
        select(free.c.destination_id)
        .join(destinations, _D.id == free.c.destination_id)
        .where(_D.enabled.is_(True), _free(free, ttl=ttl, now=now))
        .order_by(_D.tenant_id, _D.id)
        .limit(limit)
        .with_for_update(of=free, skip_locked=True)
    )
    rows = conn.execute(
        update(leases)
        .where(_L.destination_id.in_(chosen), _free(leases, ttl=ttl, now=now))
        .values(owner=owner, epoch=_L.epoch + 1)
        .returning(_L.destination_id, _L.epoch)
    )
    return {uuid_from_canonical(ident): epoch for ident, epoch in rows}


def release_leases(
    conn: Connection, *, owner: str, destination_ids: list[UUID] | None = None
) -> int:
    """Give leases back in one statement (all of `owner`'s when `destination_ids` is None),
    so another worker need not wait for this one's heartbeat to lapse; returns how many."""
    condition = _L.owner == owner
    if destination_ids is not None:
        if not destination_ids:
            return 0
        condition = condition & _L.destination_id.in_(sorted(str(i) for i in destination_ids))
    return conn.execute(update(leases).where(condition).values(owner="")).rowcount


def refresh_lease_statistics(conn: Connection) -> None:
    """Have PostgreSQL count the leases again after many changed hands at once.

    The change feed asks, row by row, whether an event's tenant is one the worker serves
    (through its leases). With statistics from before a worker took thousands of leases,
    the planner believed it held a few dozen and compared every row with all of them
    (seconds per read); with fresh ones it probes the index. Autovacuum would refresh them
    too, but later. Only the table's owner may analyze it: the workers' role calls a
    function with the owner's rights (`store.scope.create_functions`). Does nothing on
    SQLite.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT {ANALYZE_LEASES}()")
