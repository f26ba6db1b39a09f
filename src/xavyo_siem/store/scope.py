"""Row-level security on PostgreSQL: the roles, the policies, and the scope of a transaction.

The store's functions check the tenant themselves (every read names one); on PostgreSQL the
database checks it a second time. Each tenant table has row-level security enabled and
forced (so it holds for the table's owner too), and a transaction sees only the rows its
scope allows. The scope is set by the store functions, transaction-locally, from the
keywords they already take:

* `tenant_id=T` sets `xavyo_siem.tenant`: the rows of tenant T, to read and to write.
* `owner=W` (a worker) sets `xavyo_siem.worker` and `xavyo_siem.platform`: for a member of
  `xavyo_siem_worker`, the events, cursors and dead letters of the tenants whose
  destinations W leases, and every destination and export job (to share work out).
* the few cross-tenant functions (the workers' list of enabled destinations, the
  operator's listings, key rotation, ingest of many tenants' events) set
  `xavyo_siem.platform` alone: for a member of `xavyo_siem_worker`, every destination and
  export job, and events may be appended for any tenant (never read).

With no scope set a transaction sees nothing. `xavyo_siem_service` (the API) has only the
tenant scope. `api_tokens`, `leases`, `workers` and `alembic_version` hold no tenant's rows
and have no policies: a token is looked up by its hash before any tenant is known. The
change feed moves past the events a worker cannot see with `xavyo_siem_feed_mark`, which
tells their position and nothing else (`create_functions`); the API's view of every
tenant's delivery health reads through `xavyo_siem_fleet_health`, which returns the health
columns and nothing else (`store/fleet.py`).

`protect_table` enables RLS and creates the policies of one table; a migration that adds a
tenant table or a partition of one calls it. SQLite has no row-level security; there the
application's check is the only one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, Final, ParamSpec, TypeVar
from uuid import UUID

from sqlalchemy import Connection

__all__ = [
    "ANALYZE_LEASES",
    "FEED_MARK",
    "MARKS_SETTING",
    "PLATFORM_SETTING",
    "SERVICE_ROLE",
    "TENANT_SETTING",
    "TENANT_TABLES",
    "WORKER_ROLE",
    "WORKER_SETTING",
    "create_functions",
    "create_roles",
    "partition_policy_statements",
    "platform_wide",
    "protect_table",
    "scope_to_platform",
    "scope_to_tenant",
    "scope_to_worker",
    "scoped",
    "unprotect_table",
]

SERVICE_ROLE: Final = "xavyo_siem_service"
WORKER_ROLE: Final = "xavyo_siem_worker"
TENANT_SETTING: Final = "xavyo_siem.tenant"
WORKER_SETTING: Final = "xavyo_siem.worker"
PLATFORM_SETTING: Final = "xavyo_siem.platform"

# A setting set with `set_config(..., true)` reads as '' (not NULL) once its transaction
# ends, so every test treats '' as unset: a released lease's owner is ''.
# Each inside a scalar subquery, so PostgreSQL reads the setting once per statement (an
# init plan), not once per row.
_TENANT: Final = f"(SELECT NULLIF(current_setting('{TENANT_SETTING}', true), ''))"
_WORKER: Final = f"(SELECT NULLIF(current_setting('{WORKER_SETTING}', true), ''))"
_PLATFORM: Final = f"(SELECT current_setting('{PLATFORM_SETTING}', true) = 'on')"
# The leases carry their destination's tenant, so this reads no table with policies of its
# own (which would leave the planner guessing, and plan the change feed badly).
_LEASED: Final = f"tenant_id IN (SELECT l.tenant_id FROM leases l WHERE l.owner = {_WORKER})"

# What a worker (member of WORKER_ROLE) may do in each tenant table, beyond the tenant scope:
# "leased" rows of the tenants it serves, "platform" every row, "ingest" append any tenant's
# events (and, with a worker named, read the events of the tenants it serves).
_WORKER_ACCESS: Final = {
    "audit_events": "ingest",
    "destinations": "platform",
    "destination_state": "leased",
    "dead_letters": "leased",
    "export_jobs": "platform",
    "quarantine": "platform",  # migration 0010; a tenantless entry: the platform's alone
    # migration 0012: the ingest's keys (the platform's ingest reads back what it inserted),
    # retention policies (a tenantless one: the platform's) and what holds retention back
    "audit_event_keys": "platform",
    "retention_policies": "platform",
    "retention_holds": "platform",
}
TENANT_TABLES: Final = tuple(_WORKER_ACCESS)
_POLICIES: Final = (
    "tenant_scope",
    "feed_marks",
    "worker_reads",
    "platform_ingest",
    "worker_scope",
    "platform_scope",
    "fleet_health",  # migration 0013: the owner's reads inside `xavyo_siem_fleet_health`
)


def create_roles(bind: Connection) -> None:
    """Create the two group roles (NOLOGIN) unless they exist, and grant them the schema's
    tables: what a login role that is a member of one of them may touch. Needs CREATEROLE
    unless an administrator created the roles beforehand."""
    for role in (SERVICE_ROLE, WORKER_ROLE):
        bind.exec_driver_sql(
            "DO $$ BEGIN"
            f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN"
            f" CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS; END IF;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    roles = f"{SERVICE_ROLE}, {WORKER_ROLE}"
    schema = bind.exec_driver_sql("SELECT current_schema()").scalar_one()
    bind.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {roles}')
    bind.exec_driver_sql(
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {roles}'
    )
    bind.exec_driver_sql(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {roles}")
    bind.exec_driver_sql(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {roles}')
    # The platform's own tables stay out of the API's reach, whichever migration grants last.
    for table in WORKER_ONLY_TABLES:
        if bind.exec_driver_sql(f"SELECT to_regclass('{table}')").scalar_one() is not None:
            bind.exec_driver_sql(f"REVOKE ALL ON {table} FROM {SERVICE_ROLE}")
    if bind.exec_driver_sql("SELECT to_regclass('detached_partitions')").scalar_one() is not None:
        bind.exec_driver_sql(f"REVOKE INSERT, UPDATE, DELETE ON detached_partitions FROM {roles}")


# Tables only workers and operator commands use: the sources' sealed connection strings,
# and the partitions retention detached (migration 0014; written only by its functions).
WORKER_ONLY_TABLES: Final = ("sources", "detached_partitions")
FEED_MARK: Final = "xavyo_siem_feed_mark"
ANALYZE_LEASES: Final = "xavyo_siem_analyze_leases"
MARKS_SETTING: Final = "xavyo_siem.feed_marks"


def create_functions(bind: Connection) -> None:
    """Create the two functions that run with their owner's rights (the owner that ran
    the migration), on the schema they were created in, for the group roles:

    * `xavyo_siem_feed_mark(horizon, skip)`: the position (txid, seq) of the store's last
      event below `horizon` of any tenant, or of the one `skip` events before it, and
      nothing else. The change feed moves past the events of tenants its worker does not
      serve with it, which row-level security hides from the worker. The owner is subject
      to the policies too: see `protect_table`'s `feed_marks`.
    * `xavyo_siem_analyze_leases()`: `ANALYZE leases`, which only the owner may run
      (`leases.refresh_lease_statistics`).
    """
    bind.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {ANALYZE_LEASES}() RETURNS void"
        " LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT"
        " AS $$ BEGIN ANALYZE leases; END $$"
    )
    bind.exec_driver_sql(f"REVOKE ALL ON FUNCTION {ANALYZE_LEASES}() FROM PUBLIC")
    bind.exec_driver_sql(f"GRANT EXECUTE ON FUNCTION {ANALYZE_LEASES}() TO {WORKER_ROLE}")
    bind.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {FEED_MARK}(horizon bigint, skip bigint)"
        " RETURNS TABLE (txid bigint, seq bigint)"
        " LANGUAGE sql STABLE SECURITY DEFINER"
        f" SET search_path FROM CURRENT SET {MARKS_SETTING} = 'on'"
        " AS $$ SELECT a.txid, a.seq FROM audit_events a WHERE a.txid >= 0"
        " AND a.txid < horizon ORDER BY a.txid DESC, a.seq DESC OFFSET skip LIMIT 1 $$"
    )
    bind.exec_driver_sql(f"REVOKE ALL ON FUNCTION {FEED_MARK}(bigint, bigint) FROM PUBLIC")
    bind.exec_driver_sql(
        f"GRANT EXECUTE ON FUNCTION {FEED_MARK}(bigint, bigint) TO {SERVICE_ROLE}, {WORKER_ROLE}"
    )


def protect_table(bind: Connection, table: str, *, like: str | None = None) -> None:
    """Enable and force row-level security on `table` and create its policies: those of
    the tenant table `like` (default: `table` itself), e.g. a new partition of
    `audit_events` is protected with `like="audit_events"`."""
    for statement in _policy_statements(table, _WORKER_ACCESS[like or table]):
        bind.exec_driver_sql(statement)


def partition_policy_statements(table: str) -> list[str]:
    """The statements that protect a partition of `audit_events` named `table` (the
    function that makes partitions runs them with the partition's name)."""
    return _policy_statements(table, _WORKER_ACCESS["audit_events"])


def _policy_statements(table: str, access: str) -> list[str]:
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_scope ON {table} USING (tenant_id = {_TENANT})"
        f" WITH CHECK (tenant_id = {_TENANT})",
    ]
    if access == "ingest":
        statements += [
            f"CREATE POLICY worker_reads ON {table} FOR SELECT TO {WORKER_ROLE} USING ({_LEASED})",
            f"CREATE POLICY platform_ingest ON {table} FOR INSERT TO {WORKER_ROLE}"
            f" WITH CHECK ({_PLATFORM})",
            # The owner's reads inside `xavyo_siem_feed_mark`, which sets this.
            f"CREATE POLICY feed_marks ON {table} FOR SELECT TO CURRENT_USER"
            f" USING (current_setting('{MARKS_SETTING}', true) = 'on')",
        ]
    elif access == "leased":
        statements.append(
            f"CREATE POLICY worker_scope ON {table} TO {WORKER_ROLE}"
            f" USING ({_LEASED}) WITH CHECK ({_LEASED})"
        )
    else:
        statements.append(
            f"CREATE POLICY platform_scope ON {table} TO {WORKER_ROLE}"
            f" USING ({_PLATFORM}) WITH CHECK ({_PLATFORM})"
        )
    return statements


