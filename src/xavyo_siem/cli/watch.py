"""What `xavyo-siem run` shows while it works and when it ends: a live status line on a
terminal and a summary at exit, both read from the metrics the worker already keeps in
this process (the Prometheus registry), so watching costs the worker nothing."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry

from xavyo_siem.cli.output import err
from xavyo_siem.model import format_duration

__all__ = ["Snapshot", "read_snapshot", "watching"]

_DELIVERED = "xavyo_siem_worker_events_delivered_total"
_CIRCUIT_OPEN = "xavyo_siem_circuit_open"
_LAG_EVENTS = "xavyo_siem_lag_events"
_LAG_SECONDS = "xavyo_siem_lag_seconds"
_DESTINATIONS = "xavyo_siem_worker_destinations"
_DEAD_LETTERS = "xavyo_siem_worker_dead_letters_total"
_FAILING = "xavyo_siem_worker_destinations_failing"
_WANTED = frozenset(
    (_DELIVERED, _CIRCUIT_OPEN, _LAG_EVENTS, _LAG_SECONDS, _DESTINATIONS, _DEAD_LETTERS, _FAILING)
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The worker's totals at one moment."""

    at: float  # time.monotonic()
    delivered: float = 0.0
    dead_letters: float = 0.0
    destinations: int = 0
    failing: int = 0
    lag_events: float = 0.0
    lag_seconds: float = 0.0  # the oldest event waiting, over all destinations


def read_snapshot(registry: CollectorRegistry = REGISTRY) -> Snapshot:
    """The events delivered and dead-lettered by this process so far, and what the
    destinations it serves now show (waiting events, open circuits)."""
    totals = dict.fromkeys(_WANTED, 0.0)
    oldest = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name not in _WANTED:
                continue
            if sample.name == _LAG_SECONDS:
                oldest = max(oldest, sample.value)
            elif sample.name == _CIRCUIT_OPEN:
                totals[_CIRCUIT_OPEN] += sample.value > 0
            else:
                totals[sample.name] += sample.value
    return Snapshot(
        at=time.monotonic(),
        delivered=totals[_DELIVERED],
        dead_letters=totals[_DEAD_LETTERS],
        destinations=int(totals[_DESTINATIONS]),
        # While destinations are served, their circuits now; once the worker stopped, as
        # they were at the stop.
        failing=int(totals[_CIRCUIT_OPEN] if totals[_DESTINATIONS] else totals[_FAILING]),
        lag_events=totals[_LAG_EVENTS],
        lag_seconds=oldest,
    )


def status_line(first: Snapshot, previous: Snapshot, now: Snapshot) -> str:
    """`12,400 delivered · 2,010 events/s · 3 waiting (oldest 2.1 s) · 1 failing of 40`."""
    span = max(now.at - previous.at, 1e-9)
    rate = (now.delivered - previous.delivered) / span
    parts = [
        f"{now.delivered - first.delivered:,.0f} delivered",
        f"{rate:,.0f} events/s",
        f"{now.lag_events:,.0f} waiting"
        + (f" (oldest {format_duration(now.lag_seconds)})" if now.lag_events else ""),
        f"{now.failing:,} failing of {now.destinations:,} destinations",
    ]
    return " · ".join(parts)


def summary(first: Snapshot, last: Snapshot) -> str:
    """What the run did, in one line: events delivered and dead-lettered, how fast, how long."""
    elapsed = max(last.at - first.at, 1e-9)
    delivered = last.delivered - first.delivered
    dead = last.dead_letters - first.dead_letters
    text = (
        f"delivered {delivered:,.0f} events in {format_duration(elapsed)} "
        f"({delivered / elapsed:,.0f} events/s)"
    )
    if dead:
        text += f", {dead:,.0f} dead-lettered"
    if last.failing:
        text += f"; {last.failing:,} destination(s) failing at exit (`xavyo-siem health`)"
    return text


@contextmanager
def watching(*, live: bool | None = None, every_s: float = 1.0) -> Iterator[list[Snapshot]]:
    """Show a status line on a terminal (stderr) while the block runs; print the summary at
    its end. Yields a list that holds the first and the last snapshot once the block ends."""
    live = sys.stderr.isatty() if live is None else live
    first = read_snapshot()
    taken = [first]
    stop = threading.Event()

    def show() -> None:
        previous = first
        while not stop.wait(every_s):
            now = read_snapshot()
            err.file.write("\r\x1b[2K" + status_line(first, previous, now))
            err.file.flush()
            previous = now

    painter = threading.Thread(target=show, name="xavyo-siem-status", daemon=True)
    if live:
        painter.start()
    try:
        yield taken
    finally:
        stop.set()
        if live:
            painter.join()
            err.file.write("\r\x1b[2K")
        last = read_snapshot()
        taken.append(last)
        err.print(summary(first, last))
