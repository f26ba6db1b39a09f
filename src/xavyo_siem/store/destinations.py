"""Destination rows: create, read, update, delete; always within one tenant."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import RowMapping

from xavyo_siem.model import (
    CircuitState,
    DeliveryType,
    EventFilter,
    ExportFormat,
    RateLimit,
    SiemDestination,
    from_epoch_us,
    to_epoch_us,
    uuid_from_canonical,
)
from xavyo_siem.store.events import EventCursor
from xavyo_siem.store.scope import platform_wide, scope_to_tenant, scoped
from xavyo_siem.store.tables import dead_letters, destination_state, destinations, leases

__all__ = [
    "all_credentials",
    "all_sealed_secrets",
    "all_tenant_ids",
    "delete_destination",
    "enabled_destination_ids",
    "find_destination",
    "get_destination",
    "get_destination_with_secret",
    "get_destinations_with_secrets",
    "insert_destination",
    "list_destinations",
    "read_leased",
    "read_sealed_secret",
    "replace_sealed_secret",
    "set_sealed_secret",
    "update_destination",
]

_D = destinations.c


def _destination_of(row: RowMapping) -> SiemDestination:
    rate = row["rate_events_per_s"]
    return SiemDestination(
        id=uuid_from_canonical(row["id"]),
        tenant_id=uuid_from_canonical(row["tenant_id"]),
        name=row["name"],
        delivery_type=DeliveryType(row["delivery_type"]),
        format=ExportFormat(row["format"]),
        endpoint=row["endpoint"],
        options=orjson.loads(row["options"]),
        filters=EventFilter.from_dict(orjson.loads(row["filters"])),
        rate_limit=None if rate is None else RateLimit(rate, row["rate_burst"]),
        enabled=bool(row["enabled"]),
        disabled_reason=row["disabled_reason"],
        has_secret=row["secret"] is not None,
        created_at=from_epoch_us(row["created_us"]),
        updated_at=from_epoch_us(row["updated_us"]),
    )


def _columns(destination: SiemDestination) -> dict[str, Any]:
    rate = destination.rate_limit
    return {
        "name": destination.name,
        "delivery_type": destination.delivery_type.value,
        "format": destination.format.value,
        "endpoint": destination.endpoint,
        "options": orjson.dumps(dict(destination.options)).decode(),
        "filters": orjson.dumps(destination.filters.to_dict()).decode(),
        "rate_events_per_s": None if rate is None else rate.events_per_s,
        "rate_burst": None if rate is None else rate.burst,
        "enabled": destination.enabled,
        # Enabling a destination again clears why the worker had switched it off.
        "disabled_reason": None if destination.enabled else destination.disabled_reason,
        "updated_us": to_epoch_us(destination.updated_at),
    }


def insert_destination(
    conn: Connection,
    *,
    destination: SiemDestination,
    sealed_secret: str | None,
    cursor: EventCursor,
) -> SiemDestination:
    """Store a new destination and its delivery state, starting at `cursor`."""
    scope_to_tenant(conn, destination.tenant_id)
    tenant = str(destination.tenant_id)
    conn.execute(
        insert(destinations).values(
            id=str(destination.id),
            tenant_id=tenant,
            secret=sealed_secret,
            created_us=to_epoch_us(destination.created_at),
            **_columns(destination),
        )
    )
    conn.execute(
        insert(destination_state).values(
            destination_id=str(destination.id),
            tenant_id=tenant,
            cursor_txid=cursor.txid,
            cursor_seq=cursor.seq,
            circuit_state=CircuitState.CLOSED.value,
            successes=0,
            failures=0,
            consecutive_failures=0,
            throughput_eps=0.0,
            updated_us=to_epoch_us(destination.created_at),
        )
    )
    found = get_destination(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert found is not None
    return found


@scoped
def get_destination(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID
) -> SiemDestination | None:
    """The tenant's destination with this id, or None (another tenant's is None too)."""
    row = (
        conn.execute(
            select(destinations).where(_D.tenant_id == str(tenant_id), _D.id == str(destination_id))
        )
        .mappings()
        .first()
    )
    return None if row is None else _destination_of(row)


@scoped
def get_destination_with_secret(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID
) -> tuple[SiemDestination, str | None] | None:
    """The tenant's destination and its sealed credential, read together from one row (so
    the credential is checked against exactly the settings it is used with), or None."""
    row = (
        conn.execute(
            select(destinations).where(_D.tenant_id == str(tenant_id), _D.id == str(destination_id))
        )
        .mappings()
        .first()
    )
    return None if row is None else (_destination_of(row), row["secret"])


@platform_wide
def get_destinations_with_secrets(
    conn: Connection, *, destinations_of: Collection[tuple[UUID, UUID]]
) -> dict[UUID, tuple[SiemDestination, str | None]]:
    """`get_destination_with_secret` for many destinations at once, given as (tenant id,
    destination id): a worker opening the destinations it delivers. Each destination and
    its sealed credential come from one row; one that is gone, or not of the tenant given
    with it, is left out."""
    tenant_of = {str(ident): str(tenant) for tenant, ident in destinations_of}
    found: dict[UUID, tuple[SiemDestination, str | None]] = {}
    wanted = sorted(tenant_of)
    for start in range(0, len(wanted), 2000):  # bounded statement size
        rows = conn.execute(
            select(destinations).where(_D.id.in_(wanted[start : start + 2000]))
        ).mappings()
        for row in rows:
            if tenant_of.get(row["id"]) == row["tenant_id"]:
                destination = _destination_of(row)
                found[destination.id] = (destination, row["secret"])
    return found


@scoped
def find_destination(conn: Connection, *, tenant_id: UUID, name: str) -> SiemDestination | None:
    """The tenant's destination with this name, or None."""
    row = (
        conn.execute(select(destinations).where(_D.tenant_id == str(tenant_id), _D.name == name))
        .mappings()
        .first()
    )
    return None if row is None else _destination_of(row)


