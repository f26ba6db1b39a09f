"""The `sources` rows: sources of events tailed from the identity provider's database, with
their sealed connection string, their cursor and their state.

Sources are the platform's, not a tenant's: every function here is platform-wide and reads
or writes the one table, which has no row-level security (on PostgreSQL only the worker's
role may touch it). `advance_source` moves a cursor only from where the caller read it
(compare and set), in the caller's transaction, so the events of a page and the cursor past
them are committed together, and two workers that both read a page cannot both store it
and move on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from xavyo_siem.model import (
    SourcePosition,
    SourceState,
    TableSource,
    from_epoch_us,
    to_epoch_us,
)
from xavyo_siem.store.scope import platform_wide
from xavyo_siem.store.tables import sources

__all__ = [
    "advance_source",
    "find_source",
    "insert_source",
    "list_sources",
    "record_source_failure",
    "remove_source",
    "sealed_dsn",
]

_S = sources.c


def _source(row: Any) -> TableSource:
    options: Mapping[str, Any] = orjson.loads(row.options)
    state = SourceState(
        position=SourcePosition(row.cursor_xid, row.cursor_seq),
        events_read=row.events_read,
        quarantined=row.quarantined,
        synced_at=None if row.synced_us is None else from_epoch_us(row.synced_us),
        failures=row.failures,
        last_error=row.last_error,
        last_error_at=None if row.last_error_us is None else from_epoch_us(row.last_error_us),
    )
    return TableSource(
        id=UUID(row.id),
        name=row.name,
        source_type=row.source_type,
        peer=row.peer,
        table=row.table_name,
        mapping=orjson.loads(row.mapping),
        xid_column=options["xid_column"],
        seq_column=options["seq_column"],
        batch_rows=options["batch_rows"],
        enabled=row.enabled,
        created_at=from_epoch_us(row.created_us),
        state=state,
    )


_COLUMNS = [column for column in sources.c if column.name != "sealed_dsn"]


@platform_wide
def insert_source(conn: Connection, *, source: TableSource, sealed: str) -> TableSource:
    """Store a new source (its name not taken: the caller checked) with its sealed DSN."""
    options = {
        "xid_column": source.xid_column,
        "seq_column": source.seq_column,
        "batch_rows": source.batch_rows,
    }
    conn.execute(
        insert(sources).values(
            id=str(source.id),
            name=source.name,
            source_type=source.source_type,
            peer=source.peer,
            sealed_dsn=sealed,
            table_name=source.table,
            mapping=orjson.dumps(dict(source.mapping)).decode(),
            options=orjson.dumps(options).decode(),
            enabled=source.enabled,
            created_us=to_epoch_us(source.created_at),
            cursor_xid=source.state.position.xid,
            cursor_seq=source.state.position.seq,
            events_read=0,
            quarantined=0,
            failures=0,
        )
    )
    return source


@platform_wide
def list_sources(conn: Connection, *, enabled_only: bool = False) -> list[TableSource]:
    """Every source (platform-wide), by name; with `enabled_only`, the enabled ones."""
    statement = select(*_COLUMNS).order_by(_S.name)
    if enabled_only:
        statement = statement.where(_S.enabled.is_(True))
    return [_source(row) for row in conn.execute(statement)]


@platform_wide
def find_source(conn: Connection, *, name_or_id: str) -> TableSource | None:
    """The source named `name_or_id`, or else the one with that id; None if neither."""
    row = conn.execute(select(*_COLUMNS).where(_S.name == name_or_id)).first()
    if row is None:
        try:
            source_id = str(UUID(name_or_id))
        except ValueError:
            return None
        row = conn.execute(select(*_COLUMNS).where(_S.id == source_id)).first()
    return None if row is None else _source(row)


@platform_wide
def sealed_dsn(conn: Connection, *, source_id: UUID) -> str | None:
    """The sealed connection string of a source (None: it is gone)."""
    return conn.execute(select(_S.sealed_dsn).where(_S.id == str(source_id))).scalar()


@platform_wide
def remove_source(conn: Connection, *, source_id: UUID) -> bool:
    """Delete a source; whether it existed. Its events stay in the store."""
    return conn.execute(delete(sources).where(_S.id == str(source_id))).rowcount > 0


@platform_wide
def advance_source(
    conn: Connection,
    *,
    source_id: UUID,
    expected: SourcePosition,
    position: SourcePosition,
    read: int,
    quarantined: int,
    synced_us: int | None,
) -> bool:
    """Move the cursor from `expected` to `position`, count what was read and set aside,
    clear the failures, and note `synced_us` (given when everything final was read), in the
    caller's transaction. False, and nothing written, when the cursor is no longer at
    `expected` (another worker moved it, or the source is gone): roll back."""
    values: dict[str, Any] = {
        "cursor_xid": position.xid,
        "cursor_seq": position.seq,
        "events_read": _S.events_read + read,
        "quarantined": _S.quarantined + quarantined,
        "failures": 0,
    }
    if synced_us is not None:
        values["synced_us"] = synced_us
    moved = conn.execute(
        update(sources)
        .where(
            _S.id == str(source_id),
            _S.cursor_xid == expected.xid,
            _S.cursor_seq == expected.seq,
        )
        .values(**values)
    )
    return moved.rowcount == 1


@platform_wide
def record_source_failure(conn: Connection, *, source_id: UUID, reason: str, at_us: int) -> None:
    """Note a failed attempt: its reason (already scrubbed) and when; one failure more."""
    conn.execute(
        update(sources)
        .where(_S.id == str(source_id))
        .values(last_error=reason, last_error_us=at_us, failures=_S.failures + 1)
    )
