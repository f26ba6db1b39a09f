"""A token bucket: every event sent to a destination takes one token, with no way around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from xavyo_siem.model import SiemDestination

__all__ = ["Buckets", "TokenBucket"]


class TokenBucket:
    """At most `burst` events at once, refilled at `events_per_s`.

    Over any window of `t` seconds at most `burst + events_per_s * t` events pass. The clock
    and the sleep are given, so tests run on a fake clock without waiting.
    """

    def __init__(
        self,
        events_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        if not events_per_s > 0:
            raise ValueError("rate limit: events_per_s must be positive")
        if burst < 1:
            raise ValueError("rate limit: burst must be at least 1")
        self.events_per_s = float(events_per_s)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.events_per_s)
        self._stamp = now

    def delay_for(self, count: int) -> float:
        """Seconds until `count` tokens are there (0 when they are there now)."""
        self._refill()
        missing = count - self._tokens
        # A shortfall below a millionth of a token is rounding, not a reason to wait; waiting
        # for it could spin forever once the clock cannot represent so small a step.
        return 0.0 if missing <= 1e-6 else missing / self.events_per_s

    async def acquire(
        self, count: int, *, sleep: Callable[[float], Awaitable[None]] | None = None
    ) -> None:
        """Wait until `count` events may be sent, then take their tokens.

        `sleep` overrides the bucket's own for this wait: loops that share one bucket each
        wait with their own (interruptible) sleep.
        """
        if count > self.burst:
            raise ValueError(f"rate limit: a batch of {count} exceeds the burst of {self.burst}")
        wait = sleep or self._sleep
        while (delay := self.delay_for(count)) > 0:
            await wait(delay)
        self.take(count)

    def take(self, count: int) -> None:
        """Take `count` tokens, once `delay_for(count)` said they are there.

        For a caller that does not wait in place: a scheduler asks `delay_for`, comes back
        after that delay, and takes the tokens just before it sends.
        """
        self._refill()
        self._tokens = max(self._tokens - count, 0.0)


class Buckets:
    """Each destination's one token bucket in a worker, shared by its lane and its exports;
    a new one when the destination's limit changed."""

    def __init__(self) -> None:
        self._buckets: dict[UUID, TokenBucket] = {}

    def __call__(self, destination: SiemDestination) -> TokenBucket | None:
        limit = destination.rate_limit
        if limit is None:
            return None
        bucket = self._buckets.get(destination.id)
        if bucket is None or (bucket.events_per_s, bucket.burst) != (
            float(limit.events_per_s),
            limit.burst,
        ):
            bucket = TokenBucket(
                limit.events_per_s, limit.burst, clock=time.monotonic, sleep=asyncio.sleep
            )
            self._buckets[destination.id] = bucket
        return bucket
