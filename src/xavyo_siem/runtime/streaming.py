"""Streaming a destination from the store: its events after its stored cursor, and its health.

`CursorSource` is the store-backed `BatchSource` of a destination's delivery loop. Each of
its steps is one store transaction on a worker thread: reads in a snapshot, and a delivery
moves the cursor, counts the batch and adds the dead letters together, fenced by the
worker's lease (a lost lease raises `LeaseLost`, which ends the loop). Once a write is
committed, the change is reported to the metrics and the log (`pipeline.health`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from sqlalchemy import Connection, Engine

from xavyo_siem.model import AuditEvent, CircuitState, SiemDestination
from xavyo_siem.pipeline.health import report_delivered, report_failure, report_lag
from xavyo_siem.pipeline.loop import (
    DestinationComponents,
    DestinationLoop,
    PipelineSettings,
    SourcePage,
    SourceStart,
)
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.store import state
from xavyo_siem.store.dead_letters import add_dead_letters, replay_requested, settle_replay
from xavyo_siem.store.engine import in_snapshot_async, in_transaction_async
from xavyo_siem.store.events import EventCursor, measure_lag, read_events_after, read_events_by_id
from xavyo_siem.store.leases import Lease, LeaseLost

__all__ = ["LAG_COUNT_CAP", "CursorSource", "streaming_loop"]

# The lag metric counts at most this many waiting events: a count must not cost as much as
# the backlog it measures (the gauge then reads "at least this many").
LAG_COUNT_CAP: Final = 100_000


class CursorSource:
    """The streaming source: a destination's events after its stored cursor.

    Delivery moves the cursor and the health in one transaction, fenced by `lease` (None:
    unfenced, for a process that runs one loop by itself).
    """

    exhausted = False

    def __init__(
        self, *, engine: Engine, destination: SiemDestination, lease: Lease | None
    ) -> None:
        self.engine = engine
        self.destination = destination
        self.lease = lease

    def _lost(self) -> LeaseLost:
        return LeaseLost(f"destination {self.destination.name}: lease lost; another worker owns it")

    async def begin(self) -> SourceStart[EventCursor]:
        """The stored cursor and circuit; `LeaseLost` when the destination was removed."""
        destination = self.destination
        found = await in_snapshot_async(
            self.engine,
            lambda conn: state.read_state(
                conn, tenant_id=destination.tenant_id, destination_id=destination.id
            ),
        )
        if found is None:
            raise LeaseLost("destination was removed")
        return SourceStart(found.cursor, found.circuit_state, found.consecutive_failures)

    async def read(self, *, after: EventCursor, limit: int) -> SourcePage[EventCursor] | None:
        """The destination's next final events after the cursor, through its filter."""
        destination = self.destination
        page = await in_snapshot_async(
            self.engine,
            lambda conn: read_events_after(
                conn,
                tenant_id=destination.tenant_id,
                after=after,
                limit=limit,
                filter=destination.filters,
            ),
        )
        return None if page.cursor == after else SourcePage(page.events, page.cursor)

    async def nothing_waits(self, *, after: EventCursor) -> bool:
        """True when no event of the tenant waits after the cursor, final or not.

        An empty read can also mean that events are stored but not yet final (a transaction
        elsewhere is still open, see docs/store.md); that is not "caught up".
        """
        waiting, _ = await self._lag(after, cap=1)
        return waiting == 0

    async def record_delivered(
        self,
        *,
        position: EventCursor,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        """The batch is done with: advance the cursor, count it, dead-letter the refused."""
        destination = self.destination
        now = datetime.now(UTC)

        def write(conn: Connection) -> None:
            moved = state.record_delivered(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                cursor=position,
                delivered=delivered,
                throughput_eps=throughput_eps,
                now=now,
                lease=self.lease,
            )
            if not moved:
                raise self._lost()
            add_dead_letters(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                entries=dead,
                now=now,
            )

        await in_transaction_async(self.engine, write)
        report_delivered(destination, delivered=delivered, dead=dead, now=now)

    async def record_failure(
        self, *, reason: str, circuit_state: CircuitState, misconfigured: bool
    ) -> None:
        """A batch failed: count it and show why; the cursor stays where it is."""
        destination = self.destination

        def write(conn: Connection) -> None:
            recorded = state.record_failure(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                reason=reason,
                circuit_state=circuit_state,
                now=datetime.now(UTC),
                lease=self.lease,
            )
            if not recorded:
                raise self._lost()

        await in_transaction_async(self.engine, write)
        report_failure(
            destination, reason=reason, circuit_state=circuit_state, misconfigured=misconfigured
        )

    async def refresh_lag(self, *, position: EventCursor) -> None:
        """Measure how far the destination is behind and publish it as metrics."""
        count, oldest = await self._lag(position, cap=LAG_COUNT_CAP)
        report_lag(self.destination, events=count, oldest=oldest)

    async def _lag(self, after: EventCursor, *, cap: int) -> tuple[int, datetime | None]:
        """The matching events waiting after `after` (counted up to `cap`), and the oldest's
        time."""
        destination = self.destination
        return await in_snapshot_async(
            self.engine,
            lambda conn: measure_lag(
                conn,
                tenant_id=destination.tenant_id,
                after=after,
                filter=destination.filters,
                cap=cap,
            ),
        )

    async def read_replay(self, *, limit: int) -> list[tuple[int, AuditEvent]]:
        """The dead letters an operator asked to send again, with their events."""
        destination = self.destination

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

        return await in_snapshot_async(self.engine, read)

    async def settle_replay(self, *, delivered: Sequence[int], refused: Mapping[int, str]) -> None:
        """Delivered dead letters go; refused ones stay, with the new reason."""
        destination = self.destination
        await in_transaction_async(
            self.engine,
            lambda conn: settle_replay(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                delivered=delivered,
                refused=refused,
            ),
        )


def streaming_loop(
    *,
    engine: Engine,
    destination: SiemDestination,
    components: DestinationComponents,
    lease: Lease | None,
    settings: PipelineSettings | None = None,
    bucket: TokenBucket | None = None,
) -> DestinationLoop:
    """The delivery loop that streams `destination` from the store with its opened components.

    `lease` fences every write (None: unfenced); `bucket` is a rate limit shared with the
    destination's batch exports in this process.
    """
    return DestinationLoop(
        destination=destination,
        source=CursorSource(engine=engine, destination=destination, lease=lease),
        transport=components.transport,
        formatter=components.formatter,
        batch_size=components.batch_size,
        settings=settings,
        bucket=bucket,
    )
