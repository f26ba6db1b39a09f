"""Each change of a destination's health, as the metric and log line it makes.

The store-backed streaming source (xavyo_siem.runtime) writes the health row in its own
transaction and then reports the change here, so the row, the metric and the log line move
together. Nothing here touches the store.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import UUID

from xavyo_siem.model import CircuitState, SiemDestination
from xavyo_siem.pipeline import metrics

__all__ = [
    "Throughput",
    "report_delivered",
    "report_disabled",
    "report_failure",
    "report_lag",
    "report_losses",
]

log = logging.getLogger("xavyo_siem.pipeline")


def _labels(destination: SiemDestination) -> tuple[str, str]:
    return str(destination.tenant_id), destination.name


def report_delivered(
    destination: SiemDestination,
    *,
    delivered: int,
    dead: Sequence[tuple[UUID, str]],
    now: datetime,
) -> None:
    """A batch is done with: count it, close the circuit gauge, log each dead letter."""
    labels = _labels(destination)
    if delivered:
        metrics.DELIVERED.labels(*labels).inc(delivered)
        metrics.LAST_SUCCESS.labels(*labels).set(now.timestamp())
    metrics.CIRCUIT_OPEN.labels(*labels).set(0)
    for event_id, reason in dead:
        metrics.DEAD_LETTERS.labels(*labels).inc()
        log.warning(
            "destination %s refused event %s for good (dead letter): %s",
            destination.name, event_id, reason,
        )  # fmt: skip


def report_failure(
    destination: SiemDestination,
    *,
    reason: str,
    circuit_state: CircuitState,
    misconfigured: bool,
) -> None:
    """A batch failed: count it by kind, show the circuit, log why."""
    labels = _labels(destination)
    kind = "misconfigured" if misconfigured else "retry_later"
    metrics.FAILURES.labels(*labels, kind).inc()
    metrics.CIRCUIT_OPEN.labels(*labels).set(0 if circuit_state is CircuitState.CLOSED else 1)
    log.warning(
        "destination %s: %s (%s; circuit %s)",
        destination.name, reason, kind.replace("_", " "), circuit_state.value,
    )  # fmt: skip


def report_losses(destination: SiemDestination, *, possibly_lost: int, truncated: int) -> None:
    """Records the transport could not vouch for (possibly lost) or sent cut (truncated)."""
    labels = _labels(destination)
    if possibly_lost:
        metrics.POSSIBLY_LOST.labels(*labels).inc(possibly_lost)
    if truncated:
        metrics.TRUNCATED.labels(*labels).inc(truncated)


def report_disabled(destination: SiemDestination, *, reason: str) -> None:
    """The worker switched the destination off: its endpoint said it is gone for good."""
    metrics.DISABLED.labels(*_labels(destination)).set(1)
    log.error(
        "destination %s switched off: %s; enable it again once fixed"
        " (delivery resumes from where it stopped)",
        destination.name, reason,
    )  # fmt: skip


def report_lag(destination: SiemDestination, *, events: int, oldest: datetime | None) -> None:
    """How far the destination is behind: waiting events, and the age of the oldest."""
    labels = _labels(destination)
    metrics.LAG_EVENTS.labels(*labels).set(events)
    age = 0.0 if oldest is None else max((datetime.now(UTC) - oldest).total_seconds(), 0.0)
    metrics.LAG_SECONDS.labels(*labels).set(age)


class Throughput:
    """Events per second delivered over the last ten seconds (the health's `throughput`)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._delivered: deque[tuple[float, int]] = deque()

    def add(self, delivered: int) -> float:
        """Count a delivered batch; the rate with it."""
        now = self._clock()
        self._delivered.append((now, delivered))
        while self._delivered and self._delivered[0][0] < now - 10:
            self._delivered.popleft()
        span = max(now - self._delivered[0][0], 1.0)
        return sum(count for _, count in self._delivered) / span
