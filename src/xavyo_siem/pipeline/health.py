"""Each change of a destination's health, as the counts its metrics show and the log line
it makes.

The worker (xavyo_siem.runtime) notes each outcome for its next progress write and reports
it here at once: the destination's `Counts` (which `metrics.DESTINATIONS` exposes at scrape
time) and the log line. Nothing here touches the store.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from xavyo_siem.model import CircuitState, SiemDestination
from xavyo_siem.pipeline.metrics import WORKER_DEAD_LETTERS, WORKER_DELIVERED, Counts

__all__ = [
    "Throughput",
    "report_delivered",
    "report_disabled",
    "report_failure",
    "report_losses",
]

log = logging.getLogger("xavyo_siem.pipeline")


def report_delivered(
    destination: SiemDestination,
    counts: Counts,
    *,
    delivered: int,
    dead: Sequence[tuple[UUID, str]],
    now: datetime,
) -> None:
    """A batch is done with: count it, close the circuit, log each dead letter."""
    if delivered:
        counts.delivered += delivered
        counts.last_success = now.timestamp()
        WORKER_DELIVERED.inc(delivered)
    counts.circuit_open = False
    counts.reported = True
    if dead:
        counts.dead_letters += len(dead)
        WORKER_DEAD_LETTERS.inc(len(dead))
    for event_id, reason in dead:
        log.warning(
            "destination %s refused event %s for good (dead letter): %s",
            destination.name, event_id, reason,
        )  # fmt: skip


def report_failure(
    destination: SiemDestination,
    counts: Counts,
    *,
    reason: str,
    circuit_state: CircuitState,
    misconfigured: bool,
) -> None:
    """A batch failed: count it by kind, show the circuit, log why."""
    if misconfigured:
        counts.misconfigured += 1
    else:
        counts.retry_later += 1
    counts.circuit_open = circuit_state is not CircuitState.CLOSED
    counts.reported = True
    kind = "misconfigured" if misconfigured else "retry later"
    log.warning(
        "destination %s: %s (%s; circuit %s)",
        destination.name, reason, kind, circuit_state.value,
    )  # fmt: skip


def report_losses(counts: Counts, *, possibly_lost: int, truncated: int) -> None:
    """Records the transport could not vouch for (possibly lost) or sent cut (truncated)."""
    counts.possibly_lost += possibly_lost
    counts.truncated += truncated


def report_disabled(destination: SiemDestination, counts: Counts, *, reason: str) -> None:
    """The worker switched the destination off: its endpoint said it is gone for good."""
    counts.disabled = True
    log.error(
        "destination %s switched off: %s; enable it again once fixed"
        " (delivery resumes from where it stopped)",
        destination.name, reason,
    )  # fmt: skip


class Throughput:
    """Events per second delivered over the last ten seconds (the health's `throughput`).

    A running total of the window, so a batch costs the same however many batches the
    window holds (a busy destination delivers hundreds a second)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._delivered: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, delivered: int) -> float:
        """Count a delivered batch; the rate with it."""
        now = self._clock()
        window = self._delivered
        window.append((now, delivered))
        self._total += delivered
        while window[0][0] < now - 10:
            self._total -= window.popleft()[1]
        return self._total / max(now - window[0][0], 1.0)
