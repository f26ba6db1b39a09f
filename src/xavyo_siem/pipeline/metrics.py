"""Prometheus metrics of delivery, per destination, and of the worker itself (served by
`xavyo-siem run --metrics-port`).

The per-destination series are not prometheus_client objects: a worker with 10,000
destinations would hold tens of thousands of them. Each destination's counts live in a
small `Counts` beside its lane, and one collector (`DESTINATIONS`) turns the lanes of every
running worker into metric families when Prometheus scrapes. The series are labelled by
tenant and destination **id**, so renaming a destination does not break them;
`xavyo_siem_destination_info` gives each id's name and delivery type, to join on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from xavyo_siem import __version__
from xavyo_siem.model import SiemDestination
from xavyo_siem.speedups import COMPILED

__all__ = [
    "BUILD",
    "DESTINATIONS",
    "SEND_SECONDS",
    "STORE_AVAILABLE",
    "STORE_STATEMENTS",
    "STORE_UNAVAILABLE_SINCE",
    "WORKER_BEHIND",
    "WORKER_DEAD_LETTERS",
    "WORKER_DELIVERED",
    "WORKER_DESTINATIONS",
    "WORKER_FAILING",
    "WORKER_OPEN_TRANSPORTS",
    "Counts",
    "DestinationMetrics",
    "Metered",
]


@dataclass(slots=True)
class Counts:
    """What a worker counted for one destination since it began to serve it."""

    delivered: int = 0
    retry_later: int = 0
    misconfigured: int = 0
    dead_letters: int = 0
    bytes_sent: int = 0  # the records' UTF-8 bytes, every attempt counted
    rate_limited: int = 0  # batches that waited for the rate limit
    possibly_lost: int = 0
    truncated: int = 0
    last_success: float = 0.0  # Unix time; 0: none yet
    circuit_open: bool = False
    disabled: bool = False
    reported: bool = False  # a batch was delivered or failed: its circuit is shown


class Metered(Protocol):
    """What the collector reads of a destination served by a worker (a lane)."""

    @property
    def destination(self) -> SiemDestination: ...

    @property
    def counts(self) -> Counts: ...

    def shown_lag(self) -> tuple[int, datetime | None] | None:
        """Events held and not yet accepted, and the oldest one's time; None when the
        worker does not know it from memory (the destination reads its own backlog)."""
        ...


_LABELS = ("tenant", "destination")


class DestinationMetrics:
    """The per-destination metric families, made at scrape time from the lanes of every
    worker of the process that `watch`es."""

    def __init__(self) -> None:
        self._sources: dict[int, Callable[[], Iterable[Metered]]] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()

    def watch(self, lanes: Callable[[], Iterable[Metered]]) -> Callable[[], None]:
        """Expose what `lanes()` returns at each scrape, until the function returned is
        called."""
        with self._lock:
            key = next(self._keys)
            self._sources[key] = lanes

        def unwatch() -> None:
            with self._lock:
                self._sources.pop(key, None)

        return unwatch

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (so registering does not scrape)."""
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        with self._lock:
            sources = list(self._sources.values())
        now = time.time()
        for lanes in sources:
            for lane in list(lanes()):  # a copy: the worker's event loop goes on meanwhile
                families.add(lane, now)
        yield from families.all()


