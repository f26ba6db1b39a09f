"""Reads of one tenant's time range for batch exports, fixed to the events stored before.

An export covers the events stored before it started, and a resumed export must read exactly
what an uninterrupted one would, however many events are ingested meanwhile. A `Snapshot`
fixes that set:

* PostgreSQL: the rows of every transaction below `txid`, the next transaction id when the
  export started. `snapshot_is_final` says when every transaction that was running then has
  ended; from that moment the set can no longer change (the argument of docs/store.md).
* SQLite: the rows up to `seq`, the last sequence number when the export started. Its single
  writer commits in `seq` order, so every later write gets a larger one.

Reads walk `(ts_us, seq)` order with the `(tenant_id, ts_us, seq)` index and a limit, so
memory is bounded by one page whatever the range. `read_range_parts` is the fast path of
CSV exports: no event is built, and the database writes some of the cells, with SQL the
caller gives (the CSV layout belongs to the format package, which the store does not know).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Connection, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.model import AuditEvent, EventFilter, to_epoch_us
from xavyo_siem.store.event_rows import EVENT_COLUMNS, events_of
from xavyo_siem.store.events import (
    EVERYTHING,
    TimeKey,
    _filter_conditions,
    _require_tenant,
    after_time_key,
    fetch_rows,
)
from xavyo_siem.store.partitions import received_since
from xavyo_siem.store.scope import scoped
from xavyo_siem.store.tables import audit_events

__all__ = [
    "Snapshot",
    "count_in_range",
    "has_events",
    "read_range_events",
    "read_range_parts",
    "snapshot_is_final",
    "start_snapshot",
]

_T = audit_events.c
_NO_LIMIT: Final = 1 << 62


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The events stored before an export started: `txid < txid` and `seq <= seq`."""

    txid: int
    seq: int


def start_snapshot(conn: Connection) -> Snapshot:
    """The snapshot of an export starting now (see the module docstring).

    On PostgreSQL wait until `snapshot_is_final` before reading with it.
    """
    if conn.dialect.name == "postgresql":
        next_txid = conn.exec_driver_sql(
            "SELECT (pg_snapshot_xmax(pg_current_snapshot())::text)::bigint"
        ).scalar_one()
        return Snapshot(int(next_txid), _NO_LIMIT)
    last_seq = conn.execute(select(func.max(_T.seq))).scalar_one()
    return Snapshot(1, int(last_seq or 0))  # SQLite rows all have txid 0


def snapshot_is_final(conn: Connection, snapshot: Snapshot) -> bool:
    """True when no transaction that could add a row to `snapshot` is still running."""
    if conn.dialect.name != "postgresql":
        return True
    oldest = conn.exec_driver_sql(
        "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"
    ).scalar_one()
    return int(oldest) >= snapshot.txid


def _conditions(
    tenant_id: UUID,
    start: datetime | None,
    end: datetime | None,
    filter: EventFilter,
    snapshot: Snapshot | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        _T.tenant_id == _require_tenant(tenant_id),
        *_filter_conditions(filter),
    ]
    if start is not None:
        conditions.append(_T.ts_us >= to_epoch_us(start))
    if end is not None:
        conditions.append(_T.ts_us < to_epoch_us(end))
    if snapshot is not None:
        conditions.append(_T.txid < snapshot.txid)
        if snapshot.seq < _NO_LIMIT:
            conditions.append(_T.seq <= snapshot.seq)
    return conditions


def _received(conn: Connection, start: datetime | None) -> list[ColumnElement[bool]]:
    """The partitions that may hold events stamped from `start` on (see store/partitions)."""
    return received_since(conn, None if start is None else to_epoch_us(start))


@scoped
def has_events(
    conn: Connection,
    *,
    tenant_id: UUID,
    start: datetime | None = None,
    end: datetime | None = None,
    filter: EventFilter = EVERYTHING,
) -> bool:
    """Whether the tenant has any stored event in `[start, end)` that matches `filter`."""
    statement = (
        select(_T.seq)
        .where(*_conditions(tenant_id, start, end, filter, None), *_received(conn, start))
        .limit(1)
    )
    return conn.execute(statement).first() is not None


@scoped
def count_in_range(
    conn: Connection,
    *,
    tenant_id: UUID,
    start: datetime,
    end: datetime,
    filter: EventFilter,
    snapshot: Snapshot,
) -> int:
    """How many of the tenant's events of `snapshot` are in `[start, end)` and match."""
    statement = select(func.count()).where(
        *_conditions(tenant_id, start, end, filter, snapshot), *_received(conn, start)
    )
    return int(conn.execute(statement).scalar_one())


def _page(
    tenant_id: UUID,
    start: datetime,
    end: datetime,
    filter: EventFilter,
    snapshot: Snapshot,
    after: TimeKey | None,
) -> list[ColumnElement[bool]]:
    # Past the first page the key is the lower bound, and the only one: SQLite walks the
    # index from the range's start when both are given, which makes each page cost more.
    conditions = _conditions(tenant_id, start if after is None else None, end, filter, snapshot)
    if after is not None:
        conditions += after_time_key(after)
    return conditions


@scoped
def read_range_events(
    conn: Connection,
    *,
    tenant_id: UUID,
    start: datetime,
    end: datetime,
    filter: EventFilter,
    snapshot: Snapshot,
    after: TimeKey | None,
    limit: int,
) -> tuple[list[AuditEvent], TimeKey | None]:
    """Up to `limit` events of the range after `after`, in time order, and the key of the last."""
    if limit < 1:
        raise ValueError("limit: must be at least 1")
    statement = (
        select(_T.ts_us.label("key_ts"), _T.seq, *EVENT_COLUMNS)
        .where(*_page(tenant_id, start, end, filter, snapshot, after), *_received(conn, start))
        .order_by(_T.ts_us, _T.seq)
        .limit(limit)
    )
    rows = fetch_rows(conn, statement)
    key = TimeKey(rows[-1][0], rows[-1][1]) if rows else None
    return events_of(rows, tenant_id=tenant_id), key


@scoped
def read_range_parts(
    conn: Connection,
    *,
    tenant_id: UUID,
    start: datetime,
    end: datetime,
    filter: EventFilter,
    snapshot: Snapshot,
    after: TimeKey | None,
    limit: int,
    parts: Sequence[str],
) -> tuple[list[tuple[Any, ...]], TimeKey | None]:
    """Like `read_range_events`, as tuples of `parts`, each followed by the row's key.

    `parts` are SQL expressions over the `audit_events` columns, written by the code (the
    CSV export's `format.CSV_SQL_PARTS`), never taken from a request. Each row is
    `(*parts, ts_us, seq)`, `(ts_us, seq)` being its place in the range.
    """
    if limit < 1:
        raise ValueError("limit: must be at least 1")
    columns: list[ColumnElement[Any]] = [literal_column(part) for part in parts]
    statement = (
        select(*columns, _T.ts_us, _T.seq)
        .where(*_page(tenant_id, start, end, filter, snapshot, after), *_received(conn, start))
        .order_by(_T.ts_us, _T.seq)
        .limit(limit)
    )
    rows = fetch_rows(conn, statement)
    key = TimeKey(rows[-1][-2], rows[-1][-1]) if rows else None
    return rows, key