def unprotect_table(bind: Connection, table: str) -> None:
    """Undo `protect_table` (for a migration's downgrade)."""
    for policy in _POLICIES:
        bind.exec_driver_sql(f"DROP POLICY IF EXISTS {policy} ON {table}")
    bind.exec_driver_sql(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    bind.exec_driver_sql(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


# The connection's record of what it set in its current transaction: (transaction, values).
_HELD: Final = "xavyo_siem.scope"


def _set(conn: Connection, values: dict[str, str]) -> None:
    """Set `values` for the rest of the transaction (one round trip; none when they are
    already set in it). Does nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return
    held = conn.info.get(_HELD)
    transaction = conn.get_transaction()
    if (
        transaction is not None
        and held is not None
        and held[0] is transaction
        and all(held[1].get(name) == value for name, value in values.items())
    ):
        return
    calls = ", ".join("set_config(%s, %s, true)" for _ in values)
    conn.exec_driver_sql(f"SELECT {calls}", tuple(part for item in values.items() for part in item))
    transaction = conn.get_transaction()
    if held is None or held[0] is not transaction:
        held = (transaction, dict[str, str]())
        conn.info[_HELD] = held
    held[1].update(values)


def scope_to_tenant(conn: Connection, tenant_id: UUID) -> None:
    """Let the rest of the transaction see (and write) tenant `tenant_id`'s rows."""
    _set(conn, {TENANT_SETTING: str(tenant_id)})


def scope_to_worker(conn: Connection, owner: str) -> None:
    """Let the rest of the transaction act as worker `owner` (see the module docstring)."""
    _set(conn, {WORKER_SETTING: owner, PLATFORM_SETTING: "on"})


def scope_to_platform(conn: Connection) -> None:
    """Let the rest of the transaction act for the platform (see the module docstring)."""
    _set(conn, {PLATFORM_SETTING: "on"})


_P = ParamSpec("_P")
_R = TypeVar("_R")


def scoped(
    function: Callable[Concatenate[Connection, _P], _R],
) -> Callable[Concatenate[Connection, _P], _R]:
    """A store function whose `tenant_id=` and `owner=` keywords scope its transaction."""

    @functools.wraps(function)
    def run(conn: Connection, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        tenant_id, owner = kwargs.get("tenant_id"), kwargs.get("owner")
        if isinstance(tenant_id, UUID):
            scope_to_tenant(conn, tenant_id)
        if isinstance(owner, str) and owner:
            scope_to_worker(conn, owner)
        return function(conn, *args, **kwargs)

    return run


def platform_wide(
    function: Callable[Concatenate[Connection, _P], _R],
) -> Callable[Concatenate[Connection, _P], _R]:
    """A store function that reads across tenants for the platform (see the module
    docstring): it acts in the platform scope."""

    @functools.wraps(function)
    def run(conn: Connection, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        scope_to_platform(conn)
        return function(conn, *args, **kwargs)

    return run
