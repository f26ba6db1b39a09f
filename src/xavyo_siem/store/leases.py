"""Leases: each destination is delivered by one worker at a time.

A lease row names its owner and an expiry; a worker renews its leases well before they
expire, and another worker may take over a lease only once it has expired. Each takeover
increments `epoch`, which fences the previous owner's writes (see state.py). A released
lease keeps its row (no owner, expired), so its epoch keeps counting.

Workers register in `workers` with a heartbeat and work in bulk, a few statements per
interval whatever the number of destinations: `heartbeat` (and the fair share of
destinations among the live workers), `renew_leases` (all of a worker's at once),
`acquire_leases` (up to a number of free ones, tenant by tenant, in one statement) and
`release_leases`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import Connection, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from xavyo_siem.model import to_epoch_us, uuid_from_canonical
from xavyo_siem.store.tables import destinations, leases, workers

__all__ = [
    "LeaseLost",
    "acquire_leases",
    "forget_worker",
    "heartbeat",
    "release_leases",
    "renew_leases",
]

_L = leases.c
_D = destinations.c
_W = workers.c


class LeaseLost(Exception):
    """Another worker owns the destination now; the loop that held it must stop writing."""


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


def forget_worker(conn: Connection, *, owner: str) -> None:
    """A worker that stops leaves the register (and the others' fair share grows at once)."""
    conn.execute(delete(workers).where(_W.owner == owner))


def renew_leases(
    conn: Connection, *, owner: str, ttl: timedelta, now: datetime
) -> dict[UUID, tuple[int, int]]:
    """Extend every lease `owner` holds on an enabled destination, in one statement.

    Returns what it holds: destination id → (lease epoch, the destination's `updated_us`,
    which tells a worker that its settings changed). A lease missing from the answer was
    lost (taken over after it expired) or its destination was disabled or removed.
    """
    expires = to_epoch_us(now + ttl)
    enabled = select(_D.id).where(_D.enabled.is_(True))
    conn.execute(
        update(leases)
        .where(_L.owner == owner, _L.destination_id.in_(enabled))
        .values(expires_us=expires)
    )
    rows = conn.execute(
        select(_L.destination_id, _L.epoch, _D.updated_us)
        .join(destinations, _D.id == _L.destination_id)
        .where(_L.owner == owner, _L.expires_us == expires, _D.enabled.is_(True))
    )
    return {uuid_from_canonical(ident): (epoch, updated) for ident, epoch, updated in rows}


def acquire_leases(
    conn: Connection, *, owner: str, limit: int, ttl: timedelta, now: datetime
) -> dict[UUID, int]:
    """Take up to `limit` enabled destinations nobody holds (or whose lease expired).

    Destinations are taken tenant by tenant, so a tenant's destinations tend to share a
    worker (and its change feed). Returns destination id → lease epoch. On PostgreSQL,
    rows another worker is taking at the same moment are skipped, not waited for.
    """
    if limit < 1:
        return {}
    now_us = to_epoch_us(now)
    # A lease row for every enabled destination that has none yet (new destinations).
    missing = select(_D.id, literal(""), literal(0), literal(0)).where(
        _D.enabled.is_(True), ~select(_L.destination_id).where(_L.destination_id == _D.id).exists()
    )
    make = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        make(leases)
        .from_select(["destination_id", "owner", "epoch", "expires_us"], missing)
        .on_conflict_do_nothing()
    )
    free = leases.alias("free")
    chosen = (
        select(free.c.destination_id)
        .join(destinations, _D.id == free.c.destination_id)
        .where(_D.enabled.is_(True), free.c.expires_us <= now_us)
        .order_by(_D.tenant_id, _D.id)
        .limit(limit)
        .with_for_update(of=free, skip_locked=True)
    )
    rows = conn.execute(
        update(leases)
        .where(_L.destination_id.in_(chosen), _L.expires_us <= now_us)
        .values(owner=owner, epoch=_L.epoch + 1, expires_us=to_epoch_us(now + ttl))
        .returning(_L.destination_id, _L.epoch)
    )
    return {uuid_from_canonical(ident): epoch for ident, epoch in rows}


def release_leases(
    conn: Connection, *, owner: str, destination_ids: list[UUID] | None = None
) -> int:
    """Give leases back in one statement (all of `owner`'s when `destination_ids` is None),
    so another worker need not wait for them to expire; returns how many."""
    condition = _L.owner == owner
    if destination_ids is not None:
        if not destination_ids:
            return 0
        condition = condition & _L.destination_id.in_(sorted(str(i) for i in destination_ids))
    return conn.execute(update(leases).where(condition).values(owner="", expires_us=0)).rowcount
