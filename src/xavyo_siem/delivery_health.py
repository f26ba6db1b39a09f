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
from xavyo_siem.store.fleet import FLEET_LAG_CAP, read_fleet_health
from xavyo_siem.store.retention import RetentionHold, list_retention_holds
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
    found = read_health(
        conn,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        lag_events=lag_events,
        lag_seconds=_age(oldest, now),
    )
    assert found is not None
    holds = list_retention_holds(conn, tenant_id=destination.tenant_id)
    return _completed(found, destination, holds, now)


def list_health(conn: Connection, *, tenant_id: UUID) -> list[DeliveryHealth]:
    """The health of each of the tenant's destinations (lag measured now), by name.

    A few statements for the tenant, not a few per destination: the stored health of every
    destination in one read (`store.fleet`), whose lag is exact for a destination without
    a filter and below the fleet's cap; only a destination with events waiting that a
    filter may skip, or more than the cap, has its lag measured on its own.
    """
    now = datetime.now(UTC)
    listed = rows.list_destinations(conn, tenant_id=tenant_id)
    stored = {
        entry.health.destination_id: entry.health
        for entry in read_fleet_health(conn, tenant_id=tenant_id, now=now)
    }
    holds = list_retention_holds(conn, tenant_id=tenant_id) if listed else []
    reports = []
    for destination in listed:
        found = stored.get(destination.id)
        if found is None:  # added since the read above
            reports.append(destination_health(conn, destination))
            continue
        if found.lag_events and (
            not destination.filters.is_everything or found.lag_events >= FLEET_LAG_CAP
        ):
            state = read_state(conn, tenant_id=tenant_id, destination_id=destination.id)
            cursor = START if state is None else state.cursor
            lag_events, oldest = measure_lag(
                conn, tenant_id=tenant_id, after=cursor, filter=destination.filters
            )
            found = replace(found, lag_events=lag_events, lag_seconds=_age(oldest, now))
        reports.append(_completed(found, destination, holds, now))
    return reports


def _age(oldest: datetime | None, now: datetime) -> float:
    return 0.0 if oldest is None else max((now - oldest).total_seconds(), 0)


def _completed(
    found: DeliveryHealth,
    destination: SiemDestination,
    holds: list[RetentionHold],
    now: datetime,
) -> DeliveryHealth:
    """`found` with what the stored health leaves out: the rate limit, the throughput only
    while recent, and what it holds of retention."""
    recent = found.last_success is not None and now - found.last_success <= THROUGHPUT_WINDOW
    holder = f"destination:{destination.id}"
    held = [hold for hold in holds if hold.holder == holder]
    return replace(
        found,
        rate_limit=destination.rate_limit,
        throughput_eps=found.throughput_eps if recent else 0.0,
        retention_held_since=held[0].since if held else None,
        retention_held_events=held[0].held_events if held else 0,
    )


def any_failing(reports: Iterable[DeliveryHealth]) -> bool:
    """True when an enabled destination is failing, or the worker switched one off because
    its endpoint said it is gone (one an operator disabled is paused, not failing)."""
    return any(
        report.failing and (report.enabled or report.disabled_reason is not None)
        for report in reports
    )
