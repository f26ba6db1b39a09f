"""One destination inside a worker: its events in memory, its batch, its pace.

A lane is a destination's delivery state while a worker holds it. It never waits in place:
a turn takes one capped batch, sends it and decides, and whatever would wait instead moves
the lane's due time (`due`): the rate limit's delay, a retry's backoff, an open circuit.
The scheduler (scheduler.py) gives turns to due lanes and catches whatever escapes one.

Where the events come from:

- **following** the worker's change feed: the feed offers each new event of the lane's
  tenant (`offer`), and the lane keeps those its filter matches, at most `max_buffered`.
  Offered more than that, it lets them all go and falls behind: a slow destination holds
  a bounded amount of memory, and nothing else back.
- **behind**: the lane reads its own backlog, one page a turn, through `LaneStore`, and the
  next page while a full one is on the wire. Once a read finds the end (`at_end`), the
  scheduler lets it join the feed, if the feed has not passed it meanwhile.

A destination that lingers (`DestinationComponents.linger_s`, S3's `object_max_age_s`) lets
a following lane hold a batch that is not full yet until its oldest event has waited that
long; a full batch goes at once.

A batch that fails is sent again after a backoff, without end by default. A destination's
delivery policy (`DeliveryPolicy`) may give up on it after some attempts or some time: its
events then go to dead letters with the last reason (they can be replayed) and the lane goes
on with the next batch after the backoff. The policy also sets the circuit's threshold and
the cool-down of an open circuit.

After a delivered batch a lane waits until the worker wrote its progress (one transaction
for every lane's, see runtime/lane_store.py), so at most one batch per destination is ever
delivered and not yet recorded.

Positions are the store's, opaque here and only compared: `acked` is where the stored
cursor is (or will be, once the worker writes it), `taken` is after the last event moved
into a batch, `seen` after the last event the lane has. acked ≤ taken ≤ seen.
"""

from __future__ import annotations

import asyncio
import operator
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from xavyo_siem.delivery.base import Record
from xavyo_siem.delivery.option_values import DeliveryPolicy
from xavyo_siem.errors import SiemError
from xavyo_siem.model import AuditEvent, CircuitState, SiemDestination
from xavyo_siem.pipeline.batches import (
    Batch,
    format_batch,
    format_replay,
    judge,
    replay_outcome,
    send_batch,
)
from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.health import Throughput
from xavyo_siem.pipeline.loop import (
    DestinationComponents,
    OpenComponents,
    PipelineSettings,
    SourcePage,
)
from xavyo_siem.pipeline.metrics import SEND_SECONDS, Counts
from xavyo_siem.pipeline.rate_limit import TokenBucket

__all__ = ["Lane", "LaneStore", "SourceUnavailable", "drop_outcome"]

# The backoff's jitter, shared: a generator of its own would cost each lane 2.5 kB (and a
# read of the system's entropy) for numbers nobody needs to be independent.
_JITTER = random.Random()
_TEXT = operator.itemgetter(Record._fields.index("text"))  # a record's text, at C speed


class SourceUnavailable(Exception):
    """The events or the state cannot be read or written now (the store is down): the lane
    tries again later; this is not its destination's fault."""


class LaneStore(Protocol):
    """What lanes ask of the store. Reads are awaited; outcomes are noted and written later,
    for many lanes at once. Raises `SourceUnavailable` while the store cannot be reached."""

    async def read_backlog(self, lane: Lane, *, after: Any, limit: int) -> SourcePage[Any] | None:
        """Up to `limit` of the lane's events after `after`; None when nothing final waits."""
        ...

    async def read_replay(self, lane: Lane, *, limit: int) -> list[tuple[int, AuditEvent]]:
        """Dead letters an operator asked to send again, as (dead letter id, event)."""
        ...

    async def settle_replay(
        self, lane: Lane, *, delivered: Sequence[int], refused: Mapping[int, str]
    ) -> None:
        """After a replay batch: the delivered dead letters go, the refused stay."""
        ...

    def note_delivered(
        self,
        lane: Lane,
        *,
        position: Any,
        delivered: int,
        dead: Sequence[tuple[UUID, str]],
        throughput_eps: float,
    ) -> None:
        """A batch is done with: the cursor may move to `position`."""
        ...

    def note_failure(
        self, lane: Lane, *, reason: str, circuit: CircuitBreaker, misconfigured: bool
    ) -> None:
        """A batch failed (or the lane could not run); the cursor stays."""
        ...

    def note_losses(self, lane: Lane, *, possibly_lost: int, truncated: int) -> None:
        """The transport counted records it could not vouch for, or sent cut."""
        ...

    def note_disabled(self, lane: Lane, *, reason: str) -> None:
        """The endpoint said it is gone: switch the destination off (the cursor stays)."""
        ...