@scoped
def find_by_name_or_id(
    conn: Connection, *, tenant_id: UUID, name_or_id: str | UUID
) -> SiemDestination | None:
    """The tenant's destination `name_or_id`, or None: a `UUID` is an id; text is a name, or
    else an id written as text (the name is looked up first, so a destination is always
    found by its own name)."""
    found = None
    if isinstance(name_or_id, str):
        found = find_destination(conn, tenant_id=tenant_id, name=name_or_id)
        with contextlib.suppress(ValueError):
            name_or_id = UUID(name_or_id)
    if found is None and isinstance(name_or_id, UUID):
        found = get_destination(conn, tenant_id=tenant_id, destination_id=name_or_id)
    return found


@scoped
def list_destinations(conn: Connection, *, tenant_id: UUID) -> list[SiemDestination]:
    """The tenant's destinations, by name."""
    rows = conn.execute(
        select(destinations).where(_D.tenant_id == str(tenant_id)).order_by(_D.name)
    ).mappings()
    return [_destination_of(row) for row in rows]


@platform_wide
def enabled_destination_ids(conn: Connection) -> list[tuple[UUID, UUID]]:
    """(tenant id, destination id) of every enabled destination: the workers' to-do list."""
    rows = conn.execute(select(_D.tenant_id, _D.id).where(_D.enabled.is_(True)).order_by(_D.id))
    return [(uuid_from_canonical(tenant), uuid_from_canonical(ident)) for tenant, ident in rows]


@platform_wide
def all_tenant_ids(conn: Connection) -> list[UUID]:
    """Every tenant that has a destination (for operator-wide listings)."""
    rows = conn.execute(select(_D.tenant_id).distinct().order_by(_D.tenant_id))
    return [uuid_from_canonical(tenant) for (tenant,) in rows]


def update_destination(
    conn: Connection,
    *,
    destination: SiemDestination,
    now: datetime,
) -> SiemDestination | None:
    """Replace a destination's settings; its secret stays (see `set_sealed_secret`)."""
    scope_to_tenant(conn, destination.tenant_id)
    values: dict[str, Any] = {**_columns(destination), "updated_us": to_epoch_us(now)}
    conn.execute(
        update(destinations)
        .where(_D.tenant_id == str(destination.tenant_id), _D.id == str(destination.id))
        .values(**values)
    )
    return get_destination(conn, tenant_id=destination.tenant_id, destination_id=destination.id)


