"""The delivery health of destinations, as the command line, the API and the health page
show it: what the pipeline stored, with the lag measured now, the events/s of the last
minute, and what holds retention back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from sqlalchemy import Connection

from xavyo_siem.model import DeliveryHealth, SiemDestination
from xavyo_siem.store import destinations as rows
from xavyo_siem.store.events import START, measure_lag
from xavyo_siem.store.retention import list_retention_holds
from xavyo_siem.store.state import read_health, read_state

__all__ = ["THROUGHPUT_WINDOW", "any_failing", "destination_health", "list_health"]

# A destination's events/s is shown only while its last delivery is this recent: a worker
# that stopped, or a tenant gone quiet, reads 0 rather than its last rate.
THROUGHPUT_WINDOW: Final = timedelta(minutes=1)


def destination_health(conn: Connection, destination: SiemDestination) -> DeliveryHealth:
    """The destination's stored health with its lag measured now (events and seconds)."""
    state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    cursor = START if state is None else state.cursor
    lag_events, oldest = measure_lag(
        conn, tenant_id=destination.tenant_id, after=cursor, filter=destination.filters
    )
    now = datetime.now(UTC)
    lag_seconds = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0)
    found = read_health(
        conn,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        lag_events=lag_events,
        lag_seconds=lag_seconds,
    )
    assert found is not None
    recent = found.last_success is not None and now - found.last_success <= THROUGHPUT_WINDOW
    holder = f"destination:{destination.id}"
    held = [
        hold
        for hold in list_retention_holds(conn, tenant_id=destination.tenant_id)
        if hold.holder == holder
    ]
    return replace(
        found,
        rate_limit=destination.rate_limit,
        throughput_eps=found.throughput_eps if recent else 0.0,
        retention_held_since=held[0].since if held else None,
        retention_held_events=held[0].held_events if held else 0,
    )


def list_health(conn: Connection, *, tenant_id: UUID) -> list[DeliveryHealth]:
    """The health of each of the tenant's destinations (lag measured now), by name."""
    return [destination_health(conn, d) for d in rows.list_destinations(conn, tenant_id=tenant_id)]


def any_failing(reports: Iterable[DeliveryHealth]) -> bool:
    """True when an enabled destination is failing, or the worker switched one off because
    its endpoint said it is gone (one an operator disabled is paused, not failing)."""
    return any(
        report.failing and (report.enabled or report.disabled_reason is not None)
        for report in reports
    )
