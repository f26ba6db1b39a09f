"""A destination's circuit breaker: closed, open after consecutive failures, half-open probe.

closed ──(threshold consecutive failures)──► open ──(its wait is over)──► half_open
   ▲                                                                          │
   └──────────────────────────(the probe batch is delivered)─────────────────┘
                         (the probe fails: open again, with a longer wait)

There is one batch in flight per destination, so "half-open lets one probe batch through"
holds by construction: the batch sent when the wait is over is the probe.
"""

from __future__ import annotations

from dataclasses import dataclass

from xavyo_siem.model import CircuitState

__all__ = ["CircuitBreaker"]


@dataclass(slots=True)
class CircuitBreaker:
    """Counts consecutive failures and says the circuit's state."""

    threshold: int = 5
    failures: int = 0
    state: CircuitState = CircuitState.CLOSED
    reason: str | None = None

    def record_success(self) -> None:
        """A batch was delivered: close the circuit."""
        self.failures = 0
        self.state = CircuitState.CLOSED
        self.reason = None

    def record_failure(self, reason: str, *, misconfigured: bool = False) -> CircuitState:
        """A batch failed: open after `threshold` failures in a row (at once if misconfigured)."""
        self.failures += 1
        if (
            misconfigured
            or self.state is not CircuitState.CLOSED
            or self.failures >= self.threshold
        ):
            self.state = CircuitState.OPEN
            self.reason = reason
        return self.state

    def probe(self) -> None:
        """The open circuit's wait is over: the next batch is the half-open probe."""
        if self.state is CircuitState.OPEN:
            self.state = CircuitState.HALF_OPEN