@scoped
def delete_destination(conn: Connection, *, tenant_id: UUID, destination_id: UUID) -> bool:
    """Remove a destination with its state, dead letters and lease; False if it was not there."""
    ident = str(destination_id)
    if get_destination(conn, tenant_id=tenant_id, destination_id=destination_id) is None:
        return False
    for table in (dead_letters, leases, destination_state):
        conn.execute(delete(table).where(table.c.destination_id == ident))
    conn.execute(delete(destinations).where(_D.tenant_id == str(tenant_id), _D.id == ident))
    return True


@scoped
def read_sealed_secret(conn: Connection, *, tenant_id: UUID, destination_id: UUID) -> str | None:
    """The destination's credential as sealed by xavyo_siem.crypto, or None."""
    return conn.execute(
        select(_D.secret).where(_D.tenant_id == str(tenant_id), _D.id == str(destination_id))
    ).scalar_one_or_none()


@scoped
def set_sealed_secret(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID, sealed: str | None
) -> None:
    """Replace (or, with None, remove) the destination's sealed credential."""
    conn.execute(
        update(destinations)
        .where(_D.tenant_id == str(tenant_id), _D.id == str(destination_id))
        .values(secret=sealed)
    )


@platform_wide
def all_sealed_secrets(conn: Connection) -> Mapping[tuple[UUID, UUID], str]:
    """Every stored sealed secret by (tenant, destination): for key rotation."""
    rows = conn.execute(select(_D.tenant_id, _D.id, _D.secret).where(_D.secret.is_not(None)))
    return {
        (uuid_from_canonical(tenant), uuid_from_canonical(ident)): secret
        for tenant, ident, secret in rows
    }


@platform_wide
def all_credentials(conn: Connection) -> list[tuple[SiemDestination, str | None]]:
    """Every destination with its sealed credential (None without one), across tenants, by
    tenant and name: for key rotation and `keys status`, which check each one opens."""
    rows = conn.execute(select(destinations).order_by(_D.tenant_id, _D.name)).mappings()
    return [(_destination_of(row), row["secret"]) for row in rows]


@scoped
def replace_sealed_secret(
    conn: Connection, *, tenant_id: UUID, destination_id: UUID, expected: str, sealed: str
) -> bool:
    """Swap the sealed credential only if it is still `expected` (key rotation); False if
    someone changed it meanwhile, whose new credential then stays."""
    result = conn.execute(
        update(destinations)
        .where(_D.tenant_id == str(tenant_id), _D.id == str(destination_id), _D.secret == expected)
        .values(secret=sealed)
    )
    return result.rowcount == 1


@scoped
def read_leased(
    conn: Connection, *, owner: str, destination_ids: Collection[UUID]
) -> list[tuple[SiemDestination, EventCursor, CircuitState, int]]:
    """The destinations `owner` holds a lease on among `destination_ids`, each with its
    stored cursor, circuit state and consecutive failures: what a worker loads to deliver.

    Scoped by the lease, not by a tenant: this is the worker's view of its own destinations.
    """
    s = destination_state.c
    found = []
    wanted = sorted(str(ident) for ident in destination_ids)
    for start in range(0, len(wanted), 2000):  # bounded statement size
        rows = conn.execute(
            select(
                destinations,
                s.cursor_txid,
                s.cursor_seq,
                s.circuit_state,
                s.consecutive_failures,
            )
            .join(destination_state, s.destination_id == _D.id)
            .join(leases, leases.c.destination_id == _D.id)
            .where(leases.c.owner == owner, _D.id.in_(wanted[start : start + 2000]))
        ).mappings()
        for row in rows:
            found.append(
                (
                    _destination_of(row),
                    EventCursor(row["cursor_txid"], row["cursor_seq"]),
                    CircuitState(row["circuit_state"]),
                    row["consecutive_failures"],
                )
            )
    return found
