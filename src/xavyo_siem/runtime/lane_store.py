"""What the worker's lanes read from the store, and their outcomes, written in bulk.

`StoreLanes` is the store side of the lanes (`pipeline.lane.LaneStore`). A lane behind the
feed reads its backlog here, one tenant-scoped page at a time; dead letters to replay are
read and settled here too. Outcomes are only noted: each destination's progress (cursor,
counts, circuit, dead letters) gathers in memory and `flush` writes every destination's in
one transaction, fenced by the leases (`store.state.record_progress`). A crash between a
delivery and the next flush sends that batch again: delivery is at least once.

Metrics and log lines are reported as outcomes are noted, so they are never behind.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from xavyo_siem.model import AuditEvent, CircuitState
from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.health import (
    report_delivered,
    report_disabled,
    report_failure,
    report_losses,
)
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import SourcePage
from xavyo_siem.runtime.store_gate import StoreGate, StoreUnavailable
from xavyo_siem.store.dead_letters import replay_requested, settle_replay
from xavyo_siem.store.destinations import get_destination
from xavyo_siem.store.events import (
    EventCursor,
    measure_lag,
    read_events_after,
    read_events_by_id,
)
from xavyo_siem.store.state import Progress, read_state, record_progress

log = logging.getLogger("xavyo_siem.pipeline")

__all__ = ["StoreLanes", "all_caught_up"]


class StoreLanes:
    """The lanes' store: backlog reads, replays, and progress written in bulk."""

    def __init__(self, *, gate: StoreGate, owner: str) -> None:
        self.gate = gate
        self.owner = owner
        self.epochs: dict[UUID, int] = {}  # the lease epoch each lane's writes are fenced by
        self._progress: dict[UUID, Progress] = {}

    @property
    def unwritten(self) -> bool:
        return bool(self._progress)

    async def read_backlog(
        self, lane: Lane, *, after: Any, limit: int
    ) -> SourcePage[EventCursor] | None:
        destination = lane.destination
        page = await self.gate.read(
            lambda conn: read_events_after(
                conn,
                tenant_id=destination.tenant_id,
                after=after,
                limit=limit,
                filter=destination.filters,
            )
        )
        return None if page.cursor == after else SourcePage(page.events, page.cursor)

    async def read_replay(self, lane: Lane, *, limit: int) -> list[tuple[int, AuditEvent]]:
        destination = lane.destination

        def read(conn: Connection) -> list[tuple[int, AuditEvent]]:
            letters = replay_requested(
                conn, tenant_id=destination.tenant_id, destination_id=destination.id, limit=limit
            )
            if not letters:
                return []
            events = read_events_by_id(
                conn, tenant_id=destination.tenant_id, event_ids=[d.event_id for d in letters]
            )
            by_event = {letter.event_id: letter.id for letter in letters}
            return [(by_event[event.event_id], event) for event in events]

        return await self.gate.read(read)

    async def settle_replay(
        self, lane: Lane, *, delivered: Sequence[int], refused: Mapping[int, str]
    ) -> None:
        destination = lane.destination
        await self.gate.write(
            lambda conn: settle_replay(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                delivered=delivered,
                refused=refused,
            )
        )
        if delivered:  # events that reached the destination, counted as any others
            now = datetime.now(UTC)
            report_delivered(destination, lane.counts, delivered=len(delivered), dead=(), now=now)
            log.info("destination %s: replayed %d dead letter(s)", destination.name, len(delivered))

    def _entry(self, lane: Lane) -> Progress:
        entry = self._progress.get(lane.id)
        if entry is None:
            entry = self._progress[lane.id] = Progress(
                tenant_id=lane.tenant_id,
                destination_id=lane.id,
                epoch=self.epochs.get(lane.id, 0),
            )
        return entry

    def note_delivered(
        self,
        lane: Lane,
        *,
        position: Any,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        now = datetime.now(UTC)
        entry = self._entry(lane)
        entry.cursor = position
        entry.delivered += delivered
        entry.dead.extend(dead)
        entry.consecutive_failures = 0
        entry.circuit_state = CircuitState.CLOSED
        entry.circuit_reason = None
        entry.throughput_eps = throughput_eps
        if delivered:
            entry.last_success = now
        report_delivered(lane.destination, lane.counts, delivered=delivered, dead=dead, now=now)

    def note_failure(
        self, lane: Lane, *, reason: str, circuit: CircuitBreaker, misconfigured: bool
    ) -> None:
        entry = self._entry(lane)
        entry.failures += 1
        entry.consecutive_failures = circuit.failures
        entry.circuit_state = circuit.state
        entry.circuit_reason = None if circuit.state is CircuitState.CLOSED else reason
        entry.last_failure = datetime.now(UTC)
        entry.last_error = reason
        entry.throughput_eps = 0.0
        report_failure(
            lane.destination,
            lane.counts,
            reason=reason,
            circuit_state=circuit.state,
            misconfigured=misconfigured,
        )

    def note_losses(self, lane: Lane, *, possibly_lost: int, truncated: int) -> None:
        entry = self._entry(lane)
        entry.possibly_lost += possibly_lost
        entry.truncated += truncated
        report_losses(lane.counts, possibly_lost=possibly_lost, truncated=truncated)

    def note_disabled(self, lane: Lane, *, reason: str) -> None:
        self._entry(lane).disabled_reason = reason
        report_disabled(lane.destination, lane.counts, reason=reason)

    async def flush(self) -> tuple[list[UUID], list[UUID]]:
        """Write every lane's noted progress in one transaction: (the lanes written, the
        lanes whose lease was lost and nothing of theirs written). What could not be written
        because the store is away is kept for the next flush."""
        if not self._progress:
            return [], []
        batch, self._progress = self._progress, {}
        now = datetime.now(UTC)
        try:
            lost = await self.gate.write(
                lambda conn: record_progress(
                    conn, owner=self.owner, progress=list(batch.values()), now=now
                )
            )
            return [ident for ident in batch if ident not in set(lost)], lost
        except StoreUnavailable:
            for ident, older in batch.items():
                newer = self._progress.get(ident)
                self._progress[ident] = older if newer is None else _merged(older, newer)
            raise

    def forget(self, lane_id: UUID) -> None:
        """A lane that is no longer ours: its unwritten progress is dropped (fenced anyway)."""
        self._progress.pop(lane_id, None)
        self.epochs.pop(lane_id, None)


def _merged(older: Progress, newer: Progress) -> Progress:
    """Two unwritten progress notes of one destination as one (the newer's state wins)."""
    newer.cursor = newer.cursor if newer.cursor is not None else older.cursor
    newer.delivered += older.delivered
    newer.failures += older.failures
    newer.last_success = newer.last_success or older.last_success
    newer.last_failure = newer.last_failure or older.last_failure
    newer.last_error = newer.last_error or older.last_error
    newer.possibly_lost += older.possibly_lost
    newer.truncated += older.truncated
    newer.disabled_reason = newer.disabled_reason or older.disabled_reason
    newer.dead[:0] = older.dead
    return newer


def all_caught_up(conn: Connection, destinations: list[tuple[UUID, UUID]]) -> bool:
    """Whether nothing waits for any of these (destination id, tenant id) in the store: the
    destinations another worker holds, when a draining worker asks whether all are done."""
    for destination_id, tenant_id in destinations:
        destination = get_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
        current = read_state(conn, tenant_id=tenant_id, destination_id=destination_id)
        if destination is None or current is None:
            continue
        waiting, _ = measure_lag(
            conn, tenant_id=tenant_id, after=current.cursor, filter=destination.filters, cap=1
        )
        if waiting:
            return False
    return True
