"""The request rate limit of each API token: a token bucket per token id, in memory.

Each authenticated request takes one token from its API token's bucket (the pipeline's
`TokenBucket`); an empty bucket answers 429 with `Retry-After`, the whole seconds until a
request would pass. The budget is `XAVYO_SIEM_API_RATE_LIMIT` (requests per second and
burst, default 50:100) and holds per process: behind several API processes a token may
send that much to each. Buckets live as long as the process, one per token that sent a
request (only authenticated tokens get one, so their number is bounded by the tokens
issued); a request without a valid token is refused before it reaches a bucket.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from uuid import UUID

from xavyo_siem.pipeline.rate_limit import TokenBucket

__all__ = ["RequestRateLimit"]


class RequestRateLimit:
    """At most `burst` requests at once per API token, refilled at `requests_per_s`.

    `clock` is given so tests can run on a fake one; routes run on worker threads, so the
    buckets are guarded by a lock.
    """

    def __init__(
        self,
        requests_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        TokenBucket(requests_per_s, burst, clock=clock, sleep=asyncio.sleep)  # validates both
        self.requests_per_s = float(requests_per_s)
        self.burst = burst
        self._clock = clock
        self._buckets: dict[UUID, TokenBucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, token_id: UUID) -> int | None:
        """Take one request from `token_id`'s budget: None when it may go ahead, else the
        whole seconds (at least 1) until it may."""
        with self._lock:
            bucket = self._buckets.get(token_id)
            if bucket is None:
                bucket = self._buckets[token_id] = TokenBucket(
                    self.requests_per_s, self.burst, clock=self._clock, sleep=asyncio.sleep
                )
            delay = bucket.delay_for(1)
            if delay > 0:
                return max(1, math.ceil(delay))
            bucket.take(1)
            return None
