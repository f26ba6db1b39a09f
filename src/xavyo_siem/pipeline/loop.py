"""The loop that delivers one destination's events: read, format, rate limit, send, decide.

One batch is in flight per destination. A batch that must be retried is sent again, as it
was, before anything newer; the position moves only once the destination accepted the
batch. Every decision point is its own small piece (`TokenBucket`, `RetryPolicy`,
`CircuitBreaker`); this loop composes them.

Where batches come from, and where their outcome is recorded, is a `BatchSource`: a small
async protocol with no store type in it. Each source runs its own transactions. A batch
export to a destination (xavyo_siem.batch) plugs in a time range whose checkpoint lives in
its job, so it shares retries, circuit, rate limit and dead letters without ever moving the
destination's streaming cursor. (Streaming itself runs each destination as a lane of the
worker's scheduler: lane.py, scheduler.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from xavyo_siem.delivery.base import DeliveryResult, Transport
from xavyo_siem.delivery.option_values import DeliveryPolicy
from xavyo_siem.model import AuditEvent, CircuitState, SiemDestination
from xavyo_siem.pipeline.batches import (
    Batch,
    Formatter,
    format_batch,
    format_replay,
    judge,
    replay_outcome,
    send_batch,
)
from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.health import Throughput
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.pipeline.retry import RetryPolicy

__all__ = [
    "BatchSource",
    "DestinationComponents",
    "DestinationLoop",
    "Formatter",
    "OpenComponents",
    "PipelineSettings",
    "SourcePage",
    "SourceStart",
]

log = logging.getLogger("xavyo_siem.pipeline")

_P = TypeVar("_P")


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """How the loops pace themselves."""

    poll_interval_s: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_threshold: int = 5
    lag_refresh_s: float = 5.0


@dataclass(frozen=True, slots=True)
class DestinationComponents:
    """What delivers to one destination, opened from its stored settings: the transport, the
    record formatter, the events per batch its validated transport config allows, and its
    delivery policy (when to give up on a batch, its circuit breaker). `linger_s` lets a
    following lane wait for a full batch until its oldest event has waited that long (S3:
    fewer, larger objects); 0 sends what there is at once."""

    transport: Transport
    formatter: Formatter
    batch_size: int
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    linger_s: float = 0.0


# Opens a destination's components (xavyo_siem.runtime.open_destination, bound to a store).
OpenComponents = Callable[[SiemDestination], Awaitable[DestinationComponents]]


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
    once the destination accepted the batch. Each method does its own I/O (one store
    transaction, say); raising (e.g. a lost lease) ends the loop.
    """

    exhausted: bool  # nothing more, ever: the loop returns (True) once all is delivered

    async def begin(self) -> SourceStart[_P]:
        """The position to start from, and the circuit state to resume."""
        ...

    async def read(self, *, after: _P, limit: int) -> SourcePage[_P] | None:
        """Up to `limit` events after `after`; None when there is nothing new."""
        ...

    async def nothing_waits(self, *, after: _P) -> bool:
        """True when no event waits after `after`, final or not (caught up)."""
        ...

    async def record_delivered(
        self,
        *,
        position: _P,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        """A batch is done with: move to `position`, count it, dead-letter `dead`."""
        ...

    async def record_failure(
        self, *, reason: str, circuit_state: CircuitState, misconfigured: bool
    ) -> None:
        """A batch failed and will be sent again; the position stays."""
        ...

    async def refresh_lag(self, *, position: _P) -> None:
        """Measure how far behind the source is (metrics)."""
        ...

    async def read_replay(self, *, limit: int) -> list[tuple[int, AuditEvent]]:
        """Up to `limit` dead letters an operator asked to send again, as (dead letter id,
        event) pairs; sent before anything new. Empty when there are none (or the source
        replays none)."""
        ...

    async def settle_replay(self, *, delivered: Sequence[int], refused: Mapping[int, str]) -> None:
        """After a replay batch: the delivered dead letters go, the refused ones stay with
        the destination's new reason."""
        ...


class DestinationLoop:
    """Delivers one destination's events until stopped (or, draining, until caught up)."""

    def __init__(
        self,
        *,
        destination: SiemDestination,
        source: BatchSource[Any],
        transport: Transport,
        formatter: Formatter,
        batch_size: int,
        settings: PipelineSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        """`batch_size` is the destination's own (its transport config's events per batch),
        capped by the rate limit's burst. `bucket` shares one rate limit between loops that
        send to the same destination."""
        self.destination = destination
        self.source = source
        self.transport = transport
        self.formatter = formatter
        self.settings = settings or PipelineSettings()
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._sleep = sleep or self._interruptible_sleep
        limit = destination.rate_limit
        self.bucket: TokenBucket | None = bucket
        if bucket is not None:
            batch_size = min(batch_size, bucket.burst)
        elif limit is not None:
            self.bucket = TokenBucket(
                limit.events_per_s, limit.burst, clock=time.monotonic, sleep=self._sleep
            )
            batch_size = min(batch_size, limit.burst)
        self.batch_size = max(batch_size, 1)
        self.circuit = CircuitBreaker(threshold=self.settings.circuit_threshold)
        self.caught_up = asyncio.Event()
        self.stuck_reason: str | None = None
        self._throughput = Throughput(time.monotonic)
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
        start = await self.source.begin()
        cursor = start.position
        self.circuit.failures = start.consecutive_failures
        self.circuit.state = start.circuit_state
        pending: Batch | None = None
        ahead: asyncio.Task[Batch | None] | None = None  # the batch after `pending`
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
                        if await self.source.nothing_waits(after=cursor):
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
                    ahead = asyncio.create_task(self._read_batch(pending.position))
                result = await send_batch(self.transport, pending)
                if await self._decide(pending, result):
                    cursor = pending.position
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
        self, ahead: asyncio.Task[Batch | None] | None, cursor: Any
    ) -> Batch | None:
        """The batch read ahead after `cursor`; read now if there is none, or if it found
        nothing (events may have been stored since), so an idle loop polls fresh."""
        batch = None if ahead is None else await ahead
        return batch if batch is not None else await self._read_batch(cursor)

    async def _interruptible_sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0))

    # -- steps ------------------------------------------------------------------------------

    async def _read_batch(self, cursor: Any) -> Batch | None:
        """The next batch after `cursor`, formatted; None when there is nothing new."""
        page = await self.source.read(after=cursor, limit=self.batch_size)
        if page is None:
            return None
        return format_batch(
            page.events,
            formatter=self.formatter,
            tenant_id=self.destination.tenant_id,
            position=page.position,
            after=cursor,
        )

    async def _read_replay(self, cursor: Any) -> Batch | None:
        """Dead letters an operator asked to send again, as a batch; None when there are none."""
        letters = await self.source.read_replay(limit=self.batch_size)
        return format_replay(letters, formatter=self.formatter, position=cursor)

    async def _skip(self, batch: Batch) -> Any:
        """Move past a page with nothing to send (filtered out, or all unencodable)."""
        await self.source.record_delivered(
            position=batch.position,
            delivered=0,
            dead=batch.unencodable,
            throughput_eps=self._throughput.add(0),
        )
        return batch.position

    async def _decide(self, batch: Batch, result: DeliveryResult) -> bool:
        """Record what the destination said; True when the batch is done with."""
        verdict = judge(batch, result)
        if verdict.failed is not None:
            await self._failed(
                verdict.failed, after_s=verdict.after_s, misconfigured=verdict.misconfigured
            )
            return False
        self.circuit.record_success()
        self.stuck_reason = None
        if batch.replayed is not None:
            delivered, refused = replay_outcome(batch, verdict)
            await self.source.settle_replay(delivered=delivered, refused=refused)
            log.info(
                "destination %s: replayed %d dead letter(s)", self.destination.name, len(delivered)
            )
            return True
        await self.source.record_delivered(
            position=batch.position,
            delivered=verdict.delivered,
            dead=verdict.dead or [],
            throughput_eps=self._throughput.add(verdict.delivered),
        )
        return True

    async def _failed(self, reason: str, *, after_s: float | None, misconfigured: bool) -> None:
        state = self.circuit.record_failure(reason, misconfigured=misconfigured)
        self.stuck_reason = reason if misconfigured else None
        await self.source.record_failure(
            reason=reason, circuit_state=state, misconfigured=misconfigured
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
        await self.source.refresh_lag(position=cursor)