class Lane:
    """One destination's delivery state in a worker (see the module docstring)."""

    def __init__(
        self,
        *,
        destination: SiemDestination,
        position: Any,
        open_components: OpenComponents,
        circuit_state: CircuitState = CircuitState.CLOSED,
        consecutive_failures: int = 0,
        settings: PipelineSettings | None = None,
        bucket: TokenBucket | None = None,
        max_buffered: int = 10_000,
        counts: Counts | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.destination = destination
        self.counts = Counts() if counts is None else counts  # what its metrics show
        self.settings = settings or PipelineSettings()
        self.acked = self.taken = self.seen = position
        self.following = False
        self.at_end = False
        self.buffer: deque[tuple[Any, AuditEvent]] = deque()
        self.max_buffered = max_buffered
        self.pending: Batch | None = None
        self.writing = False  # a delivered batch's progress is not written yet
        self.replay_waiting = False
        self.components: DestinationComponents | None = None
        self.batch_size = 1
        self.linger_s = 0.0
        self.lingering = False  # due when the oldest buffered event has waited `linger_s`
        self._buffered_at: float | None = None  # when the buffer last became non-empty
        self.bucket = bucket
        self.circuit = CircuitBreaker(
            threshold=self.settings.circuit_threshold,
            failures=consecutive_failures,
            state=circuit_state,
        )
        self.stuck_reason: str | None = None
        self.policy = DeliveryPolicy()
        self.attempts = 0  # failures of the pending batch
        self.failing_since = 0.0  # when the pending batch first failed
        self.hold_until = 0.0  # after giving up on a batch: the next one waits the backoff
        self.switched_off: str | None = None  # why, once the endpoint said it is gone
        self._losses_seen = (0, 0)  # the transport's (possibly lost, truncated) noted so far
        self.due: float | None = clock()  # None: nothing to do until offered events
        self.last_used = clock()
        self._open = open_components
        self._rng = rng or _JITTER
        self._clock = clock
        self._throughput = Throughput(clock)
        self._ahead: asyncio.Future[SourcePage[Any] | None] | None = None  # the next page
        self._ahead_from: Any = None
        self._send_seconds = SEND_SECONDS.labels(destination.delivery_type.value)  # shared

    @property
    def id(self) -> UUID:
        return self.destination.id

    @property
    def tenant_id(self) -> UUID:
        return self.destination.tenant_id

    # -- the feed ---------------------------------------------------------------------------

    def offer(self, events: Sequence[tuple[Any, AuditEvent]]) -> bool:
        """New events of the lane's tenant from the feed, each with its position, in store
        order; True when the lane took any. Those at or before what the lane has seen are
        skipped, and so are those its filters leave out; when the buffer would overflow,
        the lane lets go of it and reads the events from the store instead."""
        if not self.following or self.switched_off is not None or not events:
            return False
        seen = self.seen
        if events[0][0] <= seen:
            events = [item for item in events if item[0] > seen]
            if not events:
                return False
        self.seen = events[-1][0]
        filters = self.destination.filters
        if not filters.is_everything:
            events = [item for item in events if filters.matches(item[1])]
            if not events:
                return False
        buffer = self.buffer
        if len(buffer) + len(events) > self.max_buffered:
            self.fall_behind()
            return False
        if not buffer:
            self._buffered_at = self._clock()
        buffer.extend(events)
        if self.lingering and len(buffer) >= self.batch_size:
            self.lingering = False
            self.due = None  # a full batch: the scheduler wakes the lane now
        return True

    def fall_behind(self) -> None:
        """Let go of the buffered events; they will be read again from the store."""
        self._drop_ahead()
        self.buffer.clear()
        self._buffered_at = None
        self.seen = self.taken
        self.following = False
        self.at_end = False

    def join(self) -> None:
        """Follow the feed from `seen` on (the scheduler checked that nothing is missed)."""
        self.following = True

    def has_work(self) -> bool:
        """Something to send now, or a backlog to read."""
        if self.switched_off is not None:
            return False
        return (
            self.pending is not None
            or self.replay_waiting
            or bool(self.buffer)
            or not (self.following or self.at_end)
        )

    def shown_lag(self) -> tuple[int, datetime | None] | None:
        """Events held and not yet accepted, and the time of the oldest of them; None while
        the lane reads its own backlog (its lag is in the store, not here)."""
        if not self.following:
            return None
        # Asked from the metrics server's thread while the lane goes on: each field once.
        buffer, pending = self.buffer, self.pending
        count = len(buffer) + (len(pending.records) if pending is not None else 0)
        try:
            oldest = buffer[0][1].timestamp
        except IndexError:
            oldest = None
        return count, oldest

    # -- a turn -----------------------------------------------------------------------------

    async def turn(self, store: LaneStore) -> None:
        """Send at most one batch, decide, and set `due` (None: wait to be offered events)."""
        if self.components is None and not await self._opened(store):
            return
        assert self.components is not None
        if self.hold_until > self._clock():
            self.due = self.hold_until
            return
        batch = self.pending
        if batch is None:
            hold = self._linger_until()
            if hold is not None:
                self.lingering = True
                self.due = hold
                return
            self.lingering = False
            batch = await self._next_batch(store)
            if batch is None:
                self.due = None if self.following else self._clock()
                return
            if not batch.records:
                self._accepted(store, batch, delivered=0, dead=batch.unencodable)
                return
            self.pending = batch
        if self.bucket is not None:
            delay = self.bucket.delay_for(len(batch.records))
            if delay > 0:
                self.counts.rate_limited += 1
                self.due = self._clock() + delay
                return
            self.bucket.take(len(batch.records))
        if self.circuit.state is CircuitState.OPEN:
            self.circuit.probe()
        self.counts.bytes_sent += utf8_size(map(_TEXT, batch.records))
        sent_at = self._clock()
        result = await send_batch(self.components.transport, batch)
        self.last_used = self._clock()
        self._send_seconds.observe(self.last_used - sent_at)
        self._note_losses(store, self.components)
        verdict = judge(batch, result)
        if verdict.failed is not None:
            self.fail(
                store,
                verdict.failed,
                misconfigured=verdict.misconfigured,
                after_s=verdict.after_s,
            )
            if verdict.disable:
                self.switched_off = verdict.failed
                self.due = None
                store.note_disabled(self, reason=verdict.failed)
                return
            await self._maybe_give_up(store, batch, verdict.failed)
            return
        self.pending = None
        self.attempts = 0
        self.circuit.record_success()
        self.stuck_reason = None
        if batch.replayed is not None:
            delivered, refused = replay_outcome(batch, verdict)
            await store.settle_replay(self, delivered=delivered, refused=refused)
            self.replay_waiting = True  # there may be more
            self.due = self._clock()
            return
        self._accepted(store, batch, delivered=verdict.delivered, dead=verdict.dead or [])

    def _linger_until(self) -> float | None:
        """When a following lane that lingers sends its batch that is not full yet; None:
        now (or there is nothing to wait for)."""
        if not (self.linger_s > 0 and self.following and self.buffer) or self.replay_waiting:
            return None
        if len(self.buffer) >= self.batch_size or self._buffered_at is None:
            return None
        until = self._buffered_at + self.linger_s
        return until if until > self._clock() else None

    async def _maybe_give_up(self, store: LaneStore, batch: Batch, reason: str) -> None:
        """After a failure of `batch`: if the delivery policy says so, its events go to dead
        letters with the reason, and the next batch waits the backoff already set."""
        now = self._clock()
        if self.attempts == 0:
            self.failing_since = now
        self.attempts += 1
        failing_for = now - self.failing_since
        if not self.policy.gives_up(attempts=self.attempts, failing_for_s=failing_for):
            return
        why = (
            f"gave up after {self.attempts} attempts in {failing_for:.0f} s"
            f" (delivery policy): {reason}"
        )
        self.pending = None
        self.attempts = 0
        assert self.due is not None
        self.hold_until = self.due
        if batch.replayed is not None:  # dead letters already: they stay, with the reason
            refused = dict.fromkeys(batch.replayed.values(), why)
            await store.settle_replay(self, delivered=(), refused=refused)
            return  # they leave the replay; others asked for may follow
        dead = list(batch.unencodable) + [(UUID(r.event_id), why) for r in batch.records]
        self._accepted(store, batch, delivered=0, dead=dead)

    async def _opened(self, store: LaneStore) -> bool:
        try:
            components = await self._open(self.destination)
        except SiemError as exc:
            self.fail(store, f"cannot be opened: {exc}", misconfigured=True)
            return False
        self.components = components
        self.policy = components.policy
        self.linger_s = components.linger_s
        if self.policy.breaker_threshold is not None:
            self.circuit.threshold = self.policy.breaker_threshold
        size = components.batch_size
        if self.bucket is not None:
            size = min(size, self.bucket.burst)
        self.batch_size = max(size, 1)
        return True

    async def _next_batch(self, store: LaneStore) -> Batch | None:
        assert self.components is not None
        formatter = self.components.formatter
        if self.replay_waiting:
            letters = await store.read_replay(self, limit=self.batch_size)
            replay = format_replay(letters, formatter=formatter, position=self.taken)
            if replay is not None:
                return replay
            self.replay_waiting = False
        if self.following:
            if not self.buffer:
                return None
            taken = [self.buffer.popleft() for _ in range(min(self.batch_size, len(self.buffer)))]
            events = [event for _, event in taken]
            if not self.buffer:
                self._buffered_at = None
            after = self.taken
            # With nothing left buffered, the batch covers everything seen, the events the
            # filter left out included.
            self.taken = taken[-1][0] if self.buffer else self.seen
            return format_batch(
                events,
                formatter=formatter,
                tenant_id=self.tenant_id,
                position=self.taken,
                after=after,
            )
        page = await self._read_backlog(store)
        if page is None:
            self.at_end = True
            return None
        after = self.taken
        self.taken = self.seen = page.position
        self.at_end = len(page.events) < self.batch_size
        if not self.at_end:  # read the next page while this one is on the wire
            self._ahead_from = page.position
            self._ahead = asyncio.ensure_future(
                store.read_backlog(self, after=page.position, limit=self.batch_size)
            )
        return format_batch(
            page.events,
            formatter=formatter,
            tenant_id=self.tenant_id,
            position=page.position,
            after=after,
        )

    async def _read_backlog(self, store: LaneStore) -> SourcePage[Any] | None:
        """The page after `taken`: the one read ahead if it starts there, else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and self._ahead_from == self.taken:
            return await ahead
        if ahead is not None:
            ahead.cancel()
        return await store.read_backlog(self, after=self.taken, limit=self.batch_size)

    def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            ahead.add_done_callback(drop_outcome)

    def _accepted(
        self, store: LaneStore, batch: Batch, *, delivered: int, dead: Sequence[tuple[UUID, str]]
    ) -> None:
        store.note_delivered(
            self,
            position=batch.position,
            delivered=delivered,
            dead=dead,
            throughput_eps=self._throughput.add(delivered),
        )
        self.acked = batch.position
        # The next batch waits until this one's progress is written (`written`): a crash
        # then sends at most one batch again, as when each batch had its own transaction.
        self.writing = True
        self.due = None

    def written(self) -> bool:
        """The delivered batch's progress is in the store; True when there is more to do."""
        self.writing = False
        return self.has_work()

    def fail(
        self,
        store: LaneStore,
        reason: str,
        *,
        misconfigured: bool,
        after_s: float | None = None,
        open_circuit: bool = False,
    ) -> None:
        """Count a failure, note it, and come back after the backoff (the batch is kept)."""
        self.circuit.record_failure(reason, misconfigured=misconfigured or open_circuit)
        self.stuck_reason = reason if misconfigured else None
        store.note_failure(self, reason=reason, circuit=self.circuit, misconfigured=misconfigured)
        delay = self.settings.retry.delay(
            self.circuit.failures, peer_after_s=after_s, misconfigured=misconfigured, rng=self._rng
        )
        cooldown = self.policy.breaker_cooldown_s
        if cooldown is not None and self.circuit.state is CircuitState.OPEN:
            delay = max(cooldown, after_s or 0.0)
        self.due = self._clock() + delay

    def _note_losses(self, store: LaneStore, components: DestinationComponents) -> None:
        """Note what the transport counted since the last look (optional counters: only
        transports with a loss window have them)."""
        transport = components.transport
        now = (getattr(transport, "possibly_lost", 0), getattr(transport, "truncated_count", 0))
        lost, cut = now[0] - self._losses_seen[0], now[1] - self._losses_seen[1]
        self._losses_seen = now
        if lost or cut:
            store.note_losses(self, possibly_lost=lost, truncated=cut)

    async def close(self, store: LaneStore | None = None) -> None:
        """Close the transport (it opens again on the next turn that needs it); with `store`,
        what the transport counted while closing is noted."""
        self._drop_ahead()
        components, self.components = self.components, None
        if components is not None:
            await components.transport.aclose()
            if store is not None:
                self._note_losses(store, components)
            self._losses_seen = (0, 0)  # the next transport counts from zero


def utf8_size(texts: Iterable[str]) -> int:
    """The UTF-8 bytes of `texts` (a lone surrogate counted as the 3 bytes of the U+FFFD
    that replaces it). Only a text that is not ASCII is encoded: asking is free (CPython
    keeps the answer in the string), and one such text in a batch made the whole batch
    encoded when the batch was joined first."""
    size = 0
    for text in texts:
        size += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size


def drop_outcome(future: asyncio.Future[Any]) -> None:
    """For work nobody waits for any more (a read ahead, a transport closing): its outcome,
    an error included, is taken and dropped, so asyncio does not report it as lost."""
    if not future.cancelled():
        future.exception()
