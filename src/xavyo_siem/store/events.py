"""Tenant-scoped reads of audit events, in an order that never skips an event (appends are
in append.py; both write and read rows in the order of the model's field declaration).

Ordering. Every row records the transaction that inserted it (`txid`) and a sequence number
(`seq`). Readers walk a tenant's events in `(txid, seq)` order and only ever look at rows
whose transaction is older than the *horizon*: the oldest transaction still running
(PostgreSQL's `pg_snapshot_xmin(pg_current_snapshot())`). Every transaction below the horizon
has finished, so the set of rows below it can no longer change, and every transaction that
starts later gets a larger id. A cursor that has passed `(txid, seq)` therefore never has a row
appear behind it, even when a transaction that took sequence number 99 commits after the one
that took 100. The price is latency, not loss: a long-running transaction anywhere in the
cluster holds back delivery until it ends.

SQLite has a single writer whose transactions commit in `seq` order, so there `txid` is 0 and
there is no horizon.

Reads by id. On PostgreSQL the events keep no index by event id (ingest would insert into
it at a random place for every event, see migration 0015): `audit_event_keys` says where
each event is, `(txid, seq)` in the partition of its `received_us`, and a read by id goes
from the key to the event through the `(tenant_id, txid, seq)` index (`select_by_id`).
SQLite reads its events' unique `(tenant_id, event_id)` index.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    and_,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.errors import StoreError, TenantRequired
from xavyo_siem.model import AuditEvent, EventFilter, from_epoch_us, to_epoch_us
from xavyo_siem.store.event_rows import EVENT_COLUMNS, events_of
from xavyo_siem.store.partitions import (
    forget_partitions,
    received_floor,
    received_floor_now,
    received_since,
)
from xavyo_siem.store.scope import scoped
from xavyo_siem.store.tables import audit_event_keys, audit_events

__all__ = [
    "START",
    "EventCursor",
    "EventPage",
    "TimeKey",
    "after_position",
    "below_horizon",
    "fetch_rows",
    "head_cursor",
    "measure_lag",
    "read_events_after",
    "read_events_by_id",
    "read_events_in_range",
    "read_horizon",
    "read_page",
    "select_by_id",
]

_T = audit_events.c
_K = audit_event_keys.c
_NO_HORIZON: Final = 1 << 62


@dataclass(frozen=True, slots=True, order=True)
class EventCursor:
    """A position in one tenant's event order: after the row `(txid, seq)`."""

    txid: int = 0
    seq: int = 0

    def encode(self) -> str:
        """The cursor as text, e.g. `812.4411`, for the store and the API."""
        return f"{self.txid}.{self.seq}"

    @classmethod
    def decode(cls, text: str) -> EventCursor:
        """Parse `encode()`'s text; raises ValueError naming the form."""
        txid, sep, seq = text.partition(".")
        if not sep or not txid.isdigit() or not seq.isdigit():
            raise ValueError(f"cursor: must look like <txid>.<seq>, got {text[:40]!r}")
        return cls(int(txid), int(seq))


START: Final = EventCursor(0, 0)


@dataclass(frozen=True, slots=True)
class TimeKey:
    """A position in one tenant's time order: after the row with `(ts_us, seq)`."""

    ts_us: int
    seq: int


def after_position(conn: Connection, after: EventCursor) -> list[ColumnElement[bool]]:
    """Rows after `after` in `(txid, seq)` order, as conditions an index range can serve.

    PostgreSQL walks the `(tenant_id, txid, seq)` index from the row value. SQLite would
    turn the row value into `txid >= ?` and filter every row of the tenant (its txid is
    always 0), which made each page cost the whole backlog; there `seq` alone orders rows.
    """
    if conn.dialect.name == "postgresql":
        return [tuple_(_T.txid, _T.seq) > tuple_(after.txid, after.seq)]
    return [_T.txid == 0, _T.seq > after.seq]


