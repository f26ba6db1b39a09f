"""Exports to a destination: the time range as the source of a destination delivery loop."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import Connection, Engine

from xavyo_siem.batch.control import Progress, now_utc
from xavyo_siem.errors import ExportJobError
from xavyo_siem.model import (
    AuditEvent,
    BatchExportJob,
    CircuitState,
    ExportCheckpoint,
    SiemDestination,
)
from xavyo_siem.pipeline.loop import SourcePage, SourceStart
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.engine import in_snapshot_async, in_transaction_async
from xavyo_siem.store.events import TimeKey
from xavyo_siem.store.leases import LeaseLost
from xavyo_siem.store.ranges import (
    Snapshot,
    read_range_events,
)

__all__ = ["RangePosition", "RangeSource"]

log = logging.getLogger("xavyo_siem.batch")


@dataclass(frozen=True, slots=True)
class RangePosition:
    """Where a range export stands: after `key` (None: the start of the range), and the
    first and last event ids of the page that ended there, for the job's record.

    The ids travel with the position, not in the source, because the delivery loop reads
    the next page while the previous one is still being sent.
    """

    key: TimeKey | None
    page_ids: tuple[UUID, UUID] | None = None


class RangeSource:
    """A `BatchSource` over an export's time range: its checkpoint lives in the job row.

    Deliveries never touch the destination's streaming cursor or health; refused events go
    to the destination's dead letters, their reason naming the job. A misconfigured
    destination fails the job at once (a batch job needs someone to fix it, then re-run);
    a destination that asks to retry later is retried, with the job's `error` saying why.
    Dead letters are not replayed here: the destination's lane in the worker does that.
    Each step is one store transaction on a worker thread.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        job: BatchExportJob,
        destination: SiemDestination,
        snapshot: Snapshot,
        owner: str,
        ttl: timedelta,
        on_progress: Progress | None = None,
    ) -> None:
        self.engine = engine
        self.job = job
        self.destination = destination
        self.snapshot = snapshot
        self.owner = owner
        self.ttl = ttl
        self.on_progress = on_progress
        self.exhausted = False
        self.exported = job.exported
        self.dead_lettered = job.dead_lettered
        self.first_event_id = job.first_event_id
        self.last_event_id = job.last_event_id

    def _lost(self) -> LeaseLost:
        return LeaseLost(f"job {self.job.id}: lease lost; another process runs it now")

    async def begin(self) -> SourceStart[RangePosition]:
        """Start after the job's checkpoint (or at the start of the range)."""
        checkpoint = self.job.checkpoint
        return SourceStart(
            RangePosition(None if checkpoint is None else TimeKey(checkpoint.ts_us, checkpoint.seq))
        )

    async def read(self, *, after: RangePosition, limit: int) -> SourcePage[RangePosition] | None:
        """The next page of the range; None (and exhausted) at its end."""
        job = self.job
        events, key = await in_snapshot_async(
            self.engine,
            lambda conn: read_range_events(
                conn,
                tenant_id=job.tenant_id,
                start=job.start,
                end=job.end,
                filter=job.filters,
                snapshot=self.snapshot,
                after=after.key,
                limit=limit,
            ),
        )
        if not events:
            self.exhausted = True
            return None
        return SourcePage(events, RangePosition(key, (events[0].event_id, events[-1].event_id)))

    async def nothing_waits(self, *, after: RangePosition) -> bool:
        """A range has no late arrivals: what was not read is not there."""
        return True

    async def record_delivered(
        self,
        *,
        position: RangePosition,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        """Checkpoint the job past the batch; refused events become dead letters."""
        job = self.job
        key = position.key
        assert key is not None
        first, last = self.first_event_id, self.last_event_id
        if position.page_ids is not None:
            first, last = first or position.page_ids[0], position.page_ids[1]
        exported = self.exported + delivered
        dead_lettered = self.dead_lettered + len(dead)

        def write(conn: Connection) -> None:
            now = now_utc()
            if dead:
                add_dead_letters(
                    conn,
                    tenant_id=job.tenant_id,
                    destination_id=self.destination.id,
                    entries=[(event_id, f"export {job.id}: {reason}") for event_id, reason in dead],
                    now=now,
                )
            saved = job_rows.save_checkpoint(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.owner,
                checkpoint=ExportCheckpoint(key.ts_us, key.seq),
                exported=exported,
                first_event_id=first,
                last_event_id=last,
                dead_lettered=dead_lettered,
                ttl=self.ttl,
                now=now,
            )
            if saved is None:
                raise self._lost()

        await in_transaction_async(self.engine, write)
        self.first_event_id, self.last_event_id = first, last
        self.exported, self.dead_lettered = exported, dead_lettered
        if self.on_progress is not None:
            self.on_progress(exported + dead_lettered, None)

    async def record_failure(
        self, *, reason: str, circuit_state: CircuitState, misconfigured: bool
    ) -> None:
        """Show the failure in the job; a misconfigured destination fails the job."""
        job = self.job
        if misconfigured:
            raise ExportJobError(f"destination {self.destination.name}: {reason}")
        recorded = await in_transaction_async(
            self.engine,
            lambda conn: job_rows.record_job_error(
                conn,
                tenant_id=job.tenant_id,
                job_id=job.id,
                owner=self.owner,
                error=f"retrying ({circuit_state.value}): {reason}",
            ),
        )
        if not recorded:
            raise self._lost()

    async def refresh_lag(self, *, position: RangePosition) -> None:
        """Nothing to measure: progress is the job's `exported`."""

    async def read_replay(self, *, limit: int) -> list[tuple[int, AuditEvent]]:
        """None: an export sends its range; dead letters are replayed by the stream."""
        return []

    async def settle_replay(self, *, delivered: Sequence[int], refused: Mapping[int, str]) -> None:
        """Never called: an export replays no dead letters."""
