"""When to try a destination again: exponential backoff with full jitter.

The n-th consecutive failure waits a random time in `[0, min(cap, base * 2**n))` ("full
jitter"), so many destinations failing together do not retry in step. A delay the peer
asked for (Retry-After) is honoured as a minimum. A misconfigured destination (a revoked
token, a certificate that does not verify) is probed on the same schedule with its own,
usually longer, cap: a fix resumes delivery within that cap, and a broken destination never
spins.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff parameters, in seconds."""

    base_s: float = 0.5
    cap_s: float = 60.0
    misconfigured_cap_s: float = 300.0
    peer_delay_cap_s: float = 3600.0

    def delay(
        self,
        failures: int,
        *,
        peer_after_s: float | None = None,
        misconfigured: bool = False,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait after the `failures`-th consecutive failure (1 for the first)."""
        cap = self.misconfigured_cap_s if misconfigured else self.cap_s
        ceiling = min(cap, self.base_s * 2 ** min(max(failures - 1, 0), 62))
        wait = (rng or random).uniform(0, ceiling)
        if peer_after_s is not None and peer_after_s > 0:
            wait = max(wait, min(peer_after_s, self.peer_delay_cap_s))
        return wait