def after_time_key(after: TimeKey) -> list[ColumnElement[bool]]:
    """Rows after `after` in `(ts_us, seq)` order: an index range on `ts_us`, then a filter
    that only rows of that very microsecond need (both backends use the index this way)."""
    return [_T.ts_us >= after.ts_us, or_(_T.ts_us > after.ts_us, _T.seq > after.seq)]


def _filter_conditions(filter: EventFilter) -> list[ColumnElement[bool]]:
    """`filter` as SQL conditions; decides exactly as `EventFilter.matches`."""
    conditions: list[ColumnElement[bool]] = []
    if filter.categories:
        conditions.append(_T.category.in_(sorted(c.value for c in filter.categories)))
    if filter.event_types:
        conditions.append(_T.event_type.in_(sorted(filter.event_types)))
    if filter.min_severity > 0:
        conditions.append(_T.severity >= filter.min_severity)
    return conditions


EVERYTHING: Final = EventFilter()


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events read in order, and the cursor to continue from (past filtered-out rows too)."""

    events: list[AuditEvent]
    cursor: EventCursor


def _require_tenant(tenant_id: UUID | None) -> str:
    if tenant_id is None:
        raise TenantRequired()
    if not isinstance(tenant_id, UUID):
        raise StoreError(f"tenant_id: must be a UUID, got {type(tenant_id).__name__}")
    return str(tenant_id)


# The horizon as SQL: stable within a statement, so a page's condition and the value it
# returns agree, and the planner estimates the condition with its current value.
_HORIZON: Final = literal_column(
    "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint", BigInteger()
)


def read_horizon(conn: Connection) -> int:
    """Rows of transactions below this id are final (see the module docstring)."""
    if conn.dialect.name != "postgresql":
        return _NO_HORIZON
    value = conn.exec_driver_sql(
        "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"
    ).scalar_one()
    return int(value)


def fetch_rows(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """Run `statement` on the raw driver cursor: plain tuples, no per-row result processing.

    The read path is the hot path of every export; SQLAlchemy's Row objects and type
    processors cost more per row than building the events does.
    """
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    args: Any = (
        tuple(params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else params
    )
    if not conn.in_transaction():
        # The raw cursor bypasses SQLAlchemy's autobegin: begin first, so that this read and
        # the statements after it share one transaction (on SQLite: one snapshot).
        conn.begin()
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(compiled.string, args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def read_page(
    conn: Connection,
    *,
    columns: Sequence[ColumnElement[Any]],
    conditions: Sequence[ColumnElement[bool]],
    order: Sequence[ColumnElement[Any]],
    after: EventCursor,
    limit: int,
) -> tuple[list[tuple[Any, ...]], int]:
    """The first `limit` rows of `columns` in `order` that meet `conditions` (the position
    after `after` among them) and are final, with the horizon they were read below: one
    statement a page.

    On PostgreSQL the statement reads the horizon and the partitions' floor
    (`partitions.received_floor_now`) in its own snapshot, beside the page, which is pruned
    to the partitions from this connection's guess of the floor on (at planning, with the
    guess as a constant). A guess below the floor it read only read more partitions than
    needed; a guess above it (a partition made since the connection read them) may have
    left events out: the page is read again from that floor. Either way the connection
    reads the partitions anew for its next guess.
    """
    if conn.dialect.name != "postgresql":
        statement = select(*columns).where(*conditions).order_by(*order).limit(limit)
        return fetch_rows(conn, statement), _NO_HORIZON
    marks = select(
        _HORIZON.label("horizon"), received_floor_now(after.txid).label("floor")
    ).subquery("marks")
    guess = received_floor(conn, after.txid)
    while True:
        floor = [] if guess is None else [_T.received_us >= guess]
        page = (
            select(*columns)
            .where(*conditions, _T.txid < _HORIZON, *floor)
            .order_by(*order)
            .limit(limit)
            .subquery("page")
        )
        # A left join on true: one row of marks when the page is empty, and the page's rows
        # in its order (a nested loop over the one row of marks is the only plan).
        rows = fetch_rows(
            conn,
            select(*page.c, marks.c.horizon, marks.c.floor).select_from(
                marks.outerjoin(page, true())
            ),
        )
        horizon, floor_now = rows[0][-2], rows[0][-1]
        if floor_now != guess:
            forget_partitions(conn)
        if guess is None or floor_now is None or guess <= floor_now:
            break
        guess = floor_now
    return ([] if rows[0][0] is None else rows), int(horizon)


@scoped
def read_events_after(
    conn: Connection,
    *,
    tenant_id: UUID,
    after: EventCursor = START,
    limit: int = 1000,
    filter: EventFilter = EVERYTHING,
) -> EventPage:
    """Up to `limit` of the tenant's final events after `after`, in order, that match `filter`.

    The returned cursor continues the walk. It also moves past rows the filter left out, so
    a destination that wants few events does not re-scan the ones it skipped. Call inside a
    transaction (`engine.begin()` / `engine.connect()`): on SQLite that pins one snapshot.
    """
    tenant = _require_tenant(tenant_id)
    if limit < 1:
        raise ValueError("limit: must be at least 1")
    rows, horizon = read_page(
        conn,
        columns=(_T.txid, _T.seq, *EVENT_COLUMNS),
        conditions=(
            _T.tenant_id == tenant,
            *_after_in_tenant_order(conn, after),
            *_filter_conditions(filter),
        ),
        order=(_T.txid, _T.seq),
        after=after,
        limit=limit,
    )
    events = events_of(rows, tenant_id=tenant_id)
    cursor = EventCursor(rows[-1][0], rows[-1][1]) if rows else after
    if len(rows) < limit and not filter.is_everything:
        last = _last_final(conn, tenant=tenant, horizon=horizon)
        if last is not None and last > cursor:
            cursor = last
    return EventPage(events, cursor)


def below_horizon(horizon: int, txid: Any = _T.txid) -> list[ColumnElement[bool]]:
    """Rows below `horizon` (of the table whose txid column is `txid`), as conditions."""
    # No horizon (SQLite) means no condition: a dummy bound would steer SQLite's planner
    # into a range on txid and a sort, instead of the index's own order.
    return [] if horizon == _NO_HORIZON else [txid < horizon]


def _after_in_tenant_order(conn: Connection, after: EventCursor) -> list[ColumnElement[bool]]:
    """`after_position` for one tenant's read, written on PostgreSQL as `(txid, seq) >=
    (txid, seq + 1)`: the same rows, estimated better.

    The planner estimates a row value by its first column alone. As `txid > t` it counted
    none of the rows of a large transaction `t` still to read (the ingest of a file is
    one), and with several partitions it sorted all of the tenant's rows left for each page
    instead of merging the partitions' index order. As `txid >= t` it counts them all,
    which under the page's limit favours reading in index order. (The change feed keeps
    `>`: it joins the leases, and a high estimate there chooses a hash join and a sort.)
    """
    if conn.dialect.name == "postgresql":
        return [tuple_(_T.txid, _T.seq) >= tuple_(after.txid, after.seq + 1)]
    return after_position(conn, after)


def _last_final(conn: Connection, *, tenant: str, horizon: int) -> EventCursor | None:
    row = conn.execute(
        select(_T.txid, _T.seq)
        .where(_T.tenant_id == tenant, *below_horizon(horizon))
        .order_by(_T.txid.desc(), _T.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else EventCursor(row[0], row[1])


@scoped
def head_cursor(conn: Connection, *, tenant_id: UUID) -> EventCursor:
    """The cursor just after the tenant's last final event: where "start now" begins."""
    tenant = _require_tenant(tenant_id)
    return _last_final(conn, tenant=tenant, horizon=read_horizon(conn)) or START


@scoped
def read_events_in_range(
    conn: Connection,
    *,
    tenant_id: UUID,
    start: datetime | None = None,
    end: datetime | None = None,
    after: TimeKey | None = None,
    limit: int = 1000,
    filter: EventFilter = EVERYTHING,
) -> tuple[list[AuditEvent], TimeKey | None]:
    """Up to `limit` of the tenant's events with `start <= timestamp < end`, in time order.

    Pass the returned key as `after` to continue; it is None when nothing was read. Uses the
    `(tenant_id, ts_us, seq)` index, so no other tenant's rows are scanned.
    """
    tenant = _require_tenant(tenant_id)
    if limit < 1:
        raise ValueError("limit: must be at least 1")
    conditions: list[ColumnElement[bool]] = [_T.tenant_id == tenant, *_filter_conditions(filter)]
    if start is not None:
        conditions += received_since(conn, to_epoch_us(start))
    if start is not None and after is None:  # past the first page the key is the lower bound
        conditions.append(_T.ts_us >= to_epoch_us(start))
    if end is not None:
        conditions.append(_T.ts_us < to_epoch_us(end))
    if after is not None:
        conditions += after_time_key(after)
    statement = (
        select(_T.ts_us.label("key_ts"), _T.seq, *EVENT_COLUMNS)
        .where(and_(*conditions))
        .order_by(_T.ts_us, _T.seq)
        .limit(limit)
    )
    rows = fetch_rows(conn, statement)
    key = TimeKey(rows[-1][0], rows[-1][1]) if rows else None
    return events_of(rows, tenant_id=tenant_id), key


@scoped
def read_events_by_id(
    conn: Connection, *, tenant_id: UUID, event_ids: Sequence[UUID]
) -> list[AuditEvent]:
    """The tenant's events with these ids, in store order (ids it does not have are left out)."""
    if not event_ids:
        return []
    tenant = _require_tenant(tenant_id)
    ids = sorted({str(e) for e in event_ids})
    statement = select_by_id(conn, _T.txid, _T.seq, *EVENT_COLUMNS, tenant=tenant, event_ids=ids)
    return events_of(fetch_rows(conn, statement.order_by(_T.txid, _T.seq)), tenant_id=tenant_id)


def select_by_id(
    conn: Connection, *columns: Any, tenant: str, event_ids: Collection[str]
) -> Select[Any]:
    """`columns` of the events of `tenant` with these ids (canonical text). On PostgreSQL
    each key leads to its event: the `(tenant_id, txid, seq)` index, in the one partition
    of the key's received time."""
    if conn.dialect.name != "postgresql":
        return select(*columns).where(_T.tenant_id == tenant, _T.event_id.in_(event_ids))
    located = audit_event_keys.join(
        audit_events,
        and_(
            _T.tenant_id == tenant,
            _T.txid == _K.txid,
            _T.seq == _K.seq,
            _T.received_us == _K.received_us,
        ),
    )
    return (
        select(*columns)
        .select_from(located)
        .where(_K.tenant_id == tenant, _K.event_id.in_(event_ids))
    )


@scoped
def measure_lag(
    conn: Connection,
    *,
    tenant_id: UUID,
    after: EventCursor,
    filter: EventFilter = EVERYTHING,
    cap: int = 1_000_000,
) -> tuple[int, datetime | None]:
    """How many of the tenant's matching events wait after `after` (counted up to `cap`),
    and the timestamp of the first of them in delivery order (None when nothing waits).

    Both are index walks that stop early: the count at `cap` rows, the first at one.
    """
    tenant = _require_tenant(tenant_id)
    conditions = (
        _T.tenant_id == tenant,
        *after_position(conn, after),
        *_filter_conditions(filter),
    )
    count = conn.execute(
        select(func.count()).select_from(select(_T.seq).where(*conditions).limit(cap).subquery())
    ).scalar_one()
    oldest = None
    if count:
        oldest = conn.execute(
            select(_T.ts_us).where(*conditions).order_by(_T.txid, _T.seq).limit(1)
        ).scalar()
    return int(count), None if oldest is None else from_epoch_us(oldest)
