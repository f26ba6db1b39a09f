"""The fleet view of delivery health: every tenant's destinations as the store has them,
read for the service (`xavyo-siem serve`): Prometheus families for `/metrics`, and the rows
of the health page.

A worker's own metrics (`pipeline/metrics.py`, `run --metrics-port`) say what that worker
counted since it started, for the destinations it serves; the fleet view says what the
store holds for every destination, whichever worker serves it, or none. Its families are
named `xavyo_siem_fleet_*` so that a Prometheus scraping the workers and the service sums
neither twice; they carry the same `tenant` and `destination` (id) labels as the worker's
per-destination families, so dashboards join them.

One read (`store.fleet.read_fleet_health` and the workers' heartbeats, a few statements
whatever the number of destinations) serves every scrape and page view for `max_age_s`:
scrapes that pile up wait for the read in progress and share it. The families are made
by one collector from that read, not held as prometheus_client objects per destination.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from xavyo_siem.model import CircuitState, FleetHealth, WorkersSeen
from xavyo_siem.store.fleet import FLEET_LAG_CAP, read_fleet_health
from xavyo_siem.store.leases import worker_heartbeats

__all__ = ["STATES", "FleetCollector", "FleetSnapshot", "FleetView"]

# Every state a destination can be in (`DeliveryHealth.state`), as a label value.
STATES: Final = ("ok", "failing", "never_delivered", "disabled", "switched_off")
_LABELS: Final = ("tenant", "destination")


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """One read of the fleet: each destination's health (every tenant's, or one's), the
    workers seen, and when it was read."""

    destinations: list[FleetHealth]
    workers: WorkersSeen
    read_at: datetime


class FleetView:
    """The fleet's health from the store, each read kept `max_age_s` (per tenant asked, or
    for every tenant) and shared by whoever asks meanwhile."""

    def __init__(self, engine: Engine, *, max_age_s: float = 5.0) -> None:
        self._engine = engine
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._held: dict[UUID | None, tuple[float, FleetSnapshot]] = {}

    def snapshot(self, *, tenant_id: UUID | None) -> FleetSnapshot:
        """Every tenant's destinations (`tenant_id` None) or one tenant's, read at most
        `max_age_s` ago."""
        with self._lock:  # one read at a time: a scrape that waited uses the one it waited for
            now = time.monotonic()
            held = self._held.get(tenant_id)
            if held is not None and now - held[0] < self._max_age_s:
                return held[1]
            read = self._read(tenant_id)
            self._held = {
                key: value for key, value in self._held.items() if now - value[0] < self._max_age_s
            }
            self._held[tenant_id] = (time.monotonic(), read)
            return read

    def _read(self, tenant_id: UUID | None) -> FleetSnapshot:
        now = datetime.now(UTC)
        with self._engine.connect() as conn:
            destinations = read_fleet_health(conn, tenant_id=tenant_id, now=now)
            beats = worker_heartbeats(conn)
        return FleetSnapshot(destinations, WorkersSeen.of(beats, now=now), now)


class FleetCollector(Collector):
    """The `xavyo_siem_fleet_*` families of one snapshot."""

    def __init__(self, snapshot: FleetSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        def gauge(
            name: str, documentation: str, labels: tuple[str, ...] = _LABELS
        ) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"xavyo_siem_fleet_{name}", documentation, labels=labels)

        info = gauge(
            "destination_info",
            "1 for each destination in the store; its name and delivery type.",
            (*_LABELS, "name", "type"),
        )
        state = gauge(
            "destination_state",
            "1 for the destination's state: ok, failing, never_delivered, disabled (by an"
            " operator) or switched_off (by a worker: its endpoint said it is gone).",
            (*_LABELS, "state"),
        )
        delivered = gauge("events_delivered", "Events the destination accepted (stored count).")
        failures = gauge("delivery_failures", "Batches that failed (stored count).")
        circuit = gauge(
            "circuit_open", "1 while the circuit is open or half-open, else 0 (enabled only)."
        )
        last_success = gauge(
            "last_success_timestamp_seconds", "When a batch was last delivered (if ever)."
        )
        dead = gauge("dead_letters", "Dead letters waiting (not purged).")
        lag_events = gauge(
            "lag_events",
            f"Events after the destination's cursor, counted up to {FLEET_LAG_CAP:,}"
            " (its filter not applied).",
        )
        lag_seconds = gauge(
            "lag_seconds", "Age of the oldest event after the destination's cursor."
        )
        counts = dict.fromkeys(STATES, 0)
        for entry in self._snapshot.destinations:
            health = entry.health
            labels = [str(health.tenant_id), str(health.destination_id)]
            info.add_metric([*labels, health.name, entry.delivery_type.value], 1.0)
            word = health.state.replace(" ", "_")
            counts[word] += 1
            state.add_metric([*labels, word], 1.0)
            delivered.add_metric(labels, health.successes)
            failures.add_metric(labels, health.failures)
            if health.enabled:
                is_open = health.circuit_state is not CircuitState.CLOSED
                circuit.add_metric(labels, 1.0 if is_open else 0.0)
            if health.last_success is not None:
                last_success.add_metric(labels, health.last_success.timestamp())
            dead.add_metric(labels, health.dead_letters)
            lag_events.add_metric(labels, health.lag_events)
            lag_seconds.add_metric(labels, health.lag_seconds)
        by_state = gauge("destinations", "Destinations in each state.", ("state",))
        for word, count in counts.items():
            by_state.add_metric([word], count)
        workers = self._snapshot.workers
        alive = gauge("workers_alive", "Workers whose heartbeat is recent.", ())
        alive.add_metric([], workers.alive)
        registered = gauge("workers_registered", "Workers registered (alive or not).", ())
        registered.add_metric([], workers.registered)
        read_at = gauge("read_timestamp_seconds", "When the store was read for these figures.", ())
        read_at.add_metric([], self._snapshot.read_at.timestamp())
        yield from (
            info, state, delivered, failures, circuit, last_success,
            dead, lag_events, lag_seconds, by_state, alive, registered, read_at,
        )  # fmt: skip