class _Families:
    """The families of one scrape."""

    def __init__(self) -> None:
        self.delivered = CounterMetricFamily(
            "xavyo_siem_events_delivered", "Events the destination accepted.", labels=_LABELS
        )
        self.failures = CounterMetricFamily(
            "xavyo_siem_delivery_failures",
            "Batches that failed (retry later or misconfigured).",
            labels=(*_LABELS, "kind"),
        )
        self.dead = CounterMetricFamily(
            "xavyo_siem_dead_letters", "Events the destination refused for good.", labels=_LABELS
        )
        self.bytes_sent = CounterMetricFamily(
            "xavyo_siem_record_bytes_sent",
            "UTF-8 bytes of the records sent (every attempt; the transport's framing aside).",
            labels=_LABELS,
        )
        self.rate_limited = CounterMetricFamily(
            "xavyo_siem_rate_limit_waits",
            "Batches that waited for the destination's rate limit before being sent.",
            labels=_LABELS,
        )
        self.lost = CounterMetricFamily(
            "xavyo_siem_possibly_lost",
            "Records a syslog receiver's TCP acknowledged that could be neither confirmed"
            " read nor sent again.",
            labels=_LABELS,
        )
        self.truncated = CounterMetricFamily(
            "xavyo_siem_truncated",
            "UDP messages sent cut to fit a datagram (option truncate).",
            labels=_LABELS,
        )
        self.disabled = GaugeMetricFamily(
            "xavyo_siem_destination_disabled",
            "1 once the worker switched the destination off because its endpoint said it is gone.",
            labels=_LABELS,
        )
        self.circuit = GaugeMetricFamily(
            "xavyo_siem_circuit_open",
            "1 while the circuit is open or half-open, else 0.",
            labels=_LABELS,
        )
        self.last_success = GaugeMetricFamily(
            "xavyo_siem_last_success_timestamp_seconds",
            "When a batch was last delivered.",
            labels=_LABELS,
        )
        self.lag_events = GaugeMetricFamily(
            "xavyo_siem_lag_events", "Matching events not yet delivered.", labels=_LABELS
        )
        self.lag_seconds = GaugeMetricFamily(
            "xavyo_siem_lag_seconds", "Age of the oldest event not yet delivered.", labels=_LABELS
        )
        self.info = GaugeMetricFamily(
            "xavyo_siem_destination_info",
            "1 for each destination a worker serves; its name and delivery type.",
            labels=(*_LABELS, "name", "type"),
        )

    def add(self, lane: Metered, now: float) -> None:
        destination, counts = lane.destination, lane.counts
        labels = [str(destination.tenant_id), str(destination.id)]
        self.info.add_metric([*labels, destination.name, destination.delivery_type.value], 1.0)
        if counts.delivered:
            self.delivered.add_metric(labels, counts.delivered)
            self.last_success.add_metric(labels, counts.last_success)
        if counts.retry_later:
            self.failures.add_metric([*labels, "retry_later"], counts.retry_later)
        if counts.misconfigured:
            self.failures.add_metric([*labels, "misconfigured"], counts.misconfigured)
        if counts.dead_letters:
            self.dead.add_metric(labels, counts.dead_letters)
        if counts.bytes_sent:
            self.bytes_sent.add_metric(labels, counts.bytes_sent)
        if counts.rate_limited:
            self.rate_limited.add_metric(labels, counts.rate_limited)
        if counts.possibly_lost:
            self.lost.add_metric(labels, counts.possibly_lost)
        if counts.truncated:
            self.truncated.add_metric(labels, counts.truncated)
        if counts.reported:
            self.circuit.add_metric(labels, 1.0 if counts.circuit_open else 0.0)
        if counts.disabled:
            self.disabled.add_metric(labels, 1.0)
        lag = lane.shown_lag()
        if lag is not None:
            events, oldest = lag
            self.lag_events.add_metric(labels, events)
            age = 0.0 if oldest is None else max(now - oldest.timestamp(), 0.0)
            self.lag_seconds.add_metric(labels, age)

    def all(self) -> Iterator[Metric]:
        yield self.delivered
        yield self.failures
        yield self.dead
        yield self.bytes_sent
        yield self.rate_limited
        yield self.lost
        yield self.truncated
        yield self.disabled
        yield self.circuit
        yield self.last_success
        yield self.lag_events
        yield self.lag_seconds
        yield self.info


DESTINATIONS = DestinationMetrics()
REGISTRY.register(DESTINATIONS)

BUILD = Info("xavyo_siem_build", "The running version, and whether its C helpers are in use.")
BUILD.info({"version": __version__, "helpers": "c" if COMPILED else "python"})

SEND_SECONDS = Histogram(
    "xavyo_siem_send_seconds",
    "How long a batch's send took, from its start to the destination's answer, by delivery type.",
    ("type",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

WORKER_DESTINATIONS = Gauge(
    "xavyo_siem_worker_destinations", "Destinations this worker holds a lease on and serves."
)
WORKER_BEHIND = Gauge(
    "xavyo_siem_worker_destinations_behind",
    "Destinations of this worker reading their own backlog (not yet following the feed).",
)
WORKER_OPEN_TRANSPORTS = Gauge(
    "xavyo_siem_worker_open_transports", "Destinations of this worker with an open transport."
)
WORKER_FAILING = Gauge(
    "xavyo_siem_worker_destinations_failing",
    "Destinations of this worker whose circuit is open or half-open, as of its last lease"
    " renewal (every few seconds), or of its stop once it stopped.",
)
# The process's totals over every destination it served: unlike a destination's series,
# which ends when the destination leaves the worker (its lease moved, the worker stopped),
# these keep counting, so `run` can say at its exit what it delivered.
WORKER_DELIVERED = Counter(
    "xavyo_siem_worker_events_delivered",
    "Events this process delivered, every destination together (dead letters sent again"
    " aside, as in each destination's own count).",
)
WORKER_DEAD_LETTERS = Counter(
    "xavyo_siem_worker_dead_letters",
    "Events the destinations of this process refused for good, every destination together.",
)
STORE_AVAILABLE = Gauge("xavyo_siem_store_available", "1 while the store answers, else 0.")
STORE_UNAVAILABLE_SINCE = Gauge(
    "xavyo_siem_store_unavailable_since_timestamp_seconds",
    "When the store stopped answering (0 while it answers).",
)
STORE_STATEMENTS = Counter(
    "xavyo_siem_store_statements", "SQL statements this process sent to the store."
)
