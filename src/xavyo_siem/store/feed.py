"""The change feed's reads: new events of every tenant a worker serves, in one walk.

A worker serves the tenants of the destinations it holds a lease on, and only those: every
read here is scoped by that set (a subquery over the worker's leases), never wider. The
feed walks the store's gap-free order (`(txid, seq)` below the horizon, see events.py)
across those tenants, so one read per wake-up serves all of the worker's destinations,
however many. A destination behind the feed catches up with its own tenant-scoped reads
(`events.read_events_after`) until it reaches the feed's mark for its tenant
(`tenant_heads` at the start), then takes its events from the feed.

A feed that starts behind walks that backlog tenant by tenant first (`read_catch_up`): the
events up to the store's last final one when it started, each tenant's together, still
in pages of the same size. A page then brings each destination its tenant's whole run
(up to the page), not the few of its events that one page of every tenant's interleaved
events holds: a backlog over a thousand tenants goes out in a batch or two per
destination instead of one per page. The feed then goes on in store order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, NamedTuple
from uuid import UUID

from sqlalchemy import Connection, case, exists, literal_column, select, true, tuple_
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.model import AuditEvent, uuid_from_canonical
from xavyo_siem.store.event_rows import EVENT_COLUMNS, events_of
from xavyo_siem.store.events import (
    START,
    EventCursor,
    after_position,
    below_horizon,
    fetch_rows,
    read_horizon,
    read_page,
)
from xavyo_siem.store.partitions import forget_partitions, received_floor
from xavyo_siem.store.scope import FEED_MARK, scoped
from xavyo_siem.store.tables import audit_events, leases

__all__ = [
    "CatchUp",
    "CatchUpRows",
    "FeedPage",
    "FeedStart",
    "catch_up",
    "feed_start",
    "fetch_catch_up",
    "read_catch_up",
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


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Where a feed that started behind is in its walk over the backlog: the events after
    `start` and up to `through` (final when the walk began), by tenant (the text order of
    their ids), each tenant's in store order; `tenant` is the tenant read last, `after`
    the position of its last event read ("" and `start` before the first read)."""

    start: EventCursor
    through: EventCursor
    tenant: str = ""
    after: EventCursor = START


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
    by_tenant = _by_tenant(rows)
    position = EventCursor(rows[-1][0], rows[-1][1]) if rows else after
    waiting = False
    if len(rows) < limit:
        # Every served event up to the store's last final one was read: move past the other
        # tenants' events too, so the next read does not walk them again.
        position = max(position, _last_final(conn, horizon))
        if conn.dialect.name == "postgresql":
            waiting = _unfinished(conn, owner=owner, after=position)
    return FeedPage(by_tenant, position, len(rows), waiting)


def _by_tenant(rows: list[tuple[Any, ...]]) -> dict[UUID, list[tuple[EventCursor, AuditEvent]]]:
    """Rows of `(txid, seq, *EVENT_COLUMNS)` as each tenant's events with their positions,
    in the rows' order."""
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
    return by_tenant


@scoped
def catch_up(conn: Connection, *, owner: str, start: EventCursor) -> CatchUp | None:
    """The walk over the backlog the feed of `owner` starting at `start` reads first: every
    event after `start` that is final now (None when there is none)."""
    through = _last_final(conn, read_horizon(conn))
    return CatchUp(start, through, after=start) if through > start else None


def read_catch_up(
    conn: Connection, *, owner: str, walk: CatchUp, limit: int
) -> tuple[FeedPage, CatchUp | None]:
    """Up to `limit` events of the walk (see `CatchUp`) after where it is, of the tenants
    `owner` serves; and where the walk goes on (None: it is done, and the feed goes on in
    store order from `walk.through`).

    Every event of the range is final, so none can appear in it later; an event appears
    once, each tenant's in order, which is all a destination needs (it has one tenant).
    Scoped to `owner` (by `fetch_catch_up`).
    """
    fetched = fetch_catch_up(conn, owner=owner, walk=walk, limit=limit)
    return fetched.page(), fetched.walk


@dataclass(frozen=True, slots=True)
class CatchUpRows:
    """A page of the walk as the store gave it, and where the walk goes on (None: done).
    The rows become events with `page()`, which needs no connection: the next page can be
    read meanwhile."""

    rows: list[tuple[Any, ...]]
    position: EventCursor
    walk: CatchUp | None

    def page(self) -> FeedPage:
        return FeedPage(_by_tenant(self.rows), self.position, len(self.rows))


@scoped
def fetch_catch_up(conn: Connection, *, owner: str, walk: CatchUp, limit: int) -> CatchUpRows:
    """`read_catch_up`'s rows, not yet events."""
    if conn.dialect.name == "postgresql":
        rows = fetch_rows(conn, _catch_up_by_tenant(conn, owner, walk, limit))
    else:
        rows = _catch_up_tenant_after_tenant(conn, owner, walk, limit)
    if len(rows) < limit:
        return CatchUpRows(rows, walk.through, None)
    last = rows[-1]
    after = EventCursor(last[0], last[1])
    return CatchUpRows(rows, walk.start, replace(walk, tenant=last[_TENANT_AT], after=after))


