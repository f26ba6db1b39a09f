"""A destination's delivery state: its cursor and its health, changed together.

Every change is fenced by the caller's lease: a worker that lost its lease (it paused, and
another worker took the destination over) cannot move the cursor any more, so two workers
never both advance one destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Connection, and_, bindparam, exists, func, select, text, update

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


# One statement for every destination of a flush on PostgreSQL: the rows come in as arrays
# (`unnest`), each is written only where `owner` still holds its lease at that epoch, and
# the ones written come back. A statement per row (executemany) keeps the transaction, and
# with it the store's horizon for new events, open several times longer.
_PROGRESS_ROWS: Final = text(
    """
    UPDATE destination_state AS s SET
        cursor_txid = COALESCE(v.txid, s.cursor_txid),
        cursor_seq = COALESCE(v.seq, s.cursor_seq),
        successes = s.successes + v.delivered,
        failures = s.failures + v.failed,
        consecutive_failures = v.consecutive,
        circuit_state = v.circuit,
        circuit_reason = v.reason,
        last_success_us = COALESCE(v.success_us, s.last_success_us),
        last_failure_us = COALESCE(v.failure_us, s.last_failure_us),
        last_error = COALESCE(v.error, s.last_error),
        throughput_eps = v.throughput,
        possibly_lost = s.possibly_lost + v.lost,
        truncated = s.truncated + v.cut,
        updated_us = :stamp
    FROM unnest(
        CAST(:destination AS varchar[]), CAST(:tenant AS varchar[]), CAST(:epoch AS bigint[]),
        CAST(:txid AS bigint[]), CAST(:seq AS bigint[]), CAST(:delivered AS bigint[]),
        CAST(:failed AS bigint[]), CAST(:consecutive AS integer[]),
        CAST(:circuit AS varchar[]), CAST(:reason AS text[]), CAST(:success_us AS bigint[]),
        CAST(:failure_us AS bigint[]), CAST(:error AS text[]),
        CAST(:throughput AS double precision[]), CAST(:lost AS bigint[]),
        CAST(:cut AS bigint[])
    ) AS v(destination, tenant, epoch, txid, seq, delivered, failed, consecutive, circuit,
           reason, success_us, failure_us, error, throughput, lost, cut)
    WHERE s.destination_id = v.destination AND s.tenant_id = v.tenant
      AND EXISTS (SELECT 1 FROM leases l WHERE l.destination_id = v.destination
                  AND l.owner = :owner AND l.epoch = v.epoch)
    RETURNING s.destination_id
    """
)


@scoped
def record_progress(
    conn: Connection, *, owner: str, progress: Sequence[Progress], now: datetime
) -> list[UUID]:
    """Write the progress of many destinations in a few statements, each fenced by its lease.

    Returns the destinations whose lease `owner` no longer holds (at that epoch): nothing of
    theirs was written. Lease rows are read, not locked, so a renewal of thousands of leases
    never holds the progress of every destination up. A lease taken over in between can at
    worst let the old owner's last write through, which the new owner's own writes then
    follow: batches may be sent twice, none is skipped.

    On PostgreSQL the transaction does not wait at commit for its WAL to reach the disk
    (`synchronous_commit` off for it alone). Its commit is then a fraction as long, and so
    is the time it holds back the feed's horizon (an open writing transaction keeps every
    event committed after it from being final) and the lanes waiting for it. What this can
    cost: if the PostgreSQL server itself crashes within the WAL writer's delay, the last
    cursors written go back and their batches are sent again (never skipped); a crash of
    the worker loses nothing that was committed.
    """
    if not progress:
        return []
    stamp = to_epoch_us(now)
    rows = [_progress_row(p) for p in progress]
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        written = set(
            conn.execute(_PROGRESS_ROWS, {**columns, "owner": owner, "stamp": stamp}).scalars()
        )
    else:
        written = _write_row_by_row(conn, owner=owner, rows=rows, stamp=stamp)
    kept = [p for p in progress if str(p.destination_id) in written]
    lost = [p.destination_id for p in progress if str(p.destination_id) not in written]
    if not kept:
        return lost
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


def _progress_row(p: Progress) -> dict[str, Any]:
    return {
        "destination": str(p.destination_id),
        "tenant": str(p.tenant_id),
        "epoch": p.epoch,
        "txid": None if p.cursor is None else p.cursor.txid,
        "seq": None if p.cursor is None else p.cursor.seq,
        "delivered": p.delivered,
        "failed": p.failures,
        "consecutive": p.consecutive_failures,
        "circuit": p.circuit_state.value,
        "reason": None if p.circuit_reason is None else p.circuit_reason[:1000],
        "success_us": None if p.last_success is None else to_epoch_us(p.last_success),
        "failure_us": None if p.last_failure is None else to_epoch_us(p.last_failure),
        "error": None if p.last_error is None else p.last_error[:1000],
        "throughput": p.throughput_eps,
        "lost": p.possibly_lost,
        "cut": p.truncated,
    }


def _write_row_by_row(
    conn: Connection, *, owner: str, rows: list[dict[str, Any]], stamp: int
) -> set[str]:
    """SQLite (in-process): the leases read, then a row at a time, each fenced again."""
    held = {
        (ident, epoch)
        for ident, epoch in conn.execute(
            select(leases.c.destination_id, leases.c.epoch).where(
                leases.c.owner == owner,
                leases.c.destination_id.in_(sorted({row["destination"] for row in rows})),
            )
        )
    }
    kept = [row for row in rows if (row["destination"], row["epoch"]) in held]
    if kept:
        conn.execute(
            update(destination_state)
            .where(
                _S.destination_id == bindparam("destination"),
                _S.tenant_id == bindparam("tenant"),
                exists().where(
                    leases.c.destination_id == bindparam("destination"),
                    leases.c.owner == owner,
                    leases.c.epoch == bindparam("epoch"),
                ),
            )
            .values(
                cursor_txid=func.coalesce(bindparam("txid"), _S.cursor_txid),
                cursor_seq=func.coalesce(bindparam("seq"), _S.cursor_seq),
                successes=_S.successes + bindparam("delivered"),
                failures=_S.failures + bindparam("failed"),
                consecutive_failures=bindparam("consecutive"),
                circuit_state=bindparam("circuit"),
                circuit_reason=bindparam("reason"),
                last_success_us=func.coalesce(bindparam("success_us"), _S.last_success_us),
                last_failure_us=func.coalesce(bindparam("failure_us"), _S.last_failure_us),
                last_error=func.coalesce(bindparam("error"), _S.last_error),
                throughput_eps=bindparam("throughput"),
                possibly_lost=_S.possibly_lost + bindparam("lost"),
                truncated=_S.truncated + bindparam("cut"),
                updated_us=stamp,
            ),
            kept,
        )
    return {row["destination"] for row in kept}
