"""Each change of a destination's health, as one named function: row, metric and log together."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Connection

from xavyo_siem.model import CircuitState, SiemDestination
from xavyo_siem.pipeline import metrics
from xavyo_siem.store import state
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.events import EventCursor, measure_lag
from xavyo_siem.store.leases import Lease, LeaseLost

__all__ = ["record_delivered", "record_failure", "refresh_lag"]

log = logging.getLogger("xavyo_siem.pipeline")

# The lag metric counts at most this many waiting events: a count must not cost as much as
# the backlog it measures (the gauge then reads "at least this many").
LAG_COUNT_CAP = 100_000


def _labels(destination: SiemDestination) -> tuple[str, str]:
    return str(destination.tenant_id), destination.name


def record_delivered(
    conn: Connection,
    destination: SiemDestination,
    *,
    lease: Lease | None,
    cursor: EventCursor,
    delivered: int,
    dead: Sequence[tuple[UUID, str]],
    throughput_eps: float,
) -> None:
    """The batch is done with: advance the cursor, count it, dead-letter the refused events."""
    now = datetime.now(UTC)
    moved = state.record_delivered(
        conn,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        cursor=cursor,
        delivered=delivered,
        throughput_eps=throughput_eps,
        now=now,
        lease=lease,
    )
    if not moved:
        raise LeaseLost(f"destination {destination.name}: lease lost; another worker owns it")
    add_dead_letters(
        conn, tenant_id=destination.tenant_id, destination_id=destination.id, entries=dead, now=now
    )
    labels = _labels(destination)
    if delivered:
        metrics.DELIVERED.labels(*labels).inc(delivered)
        metrics.LAST_SUCCESS.labels(*labels).set(now.timestamp())
    metrics.CIRCUIT_OPEN.labels(*labels).set(0)
    for event_id, reason in dead:
        metrics.DEAD_LETTERS.labels(*labels).inc()
        log.warning(
            "destination %s refused event %s for good (dead letter): %s",
            destination.name, event_id, reason,
        )  # fmt: skip


def record_failure(
    conn: Connection,
    destination: SiemDestination,
    *,
    lease: Lease | None,
    reason: str,
    circuit_state: CircuitState,
    misconfigured: bool,
) -> None:
    """A batch failed: count it and show why; the cursor stays where it is."""
    recorded = state.record_failure(
        conn,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        reason=reason,
        circuit_state=circuit_state,
        now=datetime.now(UTC),
        lease=lease,
    )
    if not recorded:
        raise LeaseLost(f"destination {destination.name}: lease lost; another worker owns it")
    labels = _labels(destination)
    kind = "misconfigured" if misconfigured else "retry_later"
    metrics.FAILURES.labels(*labels, kind).inc()
    metrics.CIRCUIT_OPEN.labels(*labels).set(0 if circuit_state is CircuitState.CLOSED else 1)
    log.warning(
        "destination %s: %s (%s; circuit %s)",
        destination.name, reason, kind.replace("_", " "), circuit_state.value,
    )  # fmt: skip


def refresh_lag(conn: Connection, destination: SiemDestination, *, cursor: EventCursor) -> None:
    """Measure how far the destination is behind and publish it as metrics."""
    count, oldest = measure_lag(
        conn,
        tenant_id=destination.tenant_id,
        after=cursor,
        filter=destination.filters,
        cap=LAG_COUNT_CAP,
    )
    labels = _labels(destination)
    metrics.LAG_EVENTS.labels(*labels).set(count)
    age = 0.0 if oldest is None else max((datetime.now(UTC) - oldest).total_seconds(), 0.0)
    metrics.LAG_SECONDS.labels(*labels).set(age)
