"""Offboarding a tenant: `purge_tenant` removes everything the store holds of it.

Its events, destinations (with their cursors and health, leases and dead letters), export
jobs and the files they wrote, and its API tokens (`store/purge.py`, `TENANT_ROWS`, is
the one list) go in one transaction in the tenant's own scope, so another tenant's rows
cannot be touched even by mistake (on PostgreSQL row-level security checks it again). The
files of its file exports are removed after the commit (a crash in between leaves files
without a job, never a job pointing at a missing file), each only when its manifest names
the job. A dry run counts the same rows and files and changes nothing.

A purge is refused while an export job of the tenant runs in a live process (its lease
has not expired): cancel it first (`xavyo-siem jobs cancel`), so nothing half-written
stays behind. A running worker notices at its next lease renewal that the tenant's
destinations are gone and drops their lanes (progress a lane still writes is fenced off
by its vanished lease).

The tenant's own audit trail is purged with it, so a purge is recorded as a line on the
`xavyo_siem.audit` logger (who, which tenant, what was removed), as a platform token's
issue is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Connection, Engine

from xavyo_siem.batch.expiry import busy_paths, job_files, remove_job_files
from xavyo_siem.errors import ExportJobError
from xavyo_siem.model import BatchExportJob
from xavyo_siem.store import writing
from xavyo_siem.store.jobs import lock_tenant_jobs
from xavyo_siem.store.purge import count_tenant_rows, delete_tenant_rows, live_jobs
from xavyo_siem.trail import Actor, log

__all__ = ["Purge", "purge_tenant"]


@dataclass(frozen=True, slots=True)
class Purge:
    """What a purge removed (or, `dry_run`, would remove): rows of each kind, files."""

    tenant_id: UUID
    dry_run: bool
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Everything removed, rows and files."""
        return sum(self.removed.values())

    def to_dict(self) -> dict[str, object]:
        """The report as `--json` prints it."""
        return {"tenant_id": str(self.tenant_id), "dry_run": self.dry_run, "removed": self.removed}


def _idle_jobs(conn: Connection, tenant_id: UUID) -> list[BatchExportJob]:
    """The tenant's export jobs, locked for the transaction (so no worker claims one in
    between), none of which a live process runs (else refused)."""
    jobs = lock_tenant_jobs(conn, tenant_id=tenant_id)
    running = live_jobs(jobs, now=datetime.now(UTC))
    if running:
        names = ", ".join(str(job.id) for job in running[:5])
        raise ExportJobError(
            f"tenant {tenant_id}: export job(s) {names} still running; cancel them first"
            " (`xavyo-siem jobs cancel JOB`) or let them finish"
        )
    return jobs


def purge_tenant(
    engine: Engine, *, tenant_id: UUID, dry_run: bool = False, actor: Actor | None = None
) -> Purge:
    """Remove every row and export file of `tenant_id` (see the module docstring); with
    `dry_run`, only count them. Raises `ExportJobError` while one of its exports runs."""
    if dry_run:
        with engine.connect() as conn:
            jobs = _idle_jobs(conn, tenant_id)
            removed = count_tenant_rows(conn, tenant_id=tenant_id)
        removed["export_files"] = sum(len(job_files(job)) for job in jobs)
        return Purge(tenant_id=tenant_id, dry_run=True, removed=removed)
    with writing(engine) as conn:
        jobs = _idle_jobs(conn, tenant_id)
        removed = delete_tenant_rows(conn, tenant_id=tenant_id)
        busy = busy_paths(conn, jobs)
    removed["export_files"] = remove_job_files(jobs, busy=busy)  # after the commit
    who = "the program" if actor is None else f"{actor.actor_id} ({actor.role}) via {actor.via}"
    counts = ", ".join(f"{kind} {count}" for kind, count in removed.items())
    log.info("tenant %s purged by %s: %s", tenant_id, who, counts)
    return Purge(tenant_id=tenant_id, dry_run=False, removed=removed)
