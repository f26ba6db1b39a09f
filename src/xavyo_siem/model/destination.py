"""A tenant's destination (where its events go, how fast) and the health of its delivery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

from xavyo_siem.model.conversions import (
    EPOCH,
    format_duration,
    format_timestamp,
    optional_timestamp,
)
from xavyo_siem.model.enums import CircuitState, DeliveryType, ExportFormat
from xavyo_siem.model.filter import EventFilter

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "WORKER_ALIVE",
    "DeliveryHealth",
    "FleetHealth",
    "RateLimit",
    "SiemDestination",
    "WorkersSeen",
]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: at most `burst` events at once, refilled at `events_per_s`."""

    events_per_s: float
    burst: int


DEFAULT_RATE_LIMIT: Final = RateLimit(events_per_s=1000.0, burst=2000)
"""The limit a destination gets unless it asks for another or for none: a tenant cannot flood
its SIEM (and its licence) without someone choosing that."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SiemDestination:
    """Where one tenant's events go, in which format, through which transport.

    `options` are the per-type settings (`framing`, `ca_file`, `index`, `batch_max_events`,
    `start`, ...). The credential is never held here: `has_secret` says whether one is stored
    (encrypted) and the pipeline asks the store for it when it opens the transport.
    `disabled_reason` says why the worker switched the destination off (its endpoint said it
    is gone); enabling it again clears it.
    """

    id: UUID
    tenant_id: UUID
    name: str
    delivery_type: DeliveryType
    format: ExportFormat
    endpoint: str
    options: Mapping[str, Any] = field(default_factory=dict)
    filters: EventFilter = field(default_factory=EventFilter)
    rate_limit: RateLimit | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    has_secret: bool = False
    created_at: datetime = EPOCH
    updated_at: datetime = EPOCH

    def to_dict(self) -> dict[str, Any]:
        """The public JSON form, as the API and `--json` show it: never the secret, only whether
        there is one."""
        return {
            "id": str(self.id),
            "tenant_id": str(self.tenant_id),
            "name": self.name,
            "delivery_type": self.delivery_type.value,
            "format": self.format.value,
            "endpoint": self.endpoint,
            "options": dict(self.options),
            "filters": self.filters.to_dict(),
            "rate_limit": _rate_dict(self.rate_limit),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "has_secret": self.has_secret,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryHealth:
    """How delivery to one destination is going, as stored by the pipeline."""

    destination_id: UUID
    tenant_id: UUID
    name: str = ""
    enabled: bool = True
    circuit_state: CircuitState = CircuitState.CLOSED
    circuit_reason: str | None = None
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None
    lag_events: int = 0
    lag_seconds: float = 0.0
    throughput_eps: float = 0.0
    dead_letters: int = 0
    rate_limit: RateLimit | None = None
    disabled_reason: str | None = None
    possibly_lost: int = 0
    truncated: int = 0
    retention_held_since: datetime | None = None
    retention_held_events: int = 0

    @property
    def failing(self) -> bool:
        """True while the last attempt failed (the circuit is open or probing), or while the
        worker keeps the destination switched off because its endpoint said it is gone."""
        return self.consecutive_failures > 0 or self.disabled_reason is not None

    @property
    def state(self) -> str:
        """The destination's state in words: `ok`, `failing`, `never delivered` (nothing
        accepted yet), `disabled` (by an operator) or `switched off` (by the worker: its
        endpoint said it is gone)."""
        if not self.enabled:
            return "switched off" if self.disabled_reason else "disabled"
        if self.failing:
            return "failing"
        if self.last_success is None:
            return "never delivered"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form shown by `xavyo-siem health --json` and the API."""
        return {
            "destination_id": str(self.destination_id),
            "tenant_id": str(self.tenant_id),
            "name": self.name,
            "enabled": self.enabled,
            "status": "failing" if self.failing else "ok",
            "circuit_state": self.circuit_state.value,
            "circuit_reason": self.circuit_reason,
            "successes": self.successes,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_success": optional_timestamp(self.last_success),
            "last_failure": optional_timestamp(self.last_failure),
            "last_error": self.last_error,
            "lag_events": self.lag_events,
            "lag_seconds": round(self.lag_seconds, 3),
            "throughput_eps": round(self.throughput_eps, 1),
            "dead_letters": self.dead_letters,
            "rate_limit": _rate_dict(self.rate_limit),
            "disabled_reason": self.disabled_reason,
            "possibly_lost": self.possibly_lost,
            "truncated": self.truncated,
            "retention_held_since": optional_timestamp(self.retention_held_since),
            "retention_held_events": self.retention_held_events,
        }


@dataclass(frozen=True, slots=True)
class FleetHealth:
    """One destination in the platform's view of every destination's health: its health
    (lag counted up to a cap, see `store.fleet.read_fleet_health`) and its delivery type."""

    health: DeliveryHealth
    delivery_type: DeliveryType


def _rate_dict(limit: RateLimit | None) -> dict[str, float | int] | None:
    """A rate limit's JSON form; None (no limit) is null."""
    return None if limit is None else {"events_per_s": limit.events_per_s, "burst": limit.burst}


# A worker renews its heartbeat every third of its lease time (30 s by default); one not
# heard of for this long is taken for dead.
WORKER_ALIVE: Final = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class WorkersSeen:
    """Whether any worker is delivering: how many are alive, and when one was last heard."""

    alive: int
    registered: int
    last_heartbeat_age_s: float | None  # None: no worker registered

    @classmethod
    def of(cls, heartbeats: Mapping[str, datetime], *, now: datetime) -> WorkersSeen:
        """From each registered worker's last heartbeat (`store.leases.worker_heartbeats`)."""
        ages = [(now - beat).total_seconds() for beat in heartbeats.values()]
        alive = [age for age in ages if age <= WORKER_ALIVE.total_seconds()]
        return cls(len(alive), len(ages), min(ages) if ages else None)

    def describe(self) -> str:
        """`2 alive (last heartbeat 3.1 s ago)`, or why none is."""
        if self.last_heartbeat_age_s is None:
            return "none running; start `xavyo-siem run` to deliver"
        age = format_duration(self.last_heartbeat_age_s)
        if self.alive:
            return f"{self.alive} alive (last heartbeat {age} ago)"
        return f"none alive (last heartbeat {age} ago); start `xavyo-siem run` to deliver"
