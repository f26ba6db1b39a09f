"""A destination's delivery state: its cursor and its health, changed together.

Every change is fenced by the caller's lease: a worker that lost its lease (it paused, and
another worker took the destination over) cannot move the cursor any more, so two workers
never both advance one destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, and_, exists, func, select, update

from xavyo_siem.model import CircuitState, DeliveryHealth, from_epoch_us, to_epoch_us
from xavyo_siem.store.events import EventCursor
from xavyo_siem.store.leases import Lease
from xavyo_siem.store.tables import dead_letters, destination_state, destinations, leases

__all__ = [
    "DeliveryState",
    "read_health",
    "read_state",
    "record_delivered",
    "record_failure",
    "set_cursor",
]

_S = destination_state.c


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where a destination's delivery stands: the cursor and the circuit."""

    cursor: EventCursor
    circuit_state: CircuitState
    consecutive_failures: int


def _fenced(tenant_id: UUID, destination_id: UUID, lease: Lease | None) -> Any:
    condition = and_(_S.tenant_id == str(tenant_id), _S.destination_id == str(destination_id))
    if lease is None:
        return condition
    held = exists().where(
        leases.c.destination_id == str(destination_id),
        leases.c.owner == lease.owner,
        leases.c.epoch == lease.epoch,
    )
    return and_(condition, held)


def read_state(conn: Connection, *, tenant_id: UUID, destination_id: UUID) -> DeliveryState | None:
    """The destination's cursor and circuit, or None if there is no such destination."""
    row = conn.execute(
        select(_S.cursor_txid, _S.cursor_seq, _S.circuit_state, _S.consecutive_failures).where(
            _fenced(tenant_id, destination_id, None)
        )
    ).first()
    if row is None:
        return None
    return DeliveryState(EventCursor(row[0], row[1]), CircuitState(row[2]), row[3])


def record_delivered(
    conn: Connection,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    cursor: EventCursor,
    delivered: int,
    throughput_eps: float,
    now: datetime,
    lease: Lease | None,
) -> bool:
    """Advance the cursor past a delivered batch and count it; False if the lease was lost."""
    result = conn.execute(
        update(destination_state)
        .where(_fenced(tenant_id, destination_id, lease))
        .values(
            cursor_txid=cursor.txid,
            cursor_seq=cursor.seq,
            successes=_S.successes + delivered,
            consecutive_failures=0,
            circuit_state=CircuitState.CLOSED.value,
            circuit_reason=None,
            last_success_us=to_epoch_us(now) if delivered else _S.last_success_us,
            throughput_eps=throughput_eps,
            updated_us=to_epoch_us(now),
        )
    )
    return result.rowcount == 1


def set_cursor(
    conn: Connection,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    cursor: EventCursor,
    lease: Lease | None,
) -> bool:
    """Move the cursor without counting a delivery (past rows the filter left out)."""
    result = conn.execute(
        update(destination_state)
        .where(_fenced(tenant_id, destination_id, lease))
        .values(cursor_txid=cursor.txid, cursor_seq=cursor.seq)
    )
    return result.rowcount == 1


def record_failure(
    conn: Connection,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    reason: str,
    circuit_state: CircuitState,
    now: datetime,
    lease: Lease | None,
) -> bool:
    """Count a failed attempt; the cursor stays where it is."""
    result = conn.execute(
        update(destination_state)
        .where(_fenced(tenant_id, destination_id, lease))
        .values(
            failures=_S.failures + 1,
            consecutive_failures=_S.consecutive_failures + 1,
            circuit_state=circuit_state.value,
            circuit_reason=reason[:1000] if circuit_state is not CircuitState.CLOSED else None,
            last_failure_us=to_epoch_us(now),
            last_error=reason[:1000],
            throughput_eps=0.0,
            updated_us=to_epoch_us(now),
        )
    )
    return result.rowcount == 1


def read_health(
    conn: Connection,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    lag_events: int = 0,
    lag_seconds: float = 0.0,
) -> DeliveryHealth | None:
    """The destination's stored health (lag is computed by the caller from the events)."""
    d = destinations.c
    row = (
        conn.execute(
            select(
                destination_state,
                d.name,
                d.enabled,
                select(func.count())
                .where(
                    dead_letters.c.tenant_id == str(tenant_id),
                    dead_letters.c.destination_id == str(destination_id),
                )
                .scalar_subquery()
                .label("dead_letter_count"),
            )
            .join(destinations, d.id == _S.destination_id)
            .where(_fenced(tenant_id, destination_id, None))
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    stamp = row["last_success_us"]
    failed = row["last_failure_us"]
    return DeliveryHealth(
        destination_id=destination_id,
        tenant_id=tenant_id,
        name=row["name"],
        enabled=bool(row["enabled"]),
        circuit_state=CircuitState(row["circuit_state"]),
        circuit_reason=row["circuit_reason"],
        successes=row["successes"],
        failures=row["failures"],
        consecutive_failures=row["consecutive_failures"],
        last_success=None if stamp is None else from_epoch_us(stamp),
        last_failure=None if failed is None else from_epoch_us(failed),
        last_error=row["last_error"],
        lag_events=lag_events,
        lag_seconds=lag_seconds,
        throughput_eps=row["throughput_eps"],
        dead_letters=row["dead_letter_count"],
    )
