"""The worker's own transactions with the store, beside the change feed's reads and the
lanes' progress (`lane_store.py`): the renewal every scan interval, the read that starts
the lanes of destinations just leased, and leaving.

Each is a function of a connection, run by the worker on its store gate's threads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import Connection

from xavyo_siem.model import BatchExportJob, CircuitState, SiemDestination
from xavyo_siem.store.dead_letters import replays_waiting
from xavyo_siem.store.destinations import read_leased
from xavyo_siem.store.events import EventCursor
from xavyo_siem.store.feed import CatchUp, catch_up, feed_start, tenant_heads
from xavyo_siem.store.jobs import claim_job
from xavyo_siem.store.leases import (
    acquire_leases,
    forget_worker,
    heartbeat,
    held_leases,
    release_leases,
)

__all__ = ["LanesToStart", "Leased", "Renewal", "leave", "read_lanes_to_start", "renew"]

# A leased destination's row, its cursor, its circuit and its consecutive failures.
Leased = list[tuple[SiemDestination, EventCursor, CircuitState, int]]


class Renewal(NamedTuple):
    """What a renewal found: the fair share, the leases held (epoch, the destination's
    `updated_us`), the leases just taken (epoch), the destinations with dead letters to
    replay, and the export job claimed (if any)."""

    share: int
    held: dict[UUID, tuple[int, int]]
    taken: dict[UUID, int]
    replays: set[UUID]
    job: BatchExportJob | None


def renew(conn: Connection, *, owner: str, ttl: timedelta, jobs_for: list[UUID] | None) -> Renewal:
    """Heartbeat (which renews every lease), see what is still held, take free ones up to
    the fair share, see which destinations have dead letters to replay and, when `jobs_for`
    is given, claim a waiting export job to one of them (or to a file): one transaction."""
    # What it holds is read first, and a job looked for (a write only when one waits): the
    # transaction takes its id at its first write, and new events committed after that are
    # final only once it ends, so what follows the heartbeat is kept short. The replays
    # are read last, to include the destinations just taken.
    held = held_leases(conn, owner=owner)
    now = datetime.now(UTC)
    job = None
    if jobs_for is not None:
        job = claim_job(conn, owner=owner, ttl=ttl, now=now, destination_ids=jobs_for)
    share = heartbeat(conn, owner=owner, ttl=ttl, now=now)
    taken = acquire_leases(conn, owner=owner, limit=share - len(held), ttl=ttl, now=now)
    return Renewal(share, held, taken, replays_waiting(conn, owner=owner), job)


class LanesToStart(NamedTuple):
    """The rows of destinations just leased, each served tenant's mark, and, when the feed
    starts with them, where it starts and its walk over the backlog."""

    rows: Leased
    heads: dict[UUID, EventCursor]
    start: EventCursor | None
    walk: CatchUp | None


def read_lanes_to_start(
    conn: Connection,
    *,
    owner: str,
    destination_ids: list[UUID],
    start_feed: bool,
    catch_up_events: int,
) -> LanesToStart:
    """What the lanes of `destination_ids` start from; with `start_feed`, also where the
    feed starts: at the oldest of their cursors within the last `catch_up_events` events
    (`feed_start`)."""
    rows = read_leased(conn, owner=owner, destination_ids=destination_ids)
    if not start_feed:
        return LanesToStart(rows, tenant_heads(conn, owner=owner), None, None)
    cursors = [(destination.tenant_id, cursor) for destination, cursor, _, _ in rows]
    # The marks are the tenants' last events up to the feed's start: a destination at or
    # past its tenant's mark misses nothing the feed will not read.
    start, heads = feed_start(conn, owner=owner, cursors=cursors, window=catch_up_events)
    return LanesToStart(rows, heads, start, catch_up(conn, owner=owner, start=start))


def leave(conn: Connection, *, owner: str) -> None:
    """Give every lease of `owner` back and unregister it."""
    release_leases(conn, owner=owner)
    forget_worker(conn, owner=owner)
