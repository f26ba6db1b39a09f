"""Every destination's health in one statement: the fleet view the platform reads (the
service's `/metrics` and health page), and a tenant's health without a read per destination.

One row per destination, the health columns and nothing else: tenant, id, name, delivery
type, enabled (and why the worker switched it off), rate limit, circuit, successes and
failures, last success and last failure with its error, throughput, dead letters waiting,
and the lag. Never the endpoint, options, filters or credential; never an event.

The lag is read per destination from its cursor, over the `(tenant_id, txid, seq)` index:
the events of its tenant after the cursor, counted up to a cap, and the timestamp of the
first of them. Unlike `events.measure_lag` it does not apply the destination's filter (a
filter is not an index condition): it counts what the destination has yet to read, of
which the filter may skip some. A destination that is caught up costs one index probe.

On PostgreSQL the API's role reads one tenant at a time (row-level security). For the
platform's view it calls `xavyo_siem_fleet_health(tenant, lag_cap)` (`create_fleet_function`,
migration 0013), which runs with its owner's rights and returns exactly those columns; only
`xavyo_siem_service` may execute it. A tenant's view reads the tables directly in the
tenant's scope, with the same statement. On SQLite both read the tables directly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Connection, text

from xavyo_siem.model import (
    CircuitState,
    DeliveryHealth,
    DeliveryType,
    FleetHealth,
    RateLimit,
    from_epoch_us,
    uuid_from_canonical,
)
from xavyo_siem.store.scope import SERVICE_ROLE, platform_wide, scoped

__all__ = [
    "FLEET_COLUMNS",
    "FLEET_HEALTH",
    "FLEET_LAG_CAP",
    "create_fleet_function",
    "drop_fleet_function",
    "read_fleet_health",
]

FLEET_HEALTH: Final = "xavyo_siem_fleet_health"
FLEET_LAG_CAP: Final = 1_000
"""How many waiting events the fleet view counts per destination at most."""
_FLEET_SETTING: Final = "xavyo_siem.fleet_health"
_MARKS_SETTING: Final = "xavyo_siem.feed_marks"
# The tables the function reads besides `audit_events` (whose `feed_marks` policy lets the
# owner read it inside a function that sets that setting).
_FLEET_TABLES: Final = ("destinations", "destination_state", "dead_letters")

# The result, in order: name and PostgreSQL type (the function's declared columns).
FLEET_COLUMNS: Final = (
    ("tenant_id", "text"),
    ("destination_id", "text"),
    ("name", "text"),
    ("delivery_type", "text"),
    ("enabled", "boolean"),
    ("disabled_reason", "text"),
    ("rate_events_per_s", "double precision"),
    ("rate_burst", "integer"),
    ("circuit_state", "text"),
    ("circuit_reason", "text"),
    ("successes", "bigint"),
    ("failures", "bigint"),
    ("consecutive_failures", "integer"),
    ("last_success_us", "bigint"),
    ("last_failure_us", "bigint"),
    ("last_error", "text"),
    ("throughput_eps", "double precision"),
    ("possibly_lost", "bigint"),
    ("truncated", "bigint"),
    ("dead_letters", "bigint"),
    ("lag_events", "bigint"),
    ("oldest_us", "bigint"),
)


def _statement(*, postgres: bool, tenant: str, cap: str) -> str:
    """The read, with `tenant` (NULL: every tenant) and `cap` as SQL expressions."""
    if postgres:
        # The partitions a read after the cursor needs (`partitions.received_floor`).
        floor = (
            "(SELECT coalesce(min(p.from_us), -9223372036854775808) FROM audit_partitions p"
            " WHERE p.txid_ceiling IS NULL OR p.txid_ceiling > s.cursor_txid)"
        )
        after = f"(a.txid, a.seq) > (s.cursor_txid, s.cursor_seq) AND a.received_us >= {floor}"
    else:  # `events.after_position`: on SQLite every txid is 0 and `seq` alone orders rows
        after = "a.txid = 0 AND a.seq > s.cursor_seq"
    waiting = f"a.tenant_id = d.tenant_id AND {after}"
    columns: tuple[str, ...] = (
        "d.tenant_id",
        "d.id",
        "d.name",
        "d.delivery_type",
        "d.enabled",
        "d.disabled_reason",
        "d.rate_events_per_s",
        "d.rate_burst",
        "s.circuit_state",
        "s.circuit_reason",
        "s.successes",
        "s.failures",
        "s.consecutive_failures",
        "s.last_success_us",
        "s.last_failure_us",
        "s.last_error",
        "s.throughput_eps",
        "s.possibly_lost",
        "s.truncated",
        "(SELECT count(*) FROM dead_letters l"
        " WHERE l.tenant_id = d.tenant_id AND l.destination_id = d.id)",
        f"(SELECT count(*) FROM (SELECT 1 FROM audit_events a WHERE {waiting} LIMIT {cap}) w)",
        f"(SELECT a.ts_us FROM audit_events a WHERE {waiting} ORDER BY a.txid, a.seq LIMIT 1)",
    )
    if postgres:  # the function's declared types, exactly
        columns = tuple(
            f"{expression}::{kind}"
            for expression, (_, kind) in zip(columns, FLEET_COLUMNS, strict=True)
        )
    return (
        f"SELECT {', '.join(columns)}"
        " FROM destinations d JOIN destination_state s"
        " ON s.destination_id = d.id AND s.tenant_id = d.tenant_id"
        f" WHERE ({tenant} IS NULL OR d.tenant_id = {tenant})"
        " ORDER BY d.tenant_id, d.name, d.id"
    )


def create_fleet_function(bind: Connection) -> None:
    """Create `xavyo_siem_fleet_health(tenant text, lag_cap bigint)` (PostgreSQL, migration
    0013): every destination's health row (`FLEET_COLUMNS`), or one tenant's, read with the
    rights of its owner (the owner that ran the migration), which row-level security binds
    too: each table it reads gets a `fleet_health` policy that lets the owner read while
    the function's own setting is on, as `feed_marks` does for the events. Only
    `xavyo_siem_service` (the API) may execute it."""
    for table in _FLEET_TABLES:
        bind.exec_driver_sql(f"DROP POLICY IF EXISTS fleet_health ON {table}")
        bind.exec_driver_sql(
            f"CREATE POLICY fleet_health ON {table} FOR SELECT TO CURRENT_USER"
            f" USING (current_setting('{_FLEET_SETTING}', true) = 'on')"
        )
    returns = ", ".join(f"{name} {kind}" for name, kind in FLEET_COLUMNS)
    body = _statement(postgres=True, tenant="tenant", cap="lag_cap")
    bind.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {FLEET_HEALTH}(tenant text, lag_cap bigint)"
        f" RETURNS TABLE ({returns})"
        " LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT"
        f" SET {_FLEET_SETTING} = 'on' SET {_MARKS_SETTING} = 'on'"
        f" AS $$ {body} $$".replace("%", "%%")
    )
    bind.exec_driver_sql(f"REVOKE ALL ON FUNCTION {FLEET_HEALTH}(text, bigint) FROM PUBLIC")
    bind.exec_driver_sql(
        f"GRANT EXECUTE ON FUNCTION {FLEET_HEALTH}(text, bigint) TO {SERVICE_ROLE}"
    )


def drop_fleet_function(bind: Connection) -> None:
    """Undo `create_fleet_function` (for the migration's downgrade)."""
    bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {FLEET_HEALTH}(text, bigint)")
    for table in _FLEET_TABLES:
        bind.exec_driver_sql(f"DROP POLICY IF EXISTS fleet_health ON {table}")


def read_fleet_health(
    conn: Connection, *, tenant_id: UUID | None, now: datetime, lag_cap: int = FLEET_LAG_CAP
) -> list[FleetHealth]:
    """The health of `tenant_id`'s destinations, or with None of every tenant's (the
    platform's view), by tenant then name, in one statement; lag measured at `now` as the
    module docstring says (at most `lag_cap` events counted, the destination's filter not
    applied)."""
    if tenant_id is None:
        return _of_platform(conn, now=now, lag_cap=lag_cap)
    return _of_tenant(conn, tenant_id=tenant_id, now=now, lag_cap=lag_cap)


@scoped
def _of_tenant(
    conn: Connection, *, tenant_id: UUID, now: datetime, lag_cap: int
) -> list[FleetHealth]:
    postgres = conn.dialect.name == "postgresql"
    statement = _statement(postgres=postgres, tenant="CAST(:tenant AS TEXT)", cap=":cap")
    rows = conn.execute(text(statement), {"tenant": str(tenant_id), "cap": lag_cap})
    return [_entry(row, now) for row in rows]


@platform_wide
def _of_platform(conn: Connection, *, now: datetime, lag_cap: int) -> list[FleetHealth]:
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(f"SELECT * FROM {FLEET_HEALTH}(NULL, :cap)"), {"cap": lag_cap})
    else:
        rows = conn.execute(
            text(_statement(postgres=False, tenant="NULL", cap=":cap")), {"cap": lag_cap}
        )
    return [_entry(row, now) for row in rows]


