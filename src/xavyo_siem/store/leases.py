"""Leases: each destination is delivered by one worker at a time.

A lease row names its owner and an expiry; a worker renews its leases well before they
expire, and another worker may take over a lease only once it has expired. Each takeover
increments `epoch`, which fences the previous owner's writes (see state.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from xavyo_siem.model import to_epoch_us
from xavyo_siem.store.tables import leases

__all__ = ["Lease", "LeaseLost", "acquire_lease", "release_lease", "renew_lease"]

_L = leases.c


class LeaseLost(Exception):
    """Another worker owns the destination now; the loop that held it must stop writing."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's hold on one destination."""

    destination_id: UUID
    owner: str
    epoch: int


def acquire_lease(
    conn: Connection, *, destination_id: UUID, owner: str, ttl: timedelta, now: datetime
) -> Lease | None:
    """Take the destination if nobody holds it (or their lease expired); None otherwise."""
    ident = str(destination_id)
    expires = to_epoch_us(now + ttl)
    row = conn.execute(
        select(_L.owner, _L.epoch, _L.expires_us)
        .where(_L.destination_id == ident)
        .with_for_update()
    ).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(leases).values(
                        destination_id=ident, owner=owner, epoch=1, expires_us=expires
                    )
                )
        except IntegrityError:
            return None  # another worker inserted it first
        return Lease(destination_id, owner, 1)
    held_by, epoch, expires_us = row
    if held_by == owner and expires_us > to_epoch_us(now):
        return (
            Lease(destination_id, owner, epoch)
            if renew_lease(conn, lease=Lease(destination_id, owner, epoch), ttl=ttl, now=now)
            else None
        )
    if expires_us > to_epoch_us(now):
        return None
    result = conn.execute(
        update(leases)
        .where(_L.destination_id == ident, _L.epoch == epoch)
        .values(owner=owner, epoch=epoch + 1, expires_us=expires)
    )
    return Lease(destination_id, owner, epoch + 1) if result.rowcount == 1 else None


def renew_lease(conn: Connection, *, lease: Lease, ttl: timedelta, now: datetime) -> bool:
    """Extend a lease still held; False if it was lost (expired and taken, or deleted)."""
    result = conn.execute(
        update(leases)
        .where(
            _L.destination_id == str(lease.destination_id),
            _L.owner == lease.owner,
            _L.epoch == lease.epoch,
        )
        .values(expires_us=to_epoch_us(now + ttl))
    )
    return result.rowcount == 1


def release_lease(conn: Connection, *, lease: Lease) -> None:
    """Give a lease back at shutdown so another worker need not wait for it to expire."""
    conn.execute(
        delete(leases).where(
            _L.destination_id == str(lease.destination_id),
            _L.owner == lease.owner,
            _L.epoch == lease.epoch,
        )
    )
