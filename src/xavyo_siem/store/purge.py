"""Removing every row of one tenant (offboarding), in the tenant's own scope.

`TENANT_ROWS` is the one list of what a tenant owns in the store, in the order it is
deleted (rows that point at a destination before the destination). A table that gains
tenant rows gets a line here; `tests/integration/test_tenant_purge.py` fails while a table
with a `tenant_id` column is missing from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

from sqlalchemy import Connection, Table, delete, func, select

from xavyo_siem.model import BatchExportJob, JobStatus, to_epoch_us
from xavyo_siem.store.scope import scoped
from xavyo_siem.store.tables import (
    api_tokens,
    audit_event_keys,
    audit_events,
    dead_letters,
    destination_state,
    destinations,
    export_jobs,
    leases,
    quarantine,
    retention_holds,
    retention_policies,
)

__all__ = ["TENANT_ROWS", "count_tenant_rows", "delete_tenant_rows", "live_jobs"]

TENANT_ROWS: Final[tuple[tuple[str, Table], ...]] = (
    ("dead_letters", dead_letters),
    ("leases", leases),
    ("destination_state", destination_state),
    ("destinations", destinations),
    ("export_jobs", export_jobs),
    ("events", audit_events),
    ("event_keys", audit_event_keys),
    ("quarantine", quarantine),
    ("api_tokens", api_tokens),
    ("retention_policies", retention_policies),
    ("retention_holds", retention_holds),
)
"""(kind, table) of everything a tenant owns in the store, in deletion order."""


@scoped
def count_tenant_rows(conn: Connection, *, tenant_id: UUID) -> dict[str, int]:
    """How many rows of each kind `tenant_id` has (what a purge would remove)."""
    return {
        kind: int(
            conn.execute(
                select(func.count()).select_from(table).where(table.c.tenant_id == str(tenant_id))
            ).scalar_one()
        )
        for kind, table in TENANT_ROWS
    }


@scoped
def delete_tenant_rows(conn: Connection, *, tenant_id: UUID) -> dict[str, int]:
    """Delete every row of `tenant_id` in the caller's transaction; how many of each kind."""
    return {
        kind: conn.execute(delete(table).where(table.c.tenant_id == str(tenant_id))).rowcount
        for kind, table in TENANT_ROWS
    }


def live_jobs(jobs: list[BatchExportJob], *, now: datetime) -> list[BatchExportJob]:
    """The jobs a live process runs now (its lease has not expired)."""
    now_us = to_epoch_us(now)
    return [
        job
        for job in jobs
        if job.status is JobStatus.RUNNING
        and job.owner
        and job.lease_expires_at is not None
        and to_epoch_us(job.lease_expires_at) >= now_us
    ]