def _entry(row: Any, now: datetime) -> FleetHealth:
    (
        tenant, ident, name, delivery_type, enabled, disabled_reason, rate_eps, rate_burst,
        circuit, circuit_reason, successes, failures, consecutive, success_us, failure_us,
        last_error, throughput, lost, truncated, dead, lag_events, oldest_us,
    ) = row  # fmt: skip
    lag_seconds = (
        0.0 if oldest_us is None else max((now - from_epoch_us(int(oldest_us))).total_seconds(), 0)
    )
    health = DeliveryHealth(
        destination_id=uuid_from_canonical(ident),
        tenant_id=uuid_from_canonical(tenant),
        name=name,
        enabled=bool(enabled),
        circuit_state=CircuitState(circuit),
        circuit_reason=circuit_reason,
        successes=int(successes),
        failures=int(failures),
        consecutive_failures=int(consecutive),
        last_success=None if success_us is None else from_epoch_us(int(success_us)),
        last_failure=None if failure_us is None else from_epoch_us(int(failure_us)),
        last_error=last_error,
        lag_events=int(lag_events),
        lag_seconds=lag_seconds,
        throughput_eps=float(throughput),
        dead_letters=int(dead),
        rate_limit=None if rate_eps is None else RateLimit(float(rate_eps), int(rate_burst)),
        disabled_reason=disabled_reason,
        possibly_lost=int(lost),
        truncated=int(truncated),
    )
    return FleetHealth(health, DeliveryType(delivery_type))
