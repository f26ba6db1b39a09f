"""The quarantine: what ingest could not take, kept verbatim with the reason, never dropped.

Two kinds of entry: a line that cannot be an event at all (not JSON, not an object, no
usable tenant, id or time), its raw text capped at `RAW_MAX_CHARS`; and an event sent again
under a stored `(tenant_id, event_id)` with different content (reason starting `conflict`),
kept as its JSON. An entry of a known tenant is that tenant's (row-level security scopes it
like the tenant's other rows); one without a tenant is the platform's alone, reachable only
through the platform-wide functions (the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from uuid import UUID

import orjson
from sqlalchemy import Connection, delete, insert, select

from xavyo_siem.model import format_timestamp, from_epoch_us, to_epoch_us
from xavyo_siem.store.scope import platform_wide, scope_to_platform, scope_to_tenant, scoped
from xavyo_siem.store.tables import quarantine

__all__ = [
    "CONFLICT",
    "RAW_MAX_CHARS",
    "QuarantineEntry",
    "Quarantined",
    "add_quarantined",
    "get_quarantined",
    "list_quarantined",
    "remove_quarantined",
]

# How much of a line the quarantine keeps (its whole length is kept beside it).
RAW_MAX_CHARS: Final = 65_536
# The reason of an event that came again under a stored id with different content.
CONFLICT: Final = "conflict: the event id is stored with different content"

_Q = quarantine.c


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """What ingest could not take, before it is stored: the raw line (or the conflicting
    event's JSON), why, and where it came from (`<file>:<line>` or `api`)."""

    reason: str
    source: str
    raw: str
    tenant_id: UUID | None = None
    event_id: UUID | None = None
    raw_bytes: int | None = None  # the whole line's length, when `raw` is already cut

    @classmethod
    def of_line(
        cls, reason: str, source: str, line: bytes, tenant_id: UUID | None
    ) -> QuarantineEntry:
        """The entry of an input line, cut to what the quarantine keeps as soon as it is
        read (a huge line is not held whole until the commit)."""
        raw = line[: RAW_MAX_CHARS * 4].decode("utf-8", "replace").rstrip("\r\n")
        return cls(reason, source, raw[:RAW_MAX_CHARS], tenant_id, None, len(line.rstrip(b"\r\n")))

    @classmethod
    def of_value(
        cls, reason: str, source: str, value: object, tenant_id: UUID | None
    ) -> QuarantineEntry:
        """The entry of a decoded input that was no event (a batch item, a source's row),
        kept as its JSON text: orjson writes up to 255 levels and no lone surrogate; the
        standard library then writes up to about a thousand, with every character past
        ASCII as its escape, so that a lone surrogate is kept as text the store can hold;
        a value nested more deeply than that is kept as a note of what it was."""
        try:
            raw = orjson.dumps(value, default=str).decode()
        except orjson.JSONEncodeError:  # nested too deeply for it, or a lone surrogate
            try:
                raw = json.dumps(value, default=str)
            except (RecursionError, ValueError):
                raw = f"(a {type(value).__name__} nested too deeply to be written as JSON)"
        return cls(reason, source, raw, tenant_id)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A stored quarantine entry."""

    id: int
    tenant_id: UUID | None
    event_id: UUID | None
    reason: str
    source: str
    raw: str
    raw_bytes: int
    received_at: datetime

    @property
    def is_conflict(self) -> bool:
        """True for an event that came again with different content."""
        return self.reason.startswith("conflict")

    def to_dict(self, *, raw: bool = True) -> dict[str, object]:
        """The JSON form (`quarantine list --json` leaves `raw` out, `show` keeps it)."""
        out: dict[str, object] = {
            "id": self.id,
            "tenant_id": None if self.tenant_id is None else str(self.tenant_id),
            "event_id": None if self.event_id is None else str(self.event_id),
            "reason": self.reason,
            "source": self.source,
            "raw_bytes": self.raw_bytes,
            "received_at": format_timestamp(self.received_at),
        }
        if raw:
            out["raw"] = self.raw
        return out


def _row_of(entry: QuarantineEntry, received_us: int) -> dict[str, object]:
    return {
        "tenant_id": None if entry.tenant_id is None else str(entry.tenant_id),
        "event_id": None if entry.event_id is None else str(entry.event_id),
        "reason": entry.reason[:1000],
        "source": entry.source[:1000],
        "raw": entry.raw[:RAW_MAX_CHARS],
        "raw_bytes": (
            len(entry.raw.encode("utf-8", "replace"))
            if entry.raw_bytes is None
            else entry.raw_bytes
        ),
        "received_us": received_us,
    }


def add_quarantined(
    conn: Connection,
    entries: Iterable[QuarantineEntry],
    *,
    tenant_id: UUID | None,
    now: datetime,
) -> int:
    """Keep `entries` in the caller's transaction; returns how many.

    `tenant_id` is the one tenant they all belong to (the API's ingest: an entry of another
    tenant or of none is refused by row-level security); None keeps any tenant's and
    tenantless entries, for the platform (the CLI).
    """
    if tenant_id is None:
        scope_to_platform(conn)
    else:
        scope_to_tenant(conn, tenant_id)
    received_us = to_epoch_us(now)
    rows = [_row_of(entry, received_us) for entry in entries]
    if rows:
        conn.execute(insert(quarantine), rows)
    return len(rows)


def _entry(row: object) -> Quarantined:
    tenant_id, event_id = row.tenant_id, row.event_id  # type: ignore[attr-defined]
    return Quarantined(
        id=row.id,  # type: ignore[attr-defined]
        tenant_id=None if tenant_id is None else UUID(tenant_id),
        event_id=None if event_id is None else UUID(event_id),
        reason=row.reason,  # type: ignore[attr-defined]
        source=row.source,  # type: ignore[attr-defined]
        raw=row.raw,  # type: ignore[attr-defined]
        raw_bytes=row.raw_bytes,  # type: ignore[attr-defined]
        received_at=from_epoch_us(row.received_us),  # type: ignore[attr-defined]
    )


@scoped
def _list_of_tenant(
    conn: Connection, *, tenant_id: UUID, after: int, limit: int
) -> list[Quarantined]:
    query = (
        select(quarantine)
        .where(_Q.tenant_id == str(tenant_id), _Q.id > after)
        .order_by(_Q.id)
        .limit(limit)
    )
    return [_entry(row) for row in conn.execute(query)]


@platform_wide
def _list_of_platform(conn: Connection, *, after: int, limit: int) -> list[Quarantined]:
    query = select(quarantine).where(_Q.id > after).order_by(_Q.id).limit(limit)
    return [_entry(row) for row in conn.execute(query)]


def list_quarantined(
    conn: Connection, *, tenant_id: UUID | None, after: int = 0, limit: int = 100
) -> list[Quarantined]:
    """The entries after id `after`, oldest first: `tenant_id`'s, or with None every
    entry, tenantless ones included (the platform's view)."""
    if tenant_id is None:
        return _list_of_platform(conn, after=after, limit=limit)
    return _list_of_tenant(conn, tenant_id=tenant_id, after=after, limit=limit)


def get_quarantined(
    conn: Connection, *, tenant_id: UUID | None, entry_id: int
) -> Quarantined | None:
    """One entry by id, within `tenant_id` (None: the platform's view); None if not there."""
    if tenant_id is None:
        return _get_of_platform(conn, entry_id=entry_id)
    return _get_of_tenant(conn, tenant_id=tenant_id, entry_id=entry_id)


@scoped
def _get_of_tenant(conn: Connection, *, tenant_id: UUID, entry_id: int) -> Quarantined | None:
    query = select(quarantine).where(_Q.tenant_id == str(tenant_id), _Q.id == entry_id)
    row = conn.execute(query).first()
    return None if row is None else _entry(row)


@platform_wide
def _get_of_platform(conn: Connection, *, entry_id: int) -> Quarantined | None:
    row = conn.execute(select(quarantine).where(_Q.id == entry_id)).first()
    return None if row is None else _entry(row)


def remove_quarantined(
    conn: Connection, *, tenant_id: UUID | None, entry_ids: Iterable[int] | None = None
) -> int:
    """Delete entries (all of the view's when `entry_ids` is None); returns how many."""
    if tenant_id is None:
        return _remove_of_platform(conn, entry_ids=entry_ids)
    return _remove_of_tenant(conn, tenant_id=tenant_id, entry_ids=entry_ids)


@scoped
def _remove_of_tenant(conn: Connection, *, tenant_id: UUID, entry_ids: Iterable[int] | None) -> int:
    query = delete(quarantine).where(_Q.tenant_id == str(tenant_id))
    if entry_ids is not None:
        query = query.where(_Q.id.in_(list(entry_ids)))
    return int(conn.execute(query).rowcount)


@platform_wide
def _remove_of_platform(conn: Connection, *, entry_ids: Iterable[int] | None) -> int:
    query = delete(quarantine)
    if entry_ids is not None:
        query = query.where(_Q.id.in_(list(entry_ids)))
    return int(conn.execute(query).rowcount)
