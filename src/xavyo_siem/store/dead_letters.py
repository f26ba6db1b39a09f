"""Dead letters: events a destination refused for good, with the reason, per destination."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.model import format_timestamp, from_epoch_us, to_epoch_us, uuid_from_canonical
from xavyo_siem.store.scope import scoped
from xavyo_siem.store.tables import dead_letters, leases

__all__ = [
    "DeadLetter",
    "add_dead_letters",
    "list_dead_letters",
    "missing_ids",
    "remove_dead_letters",
    "replay_requested",
    "replays_waiting",
    "request_replay",
    "settle_replay",
]

_DL = dead_letters.c


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused event: which, why, and when."""

    id: int
    destination_id: UUID
    event_id: UUID
    reason: str
    created_at: datetime

    def to_dict(self) -> dict[str, object]:
        """The JSON form for `dead-letters list --json` and the API."""
        return {
            "id": self.id,
            "destination_id": str(self.destination_id),
            "event_id": str(self.event_id),
            "reason": self.reason,
            "created_at": format_timestamp(self.created_at),
        }


@scoped
def add_dead_letters(
    conn: Connection,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    entries: Iterable[tuple[UUID, str]],
    now: datetime,
) -> int:
    """Record `(event_id, reason)` pairs as refused by the destination; returns how many."""
    rows = [
        {
            "tenant_id": str(tenant_id),
            "destination_id": str(destination_id),
            "event_id": str(event_id),
            "reason": reason[:2000],
            "replay": False,
            "created_us": to_epoch_us(now),
        }
        for event_id, reason in entries
    ]
    if rows:
        conn.execute(insert(dead_letters), rows)
    return len(rows)


@scoped
def list_dead_letters(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID, limit: int = 100, after_id: int = 0
) -> list[DeadLetter]:
    """The destination's dead letters, oldest first."""
    return _select(conn, tenant_id, destination_id, limit, _DL.id > after_id)


@scoped
def remove_dead_letters(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID, ids: Iterable[int] | None = None
) -> int:
    """Delete the listed dead letters (all of the destination's when `ids` is None)."""
    statement = delete(dead_letters).where(
        _DL.tenant_id == str(tenant_id), _DL.destination_id == str(destination_id)
    )
    if ids is not None:
        statement = statement.where(_DL.id.in_(list(ids)))
    return conn.execute(statement).rowcount


@scoped
def request_replay(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID, ids: Iterable[int] | None = None
) -> int:
    """Mark dead letters to be sent again by the destination's loop (all when `ids` is None).

    The loop sends them before new events, through the same rate limit, and removes each
    one the destination accepts; replaying never bypasses the pipeline.
    """
    statement = (
        update(dead_letters)
        .where(_DL.tenant_id == str(tenant_id), _DL.destination_id == str(destination_id))
        .values(replay=True)
    )
    if ids is not None:
        statement = statement.where(_DL.id.in_(list(ids)))
    return conn.execute(statement).rowcount


@scoped
def missing_ids(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID, ids: Iterable[int]
) -> list[int]:
    """Those of `ids` that are not dead letters of the destination, in ascending order."""
    wanted = set(ids)
    found = conn.execute(
        select(_DL.id).where(
            _DL.tenant_id == str(tenant_id),
            _DL.destination_id == str(destination_id),
            _DL.id.in_(sorted(wanted)),
        )
    ).scalars()
    return sorted(wanted.difference(found))


@scoped
def replay_requested(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID, limit: int
) -> list[DeadLetter]:
    """Up to `limit` dead letters waiting to be sent again, oldest first."""
    return _select(conn, tenant_id, destination_id, limit, _DL.replay.is_(True))


def _select(
    conn: Connection,
    tenant_id: UUID,
    destination_id: UUID,
    limit: int,
    condition: ColumnElement[bool],
) -> list[DeadLetter]:
    rows = conn.execute(
        select(_DL.id, _DL.event_id, _DL.reason, _DL.created_us)
        .where(
            _DL.tenant_id == str(tenant_id), _DL.destination_id == str(destination_id), condition
        )
        .order_by(_DL.id)
        .limit(limit)
    )
    return [
        DeadLetter(ident, destination_id, uuid_from_canonical(event), reason, from_epoch_us(us))
        for ident, event, reason, us in rows
    ]


@scoped
def settle_replay(
    conn: Connection,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    delivered: Iterable[int],
    refused: Mapping[int, str],
) -> None:
    """After a replay batch: delivered dead letters go; refused ones stay, with the new reason."""
    base = (_DL.tenant_id == str(tenant_id), _DL.destination_id == str(destination_id))
    delivered = list(delivered)
    if delivered:
        conn.execute(delete(dead_letters).where(*base, _DL.id.in_(delivered)))
    for ident, reason in refused.items():
        conn.execute(
            update(dead_letters).where(*base, _DL.id == ident).values(replay=False, reason=reason)
        )


@scoped
def replays_waiting(conn: Connection, *, owner: str) -> set[UUID]:
    """The destinations leased by `owner` with dead letters an operator asked to send again
    (one statement for all of a worker's destinations)."""
    rows = conn.execute(
        select(_DL.destination_id)
        .distinct()
        .join(leases, leases.c.destination_id == _DL.destination_id)
        .where(leases.c.owner == owner, _DL.replay.is_(True))
    )
    return {uuid_from_canonical(ident) for (ident,) in rows}
