"""A source: a table of the identity provider's own database that the worker tails.

`TableSource` is what `xavyo-siem source add` stored: where the rows are (the peer's
origin and the table), which column feeds which event field, and the columns that give
the rows their gap-free order. `SourceState` is how far the worker got and how it went.
Neither holds the connection string: it is sealed in the store and opened only by the
worker and by `source add` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from xavyo_siem.model.conversions import format_timestamp

__all__ = ["SourcePosition", "SourceState", "TableSource"]


@dataclass(frozen=True, slots=True, order=True)
class SourcePosition:
    """A row's place in the peer table's order: its writer's transaction id and its
    sequence number. `SourcePosition(0, 0)` is before every row."""

    xid: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class SourceState:
    """How far a source got and how its last attempts went.

    `synced_at` is when the worker last read every final row (lag: the time since);
    `failures` counts the attempts that failed since the last success, `last_error` the
    latest one's reason (scrubbed of the connection string).
    """

    position: SourcePosition = SourcePosition()
    events_read: int = 0
    quarantined: int = 0
    synced_at: datetime | None = None
    failures: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    def lag_s(self, now: datetime) -> float | None:
        """Seconds since the source last read everything the peer had final (None: never)."""
        return None if self.synced_at is None else max((now - self.synced_at).total_seconds(), 0)


@dataclass(frozen=True, slots=True)
class TableSource:
    """A peer table tailed into the store (`source_type` `postgres_table`).

    `peer` is the connection string's origin (`postgresql://host:port`), which its sealed
    form is bound to; `table` is `schema.table`; `mapping` maps event fields (and
    `metadata.KEY`) to columns; `xid_column`/`seq_column` give the order.
    """

    id: UUID
    name: str
    source_type: str
    peer: str
    table: str
    mapping: Mapping[str, str]
    xid_column: str
    seq_column: str
    batch_rows: int
    enabled: bool
    created_at: datetime
    state: SourceState = field(default_factory=SourceState)

    def to_dict(self, *, now: datetime | None = None) -> dict[str, Any]:
        """The JSON form (`source list --json`); never the connection string."""
        state = self.state
        return {
            "id": str(self.id),
            "name": self.name,
            "type": self.source_type,
            "peer": self.peer,
            "table": self.table,
            "mapping": dict(self.mapping),
            "options": {
                "xid_column": self.xid_column,
                "seq_column": self.seq_column,
                "batch_rows": self.batch_rows,
            },
            "enabled": self.enabled,
            "created_at": format_timestamp(self.created_at),
            "cursor": {"xid": state.position.xid, "seq": state.position.seq},
            "events_read": state.events_read,
            "quarantined": state.quarantined,
            "synced_at": None if state.synced_at is None else format_timestamp(state.synced_at),
            "lag_s": None if now is None else state.lag_s(now),
            "failures": state.failures,
            "last_error": state.last_error,
            "last_error_at": (
                None if state.last_error_at is None else format_timestamp(state.last_error_at)
            ),
        }
