"""The loop that delivers one destination's events: read, format, rate limit, send, decide.

One batch is in flight per destination. A batch that must be retried is sent again, as it
was, before anything newer; the cursor moves only once the destination accepted the batch,
and it moves in the same transaction that records the delivery. Every decision point is
its own small piece (`TokenBucket`, `RetryPolicy`, `CircuitBreaker`); this loop composes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
    Transport,
)
from xavyo_siem.errors import EncodeError
from xavyo_siem.model import AuditEvent, CircuitState, SiemDestination, to_epoch_us
from xavyo_siem.pipeline import health
from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.pipeline.retry import RetryPolicy
from xavyo_siem.store.dead_letters import DeadLetter, replay_requested, settle_replay
from xavyo_siem.store.events import EventCursor, measure_lag, read_events_after, read_events_by_id
from xavyo_siem.store.leases import Lease, LeaseLost
from xavyo_siem.store.state import read_state

__all__ = ["DEFAULT_BATCH", "DestinationLoop", "PipelineSettings"]

log = logging.getLogger("xavyo_siem.pipeline")

DEFAULT_BATCH = 500
_R = TypeVar("_R")
Formatter = Callable[[AuditEvent], str]


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """How the loops pace themselves."""

    poll_interval_s: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_threshold: int = 5
    lag_refresh_s: float = 5.0


@dataclass(slots=True)
class _Batch:
    """A batch read from the store, formatted, waiting to be accepted.

    A replay batch (dead letters sent again) has `replayed`, the dead-letter id of each
    record's event, and does not move the cursor.
    """

    records: list[Record]
    cursor: EventCursor
    unencodable: list[tuple[UUID, str]]
    replayed: dict[str, int] | None = None


class DestinationLoop:
    """Delivers one destination's events until stopped (or, draining, until caught up)."""

    def __init__(
        self,
        *,
        engine: Engine,
        destination: SiemDestination,
        transport: Transport,
        formatter: Formatter,
        lease: Lease | None,
        settings: PipelineSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.destination = destination
        self.transport = transport
        self.formatter = formatter
        self.lease = lease
        self.settings = settings or PipelineSettings()
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._sleep = sleep or self._interruptible_sleep
        limit = destination.rate_limit
        batch = int(destination.options.get("batch_max_events", DEFAULT_BATCH))
        self.bucket: TokenBucket | None = None
        if limit is not None:
            self.bucket = TokenBucket(
                limit.events_per_s, limit.burst, clock=time.monotonic, sleep=self._sleep
            )
            batch = min(batch, limit.burst)
        self.batch_size = max(batch, 1)
        self.circuit = CircuitBreaker(threshold=self.settings.circuit_threshold)
        self.caught_up = asyncio.Event()
        self.stuck_reason: str | None = None
        self._delivered: deque[tuple[float, int]] = deque()
        self._next_lag = 0.0

    # -- the loop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and return."""
        self._stop.set()

    async def run(self) -> None:
        """Deliver until `stop()`; the batch in flight is finished or left to be resent."""
        state = await self._store(
            lambda conn: read_state(
                conn, tenant_id=self.destination.tenant_id, destination_id=self.destination.id
            )
        )
        if state is None:
            raise LeaseLost("destination was removed")
        cursor = state.cursor
        self.circuit.failures = state.consecutive_failures
        self.circuit.state = state.circuit_state
        pending: _Batch | None = None
        while not self._stop.is_set():
            if pending is None:
                pending = await self._read_replay(cursor) or await self._read_batch(cursor)
                if pending is None:
                    if await self._nothing_waits(cursor):
                        self.caught_up.set()
                    await self._refresh_lag(cursor)
                    await self._sleep(self.settings.poll_interval_s)
                    continue
                if not pending.records:
                    cursor = await self._skip(pending)
                    pending = None
                    continue
            self.caught_up.clear()
            if self.bucket is not None:
                await self.bucket.acquire(len(pending.records))
                if self._stop.is_set():
                    break
            if self.circuit.state is CircuitState.OPEN:
                self.circuit.probe()
            result = await self.transport.send(pending.records)
            if await self._decide(pending, result):
                cursor = pending.cursor
                pending = None
            await self._refresh_lag(cursor)

    async def _interruptible_sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0))

    # -- steps ------------------------------------------------------------------------------

    async def _read_batch(self, cursor: EventCursor) -> _Batch | None:
        """The next batch after `cursor`, formatted; None when there is nothing new."""
        destination = self.destination
        page = await self._store(
            lambda conn: read_events_after(
                conn,
                tenant_id=destination.tenant_id,
                after=cursor,
                limit=self.batch_size,
                filter=destination.filters,
            )
        )
        if page.cursor == cursor:
            return None
        records: list[Record] = []
        unencodable: list[tuple[UUID, str]] = []
        for event in page.events:
            if event.tenant_id != destination.tenant_id:  # the store guarantees it; so do we
                raise AssertionError("an event of another tenant reached a destination loop")
            try:
                text = self.formatter(event)
            except EncodeError as exc:
                unencodable.append((event.event_id, f"cannot be encoded: {exc}"))
                continue
            records.append(Record(str(event.event_id), to_epoch_us(event.timestamp), text))
        return _Batch(records, page.cursor, unencodable)

    async def _nothing_waits(self, cursor: EventCursor) -> bool:
        """True when no event of the tenant waits after the cursor, final or not.

        An empty read can also mean that events are stored but not yet final (a transaction
        elsewhere is still open, see docs/store.md); that is not "caught up".
        """
        destination = self.destination
        waiting, _ = await self._store(
            lambda conn: measure_lag(
                conn,
                tenant_id=destination.tenant_id,
                after=cursor,
                filter=destination.filters,
                cap=1,
            )
        )
        return waiting == 0

    async def _read_replay(self, cursor: EventCursor) -> _Batch | None:
        """Dead letters an operator asked to send again, as a batch; None when there are none."""
        destination = self.destination

        def read(conn: Connection) -> tuple[list[DeadLetter], list[AuditEvent]]:
            letters = replay_requested(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                limit=self.batch_size,
            )
            events = read_events_by_id(
                conn, tenant_id=destination.tenant_id, event_ids=[d.event_id for d in letters]
            )
            return letters, events

        letters, events = await self._store(read)
        if not letters:
            return None
        by_event = {str(letter.event_id): letter.id for letter in letters}
        records: list[Record] = []
        for event in events:
            try:
                text = self.formatter(event)
            except EncodeError:
                continue  # still unencodable: it stays a dead letter
            records.append(Record(str(event.event_id), to_epoch_us(event.timestamp), text))
        replayed = {record.event_id: by_event[record.event_id] for record in records}
        return _Batch(records, cursor, [], replayed) if records else None

    async def _skip(self, batch: _Batch) -> EventCursor:
        """Move past a page with nothing to send (filtered out, or all unencodable)."""
        await self._store(
            lambda conn: health.record_delivered(
                conn,
                self.destination,
                lease=self.lease,
                cursor=batch.cursor,
                delivered=0,
                dead=batch.unencodable,
                throughput_eps=self._throughput(0),
            )
        )
        return batch.cursor

    async def _decide(self, batch: _Batch, result: DeliveryResult) -> bool:
        """Record what the destination said; True when the batch is done with."""
        destination = self.destination
        match result:
            case Delivered():
                delivered = len(batch.records)
                dead = batch.unencodable
            case Rejected(by_index=by_index):
                delivered = len(batch.records) - len(by_index)
                dead = batch.unencodable + [
                    (UUID(batch.records[index].event_id), reason)
                    for index, reason in sorted(by_index.items())
                ]
            case RetryLater(reason=reason, after_s=after_s):
                await self._failed(reason, after_s=after_s, misconfigured=False)
                return False
            case Misconfigured(reason=reason):
                await self._failed(reason, after_s=None, misconfigured=True)
                return False
        self.circuit.record_success()
        self.stuck_reason = None
        if batch.replayed is not None:
            await self._settle_replay(batch, result)
            return True
        await self._store(
            lambda conn: health.record_delivered(
                conn,
                destination,
                lease=self.lease,
                cursor=batch.cursor,
                delivered=delivered,
                dead=dead,
                throughput_eps=self._throughput(delivered),
            )
        )
        return True

    async def _settle_replay(self, batch: _Batch, result: DeliveryResult) -> None:
        assert batch.replayed is not None
        refused_index = result.by_index if isinstance(result, Rejected) else {}
        refused = {
            batch.replayed[batch.records[index].event_id]: reason
            for index, reason in refused_index.items()
        }
        delivered = [ident for ident in batch.replayed.values() if ident not in refused]
        destination = self.destination
        await self._store(
            lambda conn: settle_replay(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                delivered=delivered,
                refused=refused,
            )
        )
        log.info("destination %s: replayed %d dead letter(s)", destination.name, len(delivered))

    async def _failed(self, reason: str, *, after_s: float | None, misconfigured: bool) -> None:
        state = self.circuit.record_failure(reason, misconfigured=misconfigured)
        self.stuck_reason = reason if misconfigured else None
        await self._store(
            lambda conn: health.record_failure(
                conn,
                self.destination,
                lease=self.lease,
                reason=reason,
                circuit_state=state,
                misconfigured=misconfigured,
            )
        )
        delay = self.settings.retry.delay(
            self.circuit.failures, peer_after_s=after_s, misconfigured=misconfigured, rng=self._rng
        )
        await self._sleep(delay)

    async def _refresh_lag(self, cursor: EventCursor) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self.settings.lag_refresh_s
        await self._store(lambda conn: health.refresh_lag(conn, self.destination, cursor=cursor))

    def _throughput(self, delivered: int) -> float:
        """Events per second delivered over the last ten seconds."""
        now = time.monotonic()
        self._delivered.append((now, delivered))
        while self._delivered and self._delivered[0][0] < now - 10:
            self._delivered.popleft()
        span = max(now - self._delivered[0][0], 1.0)
        return sum(count for _, count in self._delivered) / span

    async def _store(self, work: Callable[[Connection], _R]) -> _R:
        """Run `work` in one transaction on a worker thread; a lost lease stops the loop."""

        def run() -> _R:
            with self.engine.begin() as conn:
                return work(conn)

        return await asyncio.to_thread(run)
