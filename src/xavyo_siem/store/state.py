"""A destination's delivery state: its cursor and its health, changed together.

Every change is fenced by the caller's lease: a worker that lost its lease (it paused, and
another worker took the destination over) cannot move the cursor any more, so two workers
never both advance one destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, and_, bindparam, exists, func, select, update

from xavyo_siem.model import CircuitState, DeliveryHealth, from_epoch_us, to_epoch_us
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.events import EventCursor
from xavyo_siem.store.scope import scoped
from xavyo_siem.store.tables import dead_letters, destination_state, destinations, leases

__all__ = [
    "DeliveryState",
    "Progress",
    "read_health",
    "read_state",
    "record_progress",
]

_S = destination_state.c


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where a destination's delivery stands: the cursor and the circuit."""

    cursor: EventCursor
    circuit_state: CircuitState
    consecutive_failures: int


def _this(tenant_id: UUID, destination_id: UUID) -> Any:
    return and_(_S.tenant_id == str(tenant_id), _S.destination_id == str(destination_id))


@scoped
def read_state(conn: Connection, *, tenant_id: UUID, destination_id: UUID) -> DeliveryState | None:
    """The destination's cursor and circuit, or None if there is no such destination."""
    row = conn.execute(
        select(_S.cursor_txid, _S.cursor_seq, _S.circuit_state, _S.consecutive_failures).where(
            _this(tenant_id, destination_id)
        )
    ).first()
    if row is None:
        return None
    return DeliveryState(EventCursor(row[0], row[1]), CircuitState(row[2]), row[3])


@scoped
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
                d.disabled_reason,
                select(func.count())
                .where(
                    dead_letters.c.tenant_id == str(tenant_id),
                    dead_letters.c.destination_id == str(destination_id),
                )
                .scalar_subquery()
                .label("dead_letter_count"),
            )
            .join(destinations, d.id == _S.destination_id)
            .where(_this(tenant_id, destination_id))
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
        disabled_reason=row["disabled_reason"],
        possibly_lost=row["possibly_lost"],
        truncated=row["truncated"],
    )


@dataclass(slots=True)
class Progress:
    """What happened to one destination since its state was last written: the worker adds
    each batch's outcome here and writes every destination's in one go (`record_progress`).

    `cursor` is None until a batch was delivered; the circuit fields are the latest.
    `disabled_reason`, when set, switches the destination off (its endpoint is gone).
    """

    tenant_id: UUID
    destination_id: UUID
    epoch: int
    cursor: EventCursor | None = None
    delivered: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    circuit_state: CircuitState = CircuitState.CLOSED
    circuit_reason: str | None = None
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None
    throughput_eps: float = 0.0
    possibly_lost: int = 0
    truncated: int = 0
    disabled_reason: str | None = None
    dead: list[tuple[UUID, str]] = field(default_factory=list)


@scoped
def record_progress(
    conn: Connection, *, owner: str, progress: Sequence[Progress], now: datetime
) -> list[UUID]:
    """Write the progress of many destinations in a few statements, each fenced by its lease.

    Returns the destinations whose lease `owner` no longer holds (at that epoch): nothing of
    theirs was written. Lease rows are read, not locked, so a renewal of thousands of leases
    never holds the progress of every destination up; each row's write is fenced again by
    its lease. A lease taken over in between can at worst let the old owner's last write
    through, which the new owner's own writes then follow: batches may be sent twice, none
    is skipped.
    """
    if not progress:
        return []
    held = {
        (ident, epoch)
        for ident, epoch in conn.execute(
            select(leases.c.destination_id, leases.c.epoch).where(
                leases.c.owner == owner,
                leases.c.destination_id.in_(sorted({str(p.destination_id) for p in progress})),
            )
        )
    }
    kept = [p for p in progress if (str(p.destination_id), p.epoch) in held]
    lost = [p.destination_id for p in progress if (str(p.destination_id), p.epoch) not in held]
    if not kept:
        return lost
    stamp = to_epoch_us(now)
    conn.execute(
        update(destination_state)
        .where(
            _S.destination_id == bindparam("b_destination"),
            _S.tenant_id == bindparam("b_tenant"),
            # Fenced again as it writes: a lease taken over since the check above is not
            # written through.
            exists().where(
                leases.c.destination_id == bindparam("b_destination"),
                leases.c.owner == owner,
                leases.c.epoch == bindparam("b_epoch"),
            ),
        )
        .values(
            cursor_txid=func.coalesce(bindparam("b_txid"), _S.cursor_txid),
            cursor_seq=func.coalesce(bindparam("b_seq"), _S.cursor_seq),
            successes=_S.successes + bindparam("b_delivered"),
            failures=_S.failures + bindparam("b_failures"),
            consecutive_failures=bindparam("b_consecutive"),
            circuit_state=bindparam("b_circuit"),
            circuit_reason=bindparam("b_reason"),
            last_success_us=func.coalesce(bindparam("b_success_us"), _S.last_success_us),
            last_failure_us=func.coalesce(bindparam("b_failure_us"), _S.last_failure_us),
            last_error=func.coalesce(bindparam("b_error"), _S.last_error),
            throughput_eps=bindparam("b_throughput"),
            possibly_lost=_S.possibly_lost + bindparam("b_lost"),
            truncated=_S.truncated + bindparam("b_truncated"),
            updated_us=stamp,
        ),
        [
            {
                "b_destination": str(p.destination_id),
                "b_tenant": str(p.tenant_id),
                "b_epoch": p.epoch,
                "b_txid": None if p.cursor is None else p.cursor.txid,
                "b_seq": None if p.cursor is None else p.cursor.seq,
                "b_delivered": p.delivered,
                "b_failures": p.failures,
                "b_consecutive": p.consecutive_failures,
                "b_circuit": p.circuit_state.value,
                "b_reason": None if p.circuit_reason is None else p.circuit_reason[:1000],
                "b_success_us": None if p.last_success is None else to_epoch_us(p.last_success),
                "b_failure_us": None if p.last_failure is None else to_epoch_us(p.last_failure),
                "b_error": None if p.last_error is None else p.last_error[:1000],
                "b_throughput": p.throughput_eps,
                "b_lost": p.possibly_lost,
                "b_truncated": p.truncated,
            }
            for p in kept
        ],
    )
    switched_off = [p for p in kept if p.disabled_reason is not None]
    if switched_off:
        conn.execute(
            update(destinations)
            .where(
                destinations.c.id == bindparam("b_destination"),
                destinations.c.tenant_id == bindparam("b_tenant"),
                exists().where(
                    leases.c.destination_id == bindparam("b_destination"),
                    leases.c.owner == owner,
                    leases.c.epoch == bindparam("b_epoch"),
                ),
            )
            .values(enabled=False, disabled_reason=bindparam("b_disabled"), updated_us=stamp),
            [
                {
                    "b_destination": str(p.destination_id),
                    "b_tenant": str(p.tenant_id),
                    "b_epoch": p.epoch,
                    "b_disabled": (p.disabled_reason or "")[:1000],
                }
                for p in switched_off
            ],
        )
    for p in kept:
        if p.dead:
            add_dead_letters(
                conn,
                tenant_id=p.tenant_id,
                destination_id=p.destination_id,
                entries=p.dead,
                now=now,
            )
    return lost