def _catch_up_by_tenant(conn: Connection, owner: str, walk: CatchUp, limit: int) -> Any:
    """PostgreSQL: for each served tenant from the walk's on, in order, its events of the
    range through the `(tenant_id, txid, seq)` index from where it starts (a lateral
    read per tenant), so a tenant's history before the range is never walked."""
    served = (
        select(leases.c.tenant_id)
        .where(leases.c.owner == owner, leases.c.tenant_id >= walk.tenant)
        .distinct()
        .subquery("served")
    )
    tenant = served.c.tenant_id
    after = tuple_(
        case((tenant == walk.tenant, walk.after.txid), else_=walk.start.txid),
        case((tenant == walk.tenant, walk.after.seq), else_=walk.start.seq),
    )
    runs = (
        select(_T.txid, _T.seq, *EVENT_COLUMNS)
        .where(
            _T.tenant_id == tenant,
            tuple_(_T.txid, _T.seq) > after,
            tuple_(_T.txid, _T.seq) <= tuple_(walk.through.txid, walk.through.seq),
            *_floor_now(conn, walk.start.txid),
        )
        .order_by(_T.txid, _T.seq)
        .limit(limit)
        .lateral("runs")
    )
    return (
        select(*runs.c)
        .select_from(served.join(runs, true()))
        .order_by(served.c.tenant_id, runs.c.txid, runs.c.seq)
        .limit(limit)
    )


def _floor_now(conn: Connection, after_txid: int) -> list[ColumnElement[bool]]:
    """The partitions a read after a position of transaction `after_txid` needs, from the
    partitions as this transaction sees them (not a connection's earlier guess: the walk's
    statement has no second look)."""
    forget_partitions(conn)
    floor = received_floor(conn, after_txid)
    return [] if floor is None else [_T.received_us >= floor]


def _catch_up_tenant_after_tenant(
    conn: Connection, owner: str, walk: CatchUp, limit: int
) -> list[tuple[Any, ...]]:
    """SQLite (no lateral reads; `seq` alone orders rows): each served tenant's events of
    the range in turn, from the walk's tenant on, each through the `(tenant_id, txid, seq)`
    index. One statement over every tenant made SQLite read the range by row id (`seq`) and
    sort all of it for each page, its memory and time growing with the backlog."""
    tenants = (
        conn.execute(
            select(leases.c.tenant_id)
            .where(leases.c.owner == owner, leases.c.tenant_id >= walk.tenant)
            .distinct()
            .order_by(leases.c.tenant_id)
        )
        .scalars()
        .all()
    )
    rows: list[tuple[Any, ...]] = []
    for tenant in tenants:
        after = walk.after.seq if tenant == walk.tenant else walk.start.seq
        rows += fetch_rows(
            conn,
            select(_T.txid, _T.seq, *EVENT_COLUMNS)
            .where(
                _T.tenant_id == tenant,
                _T.txid == 0,
                _T.seq > after,
                _T.seq <= walk.through.seq,
            )
            .order_by(_T.txid, _T.seq)
            .limit(limit - len(rows)),
        )
        if len(rows) >= limit:
            break
    return rows


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


class FeedStart(NamedTuple):
    """Where a new feed starts, and each served tenant's mark there (`tenant_heads`)."""

    position: EventCursor
    heads: dict[UUID, EventCursor]


def feed_start(
    conn: Connection,
    *,
    owner: str,
    cursors: Iterable[tuple[UUID, EventCursor]],
    window: int,
) -> FeedStart:
    """Where a new feed of `owner` starts, with the served tenants' marks there: at the
    oldest of `cursors` (the worker's
    destinations', each with its tenant) that is among the store's last `window` final
    events, but never after the last final event, where it starts when no cursor is among
    them.

    A destination whose cursor is at or after the start follows the feed from the first
    read, so a common backlog (many destinations just added, a worker back after an
    outage) is read once, not once per destination. A destination further behind whose
    tenant has events after the edge but none between its cursor and the edge (one just
    added with `start=beginning` for a tenant whose events are all recent, in a store that
    holds millions of other tenants' events) counts as at the edge. One whose tenant has
    events before the edge catches up alone, through all of its backlog, and one whose
    tenant has nothing after its cursor (a quiet tenant's) waits for the feed; so the feed
    walks from the edge only for a destination that needs it. The window counts every
    tenant's events, which the feed's first reads walk.
    """
    horizon = read_horizon(conn)
    edge, last = _last_final(conn, horizon, skip=window), _last_final(conn, horizon)
    starts: list[EventCursor] = []
    behind: list[tuple[UUID, EventCursor]] = []
    for tenant, cursor in cursors:
        if cursor >= edge:
            starts.append(cursor)
        else:
            behind.append((tenant, cursor))
    marks: dict[EventCursor, dict[UUID, EventCursor]] = {}
    if behind:
        # Such a destination counts as at the edge when its tenant's last event at or
        # before the edge is at or before its cursor (nothing to read before the edge) and
        # its tenant's last event is after its cursor (something to read after the edge:
        # a quiet tenant's caught-up destination does not move the start).
        marks = {at: tenant_heads(conn, owner=owner, at_most=at) for at in (edge, last)}
        if any(
            marks[edge].get(tenant, START) <= cursor < marks[last].get(tenant, START)
            for tenant, cursor in behind
        ):
            starts.append(edge)
    # Never after the last final event: a cursor can be past it (a start time's position is
    # read without the horizon), and the feed reads nothing before its start.
    start = min([*starts, last])
    heads = marks.get(start)
    return FeedStart(
        start, tenant_heads(conn, owner=owner, at_most=start) if heads is None else heads
    )


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
