"""The loop that delivers one destination's events: read, format, rate limit, send, decide.

One batch is in flight per destination. A batch that must be retried is sent again, as it
was, before anything newer; the cursor moves only once the destination accepted the batch,
and it moves in the same transaction that records the delivery. Every decision point is
its own small piece (`TokenBucket`, `RetryPolicy`, `CircuitBreaker`); this loop composes them.

Where batches come from, and where their outcome is recorded, is a `BatchSource`. Streaming
uses `CursorSource`: the destination's events after its stored cursor, with the cursor and
health moved together. A batch export (xavyo_siem.batch) plugs in a time range whose
checkpoint lives in its job, so it shares retries, circuit, rate limit and dead letters
without ever moving the streaming cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
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
from xavyo_siem.model import AuditEvent, CircuitState, SiemDestination
from xavyo_siem.pipeline import health
from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.pipeline.retry import RetryPolicy
from xavyo_siem.store.dead_letters import DeadLetter, replay_requested, settle_replay
from xavyo_siem.store.engine import in_snapshot_async, in_transaction_async
from xavyo_siem.store.events import EventCursor, measure_lag, read_events_after, read_events_by_id
from xavyo_siem.store.leases import Lease, LeaseLost
from xavyo_siem.store.state import read_state

__all__ = [
    "DEFAULT_BATCH",
    "BatchSource",
    "CursorSource",
    "DestinationLoop",
    "PipelineSettings",
    "SourcePage",
    "SourceStart",
]

log = logging.getLogger("xavyo_siem.pipeline")

DEFAULT_BATCH = 500
_R = TypeVar("_R")
_P = TypeVar("_P")
Formatter = Callable[[AuditEvent], str]


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """How the loops pace themselves."""

    poll_interval_s: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_threshold: int = 5
    lag_refresh_s: float = 5.0


@dataclass(frozen=True, slots=True)
class SourceStart(Generic[_P]):
    """Where a source starts: its position, and the circuit it remembers."""

    position: _P
    circuit_state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0


@dataclass(frozen=True, slots=True)
class SourcePage(Generic[_P]):
    """Events read in order, and the position to continue from (past filtered-out rows too)."""

    events: list[AuditEvent]
    position: _P


class BatchSource(Protocol[_P]):
    """Where a `DestinationLoop`'s batches come from, and where their outcome is recorded.

    A position is opaque to the loop: it passes what `read` returned to `record_delivered`
    once the destination accepted the batch. Each method runs inside one store transaction on
    a worker thread; raising (e.g. `LeaseLost`) ends the loop.
    """

    replays_dead_letters: bool  # send the dead letters an operator asked to replay first
    exhausted: bool  # nothing more, ever: the loop returns (True) once all is delivered

    def begin(self, conn: Connection) -> SourceStart[_P]:
        """The position to start from, and the circuit state to resume."""
        ...

    def read(self, conn: Connection, *, after: _P, limit: int) -> SourcePage[_P] | None:
        """Up to `limit` events after `after`; None when there is nothing new."""
        ...

    def nothing_waits(self, conn: Connection, *, after: _P) -> bool:
        """True when no event waits after `after`, final or not (caught up)."""
        ...

    def record_delivered(
        self,
        conn: Connection,
        *,
        position: _P,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        """A batch is done with: move to `position`, count it, dead-letter `dead`."""
        ...

    def record_failure(
        self, conn: Connection, *, reason: str, circuit_state: CircuitState, misconfigured: bool
    ) -> None:
        """A batch failed and will be sent again; the position stays."""
        ...

    def refresh_lag(self, conn: Connection, *, position: _P) -> None:
        """Measure how far behind the source is (metrics)."""
        ...


class CursorSource:
    """The streaming source: a destination's events after its stored cursor.

    Delivery moves the cursor and the health in one transaction, fenced by the lease.
    """

    replays_dead_letters = True
    exhausted = False

    def __init__(self, destination: SiemDestination, lease: Lease | None) -> None:
        self.destination = destination
        self.lease = lease

    def begin(self, conn: Connection) -> SourceStart[EventCursor]:
        """The stored cursor and circuit; `LeaseLost` when the destination was removed."""
        destination = self.destination
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
        if state is None:
            raise LeaseLost("destination was removed")
        return SourceStart(state.cursor, state.circuit_state, state.consecutive_failures)

    def read(
        self, conn: Connection, *, after: EventCursor, limit: int
    ) -> SourcePage[EventCursor] | None:
        """The destination's next final events after the cursor, through its filter."""
        destination = self.destination
        page = read_events_after(
            conn,
            tenant_id=destination.tenant_id,
            after=after,
            limit=limit,
            filter=destination.filters,
        )
        return None if page.cursor == after else SourcePage(page.events, page.cursor)

    def nothing_waits(self, conn: Connection, *, after: EventCursor) -> bool:
        """True when no event of the tenant waits after the cursor, final or not.

        An empty read can also mean that events are stored but not yet final (a transaction
        elsewhere is still open, see docs/store.md); that is not "caught up".
        """
        destination = self.destination
        waiting, _ = measure_lag(
            conn, tenant_id=destination.tenant_id, after=after, filter=destination.filters, cap=1
        )
        return waiting == 0

    def record_delivered(
        self,
        conn: Connection,
        *,
        position: EventCursor,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        """Advance the cursor and count the delivery (health.record_delivered)."""
        health.record_delivered(
            conn,
            self.destination,
            lease=self.lease,
            cursor=position,
            delivered=delivered,
            dead=dead,
            throughput_eps=throughput_eps,
        )

    def record_failure(
        self, conn: Connection, *, reason: str, circuit_state: CircuitState, misconfigured: bool
    ) -> None:
        """Count the failure in the destination's health (health.record_failure)."""
        health.record_failure(
            conn,
            self.destination,
            lease=self.lease,
            reason=reason,
            circuit_state=circuit_state,
            misconfigured=misconfigured,
        )

    def refresh_lag(self, conn: Connection, *, position: EventCursor) -> None:
        """Publish the destination's lag as metrics (health.refresh_lag)."""
        health.refresh_lag(conn, self.destination, cursor=position)


@dataclass(slots=True)
class _Batch:
    """A batch read from the store, formatted, waiting to be accepted.

    A replay batch (dead letters sent again) has `replayed`, the dead-letter id of each
    record's event, and does not move the cursor.
    """

    records: list[Record]
    cursor: Any  # the source's position after this batch
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
        source: BatchSource[Any] | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        """`source` defaults to the streaming `CursorSource(destination, lease)`. `bucket`
        shares one rate limit between loops that send to the same destination."""
        self.engine = engine
        self.destination = destination
        self.transport = transport
        self.formatter = formatter
        self.lease = lease
        self.source: BatchSource[Any] = source or CursorSource(destination, lease)
        self.settings = settings or PipelineSettings()
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._sleep = sleep or self._interruptible_sleep
        limit = destination.rate_limit
        batch = int(destination.options.get("batch_max_events", DEFAULT_BATCH))
        self.bucket: TokenBucket | None = bucket
        if bucket is not None:
            batch = min(batch, bucket.burst)
        elif limit is not None:
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

    async def run(self) -> bool:
        """Deliver until `stop()`; the batch in flight is finished or left to be resent.

        Returns True only when an exhausted source (a batch export) was delivered to its
        end; False when stopped. Ask this, not `source.exhausted`: the batch read ahead
        can find the end while the last batch is still waiting to be accepted.

        While a batch is on the wire, the next one is read and formatted (one batch ahead,
        never more): the destination's time to answer no longer adds to the store's and
        the formatter's. A batch that must be sent again is still sent before it.
        """
        start = await self._read(self.source.begin)
        cursor = start.position
        self.circuit.failures = start.consecutive_failures
        self.circuit.state = start.circuit_state
        pending: _Batch | None = None
        ahead: asyncio.Task[_Batch | None] | None = None  # the batch after `pending`
        try:
            while not self._stop.is_set():
                if pending is None:
                    pending = await self._read_replay(cursor)
                    if pending is None:
                        pending, ahead = await self._take_ahead(ahead, cursor), None
                    if pending is None:
                        if self.source.exhausted:
                            self.caught_up.set()
                            return True
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
                    await self.bucket.acquire(len(pending.records), sleep=self._sleep)
                    if self._stop.is_set():
                        break
                if self.circuit.state is CircuitState.OPEN:
                    self.circuit.probe()
                if ahead is None:
                    ahead = asyncio.create_task(self._read_batch(pending.cursor))
                result = await self.transport.send(pending.records)
                if await self._decide(pending, result):
                    cursor = pending.cursor
                    pending = None
                await self._refresh_lag(cursor)
            return False
        finally:
            if ahead is not None:  # read only: dropping it loses nothing
                ahead.cancel()
                await asyncio.wait({ahead})  # a cancel aimed at run() itself still arrives
                if not ahead.cancelled():
                    ahead.exception()  # retrieved: the loop's own outcome is what counts

    async def _take_ahead(
        self, ahead: asyncio.Task[_Batch | None] | None, cursor: Any
    ) -> _Batch | None:
        """The batch read ahead after `cursor`; read now if there is none, or if it found
        nothing (events may have been stored since), so an idle loop polls fresh."""
        batch = None if ahead is None else await ahead
        return batch if batch is not None else await self._read_batch(cursor)

    async def _interruptible_sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0))

    # -- steps ------------------------------------------------------------------------------

    async def _read_batch(self, cursor: Any) -> _Batch | None:
        """The next batch after `cursor`, formatted; None when there is nothing new."""
        destination = self.destination
        page = await self._read(
            lambda conn: self.source.read(conn, after=cursor, limit=self.batch_size)
        )
        if page is None:
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
            records.append(Record.of(event, text))
        return _Batch(records, page.position, unencodable)

    async def _nothing_waits(self, cursor: Any) -> bool:
        """True when nothing waits after the cursor, final or not (see `BatchSource`)."""
        return await self._read(lambda conn: self.source.nothing_waits(conn, after=cursor))

    async def _read_replay(self, cursor: Any) -> _Batch | None:
        """Dead letters an operator asked to send again, as a batch; None when there are none."""
        if not self.source.replays_dead_letters:
            return None
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

        letters, events = await self._read(read)
        if not letters:
            return None
        by_event = {str(letter.event_id): letter.id for letter in letters}
        records: list[Record] = []
        for event in events:
            try:
                text = self.formatter(event)
            except EncodeError:
                continue  # still unencodable: it stays a dead letter
            records.append(Record.of(event, text))
        replayed = {record.event_id: by_event[record.event_id] for record in records}
        return _Batch(records, cursor, [], replayed) if records else None

    async def _skip(self, batch: _Batch) -> Any:
        """Move past a page with nothing to send (filtered out, or all unencodable)."""
        await self._store(
            lambda conn: self.source.record_delivered(
                conn,
                position=batch.cursor,
                delivered=0,
                dead=batch.unencodable,
                throughput_eps=self._throughput(0),
            )
        )
        return batch.cursor

    async def _decide(self, batch: _Batch, result: DeliveryResult) -> bool:
        """Record what the destination said; True when the batch is done with."""
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
            lambda conn: self.source.record_delivered(
                conn,
                position=batch.cursor,
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
            lambda conn: self.source.record_failure(
                conn,
                reason=reason,
                circuit_state=state,
                misconfigured=misconfigured,
            )
        )
        delay = self.settings.retry.delay(
            self.circuit.failures, peer_after_s=after_s, misconfigured=misconfigured, rng=self._rng
        )
        await self._sleep(delay)

    async def _refresh_lag(self, cursor: Any) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self.settings.lag_refresh_s
        await self._read(lambda conn: self.source.refresh_lag(conn, position=cursor))

    def _throughput(self, delivered: int) -> float:
        """Events per second delivered over the last ten seconds."""
        now = time.monotonic()
        self._delivered.append((now, delivered))
        while self._delivered and self._delivered[0][0] < now - 10:
            self._delivered.popleft()
        span = max(now - self._delivered[0][0], 1.0)
        return sum(count for _, count in self._delivered) / span

    async def _store(self, work: Callable[[Connection], _R]) -> _R:
        """Run `work`, which writes, in one transaction on a worker thread; a lost lease
        (raised by `work`) stops the loop."""
        return await in_transaction_async(self.engine, work)

    async def _read(self, work: Callable[[Connection], _R]) -> _R:
        """Run `work`, which only reads, in one snapshot on a worker thread."""
        return await in_snapshot_async(self.engine, work)
