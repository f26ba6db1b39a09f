"""The change feed's reads: new events of every tenant a worker serves, in one walk.

A worker serves the tenants of the destinations it holds a lease on, and only those: every
read here is scoped by that set (a subquery over the worker's leases), never wider. The
feed walks the store's gap-free order (`(txid, seq)` below the horizon, see events.py)
across those tenants, so one read per wake-up serves all of the worker's destinations,
however many. A destination behind the feed catches up with its own tenant-scoped reads
(`events.read_events_after`) until it reaches the feed's mark for its tenant
(`tenant_heads` at the start), then takes its events from the feed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Connection, exists, literal_column, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.model import AuditEvent, uuid_from_canonical
from xavyo_siem.store.event_rows import EVENT_COLUMNS, events_of
from xavyo_siem.store.events import (
    START,
    EventCursor,
    after_position,
    below_horizon,
    read_horizon,
    read_page,
)
from xavyo_siem.store.scope import FEED_MARK, scoped
from xavyo_siem.store.tables import audit_events, leases

__all__ = [
    "FeedPage",
    "feed_start",
    "read_feed",
    "tenant_heads",
    "unfinished_after",
]

_T = audit_events.c
_TENANT_AT = 2 + [column.name for column in EVENT_COLUMNS].index("tenant_id")


@dataclass(frozen=True, slots=True)
class FeedPage:
    """New events by tenant, each with its position, and where the feed continues from."""

    by_tenant: dict[UUID, list[tuple[EventCursor, AuditEvent]]]
    position: EventCursor
    count: int
    # Committed events of a served tenant lie past the horizon: final once an older
    # transaction (of any database of the cluster) ends, and worth reading again soon.
    waiting: bool = False


def _served(owner: str) -> Any:
    """The tenants `owner` serves: those of the destinations it holds a lease on."""
    return select(leases.c.tenant_id).where(leases.c.owner == owner)


def _is_served(owner: str) -> ColumnElement[bool]:
    """The event's tenant is one `owner` serves, asked row by row through the leases'
    tenant index: as `tenant_id IN (…)`, PostgreSQL compared each row with every served
    tenant in turn (a nested loop over thousands of tenants, per row). The leases carry
    the tenant so that this never reads `destinations`, whose row-level security leaves
    the planner guessing how many rows it holds."""
    return exists().where(leases.c.tenant_id == _T.tenant_id, leases.c.owner == owner)


# Every row has txid >= 0; saying so, as a literal, lets PostgreSQL use the feed's partial
# index `ix_audit_events_order` (see migration 0005), which tenant-scoped reads cannot.
_FEED_INDEX: Final = _T.txid >= literal_column("0")


def _in_order(conn: Connection) -> list[ColumnElement[Any]]:
    # SQLite's txid is always 0 and its row id is the order; see events.after_position.
    return [_T.txid, _T.seq] if conn.dialect.name == "postgresql" else [_T.seq]


@scoped
def read_feed(conn: Connection, *, owner: str, after: EventCursor, limit: int) -> FeedPage:
    """Up to `limit` final events after `after`, of the tenants `owner` serves, in order."""
    rows, horizon = read_page(
        conn,
        columns=(_T.txid, _T.seq, *EVENT_COLUMNS),
        conditions=(_FEED_INDEX, *after_position(conn, after), _is_served(owner)),
        order=_in_order(conn),
        after=after,
        limit=limit,
    )
    grouped: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        grouped[row[_TENANT_AT]].append(row)
    by_tenant = {}
    for tenant_text, tenant_rows in grouped.items():
        tenant = uuid_from_canonical(tenant_text)
        events = events_of(tenant_rows, tenant_id=tenant)
        by_tenant[tenant] = [
            (EventCursor(row[0], row[1]), event)
            for row, event in zip(tenant_rows, events, strict=True)
        ]
    position = EventCursor(rows[-1][0], rows[-1][1]) if rows else after
    waiting = False
    if len(rows) < limit:
        # Every served event up to the store's last final one was read: move past the other
        # tenants' events too, so the next read does not walk them again.
        position = max(position, _last_final(conn, horizon))
        if conn.dialect.name == "postgresql":
            waiting = _unfinished(conn, owner=owner, after=position)
    return FeedPage(by_tenant, position, len(rows), waiting)


def _last_final(conn: Connection, horizon: int, *, skip: int = 0) -> EventCursor:
    """The position of the store's last final event of any tenant, or of the one `skip`
    events before it (START when there is none).

    On PostgreSQL row-level security hides the other tenants' events from a worker; the
    function `xavyo_siem_feed_mark` (see `store.scope`) tells the position alone.
    """
    if conn.dialect.name == "postgresql":
        row = conn.exec_driver_sql(
            f"SELECT txid, seq FROM {FEED_MARK}(%s, %s)", (horizon, skip)
        ).first()
        return START if row is None else EventCursor(row[0], row[1])
    row = conn.execute(
        select(_T.txid, _T.seq)
        .where(_FEED_INDEX, *below_horizon(horizon))
        .order_by(*(column.desc() for column in _in_order(conn)))
        .offset(skip)
        .limit(1)
    ).first()
    return START if row is None else EventCursor(row[0], row[1])


def feed_start(conn: Connection, *, not_before: EventCursor, window: int) -> EventCursor:
    """Where a new feed starts: at `not_before` (the oldest cursor of the worker's
    destinations), unless more than `window` final events follow it; then just before the
    last `window` of them.

    A destination whose cursor is at or after the start follows the feed from the first
    read, so a common backlog (many destinations just added, a worker back after an
    outage) is read once, not once per destination; one further behind catches up alone.
    The window counts every tenant's events, which the feed's first reads walk.
    """
    return max(_last_final(conn, read_horizon(conn), skip=window), not_before)


@scoped
def tenant_heads(
    conn: Connection, *, owner: str, at_most: EventCursor | None = None
) -> dict[UUID, EventCursor]:
    """For each tenant `owner` serves, the position of its last final event (at or before
    `at_most`, when given; tenants with no such event are left out): the feed's mark for
    the tenant, where a destination of it joins the feed."""
    horizon = read_horizon(conn)
    served = _served(owner).distinct().subquery()
    last = audit_events.alias("last")

    def newest(column: str) -> Any:
        return (
            select(last.c[column])
            .where(
                last.c.tenant_id == served.c.tenant_id,
                *below_horizon(horizon, last.c.txid),
                *([] if at_most is None else _at_most(conn, last, at_most)),
            )
            .order_by(last.c.txid.desc(), last.c.seq.desc())
            .limit(1)
            .scalar_subquery()
        )

    rows = conn.execute(select(served.c.tenant_id, newest("txid"), newest("seq")))
    return {
        uuid_from_canonical(tenant): EventCursor(txid, seq)
        for tenant, txid, seq in rows
        if seq is not None
    }


def _at_most(conn: Connection, table: Any, position: EventCursor) -> list[ColumnElement[bool]]:
    if conn.dialect.name == "postgresql":
        return [tuple_(table.c.txid, table.c.seq) <= tuple_(position.txid, position.seq)]
    return [table.c.seq <= position.seq]


@scoped
def unfinished_after(conn: Connection, *, owner: str, after: EventCursor) -> bool:
    """True when any event of a served tenant lies after `after`, final or not: the feed
    has not seen everything yet (a transaction may still be committing)."""
    return _unfinished(conn, owner=owner, after=after)


def _unfinished(conn: Connection, *, owner: str, after: EventCursor) -> bool:
    return bool(
        conn.execute(
            select(exists().where(_FEED_INDEX, *after_position(conn, after), _is_served(owner)))
        ).scalar()
    )
