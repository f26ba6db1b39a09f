"""Prometheus metrics of delivery, per destination, and of the worker itself (served by
`xavyo-siem run --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "CIRCUIT_OPEN",
    "DEAD_LETTERS",
    "DELIVERED",
    "DISABLED",
    "FAILURES",
    "LAG_EVENTS",
    "LAG_SECONDS",
    "LAST_SUCCESS",
    "POSSIBLY_LOST",
    "STORE_AVAILABLE",
    "STORE_STATEMENTS",
    "STORE_UNAVAILABLE_SINCE",
    "TRUNCATED",
    "WORKER_BEHIND",
    "WORKER_DESTINATIONS",
    "WORKER_OPEN_TRANSPORTS",
]

_LABELS = ("tenant", "destination")

DELIVERED = Counter("xavyo_siem_events_delivered", "Events the destination accepted.", _LABELS)
FAILURES = Counter(
    "xavyo_siem_delivery_failures", "Batches that failed (retry later or misconfigured).",
    (*_LABELS, "kind"),
)  # fmt: skip
DEAD_LETTERS = Counter(
    "xavyo_siem_dead_letters", "Events the destination refused for good.", _LABELS
)
POSSIBLY_LOST = Counter(
    "xavyo_siem_possibly_lost",
    "Records a syslog receiver's TCP acknowledged that could be neither confirmed read nor"
    " sent again.",
    _LABELS,
)
TRUNCATED = Counter(
    "xavyo_siem_truncated", "UDP messages sent cut to fit a datagram (option truncate).", _LABELS
)
DISABLED = Gauge(
    "xavyo_siem_destination_disabled",
    "1 once the worker switched the destination off because its endpoint said it is gone.",
    _LABELS,
)
CIRCUIT_OPEN = Gauge(
    "xavyo_siem_circuit_open", "1 while the circuit is open or half-open, else 0.", _LABELS
)
LAST_SUCCESS = Gauge(
    "xavyo_siem_last_success_timestamp_seconds", "When a batch was last delivered.", _LABELS
)
LAG_EVENTS = Gauge("xavyo_siem_lag_events", "Matching events not yet delivered.", _LABELS)
LAG_SECONDS = Gauge("xavyo_siem_lag_seconds", "Age of the oldest event not yet delivered.", _LABELS)

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
STORE_AVAILABLE = Gauge("xavyo_siem_store_available", "1 while the store answers, else 0.")
STORE_UNAVAILABLE_SINCE = Gauge(
    "xavyo_siem_store_unavailable_since_timestamp_seconds",
    "When the store stopped answering (0 while it answers).",
)
STORE_STATEMENTS = Counter(
    "xavyo_siem_store_statements", "SQL statements this process sent to the store."
)
