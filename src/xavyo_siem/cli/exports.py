"""Batch exports (the API's `/v1/tenants/{tenant_id}/exports`): `export` runs one here and
now (or queues it for the workers), `export verify` checks a file against its manifest, and
`jobs` lists, shows, cancels and expires export jobs.

A bad request is bad input: one line naming the flag (`error: --to: must be after
--from`) and exit status 2.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import orjson
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from xavyo_siem.batch import (
    BatchExporter,
    ExportRequest,
    ExportSettings,
    cancel_export_job,
    create_export_job,
    expire_export_jobs,
    find_export_job,
    resume_export_job,
)
from xavyo_siem.cli.options import (
    AnyTenantOption,
    CategoryOption,
    DbOption,
    EventTypeOption,
    JsonOption,
    MinSeverityOption,
    load_settings,
    parse_filters,
    parse_options,
    parse_time,
    startup_secrets,
)
from xavyo_siem.cli.output import err, out, print_fields, print_json_lines
from xavyo_siem.errors import InvalidExport
from xavyo_siem.manifest import manifest_path, verify_export
from xavyo_siem.model import (
    BatchExportJob,
    ExportFormat,
    ExportTarget,
    JobStatus,
    SiemDestination,
    format_timestamp,
)
from xavyo_siem.pipeline import DestinationComponents
from xavyo_siem.runtime.components import open_destination
from xavyo_siem.runtime.hosting import stop_on_signals
from xavyo_siem.settings import DEFAULT_DATABASE_URL, Settings, parse_duration
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store import open_store
from xavyo_siem.trail import Actor

__all__ = ["export_app", "jobs_app"]

export_app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring
jobs_app = typer.Typer(help="Batch export jobs: list, show, cancel, expire.", no_args_is_help=True)

# The request fields of InvalidExport, as the flags that set them.
_EXPORT_FLAGS = {
    "start": "--from",
    "end": "--to",
    "range": "--from/--to",
    "tenant_id": "--tenant",
    "output": "--output",
    "destination": "--destination",
    "format": "--format",
    "options": "--option",
    "job": "JOB",
    "file": "FILE",
}

JobArg = Annotated[UUID, typer.Argument(help="The job's id.", show_default=False)]
JobTenantOption = Annotated[UUID | None, typer.Option("--tenant", help="The job's tenant.")]
FromOption = Annotated[
    str | None, typer.Option("--from", help="Events at or after this time (ISO 8601).")
]
ToOption = Annotated[str | None, typer.Option("--to", help="Events before this time (ISO 8601).")]
FormatOption = Annotated[
    ExportFormat | None,
    typer.Option("--format", help="File format (default csv); a destination uses its own."),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file (and its manifest).")
]
DestinationOption = Annotated[
    str | None, typer.Option("--destination", help="Deliver to this destination (name or id).")
]
FormatOptionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        help="A format option KEY=VALUE (repeatable), e.g. formula_guard=false (CSV for "
        "programs, not spreadsheets: values are written unguarded).",
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing file.")]
QueueOption = Annotated[
    bool, typer.Option("--queue", help="Only queue the job, for the workers of `run`.")
]
ResumeOption = Annotated[
    UUID | None,
    typer.Option("--resume", help="Continue this job from its checkpoint (its runner died)."),
]
ChunkOption = Annotated[
    int, typer.Option("--chunk-events", min=1, help="Events per page and checkpoint.")
]
LeaseOption = Annotated[
    float, typer.Option("--lease-ttl", min=1, help="Seconds a dead exporter's job stays held.")
]
JobJsonOption = Annotated[bool, typer.Option("--json", help="Print the job as JSON at the end.")]


@contextmanager
def _export_errors() -> Iterator[None]:
    """A bad export request is bad input: one line naming the flag, exit status 2."""
    try:
        yield
    except InvalidExport as exc:
        name = exc.field
        if name.startswith("options."):
            flag = f"--option {name.removeprefix('options.')}"
        else:
            flag = _EXPORT_FLAGS.get(name, name)
        reason = exc.reason.replace("must be after start", "must be after --from")
        reason = reason.replace("or overwrite it", "or overwrite it with --force")
        err.print(f"error: {flag}: {reason}")
        raise typer.Exit(2) from None


@export_app.callback()
def export(
    ctx: typer.Context,
    tenant: Annotated[UUID | None, typer.Option("--tenant", help="The tenant (UUID).")] = None,
    from_: FromOption = None,
    to: ToOption = None,
    format: FormatOption = None,
    output: OutputOption = None,
    destination: DestinationOption = None,
    category: CategoryOption = None,
    event_type: EventTypeOption = None,
    min_severity: MinSeverityOption = None,
    option: FormatOptionsOption = None,
    force: ForceOption = False,
    queue: QueueOption = False,
    resume: ResumeOption = None,
    chunk_events: ChunkOption = 10_000,
    lease_ttl: LeaseOption = 30.0,
    json: JobJsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Export a tenant's events of `[--from, --to)` to a file (with a manifest) or a destination.

    The file is written to `FILE.partial` and renamed into place when complete, beside
    `FILE.manifest.json` (count, first and last event ids, SHA-256; see `export verify`). A
    killed export keeps its checkpoint: `--resume JOB` (or a worker) continues it, and the
    file is the same as an uninterrupted run's. `--queue` leaves the job to the workers.
    CSV cells that start like a formula get a `'` (`--option formula_guard=false` turns that
    off: only for programs, never for spreadsheets).

    Example: `xavyo-siem export --tenant 3f0c… --from 2026-03-01T00:00:00Z
    --to 2026-04-01T00:00:00Z --category authentication -o march.csv`
    """
    if ctx.invoked_subcommand is not None:
        return
    with _export_errors():
        settings = load_settings()
        engine = open_store(db)
        exporter = _exporter(engine, settings, chunk_events=chunk_events, lease_ttl=lease_ttl)
        ttl = timedelta(seconds=lease_ttl)
        if resume is not None:
            found = find_export_job(engine, job_id=resume, tenant_id=tenant)
            job = resume_export_job(
                engine, tenant_id=found.tenant_id, job_id=resume, owner=exporter.owner, ttl=ttl
            )
        else:
            request = _request(
                tenant, from_, to, output=output, destination=destination, format=format,
                categories=category, event_types=event_type, min_severity=min_severity,
                options=option, overwrite=force,
            )  # fmt: skip
            owner = None if queue else exporter.owner
            job = create_export_job(
                engine, request, owner=owner, ttl=ttl, actor=Actor.command_line()
            )
            if queue:
                err.print(f"queued job {job.id}: {_job_line(job)}")
                if json:
                    print_json_lines([job.to_dict()])
                return
    finished, seconds = _carry(exporter, job)
    if json:
        print_json_lines([finished.to_dict()])
    _export_summary(finished, seconds)


def _exporter(
    engine: Engine, settings: Settings, *, chunk_events: int, lease_ttl: float
) -> BatchExporter:
    """An exporter in this process; the key ring is loaded when a destination is first
    opened, so a file export needs no key."""
    secrets = cache(partial(startup_secrets, settings))

    async def components(target: SiemDestination) -> DestinationComponents:
        keyring, egress = secrets()
        return await open_destination(
            engine, target, settings=settings, keyring=keyring, egress=egress
        )

    return BatchExporter(
        engine=engine,
        settings=ExportSettings(chunk_events=chunk_events, lease_ttl_s=lease_ttl),
        open_components=components,
    )


def _request(
    tenant: UUID | None,
    from_: str | None,
    to: str | None,
    *,
    output: Path | None,
    destination: str | None,
    format: ExportFormat | None,
    categories: list[str] | None,
    event_types: list[str] | None,
    min_severity: int | None,
    options: list[str] | None,
    overwrite: bool,
) -> ExportRequest:
    """The export the flags ask for (`create_export_job` validates it against the store)."""
    if tenant is None:
        raise typer.BadParameter("is required (or --resume JOB)", param_hint="--tenant")
    start, end = parse_time("--from", from_), parse_time("--to", to)
    if start is None or end is None:
        missing = "--from" if start is None else "--to"
        raise typer.BadParameter("is required", param_hint=missing)
    return ExportRequest(
        tenant_id=tenant,
        start=start,
        end=end,
        output=output,
        destination=destination,
        format=format,
        filters=parse_filters(categories, event_types, min_severity),
        options=parse_options(options or []),
        overwrite=overwrite,
    )


def _carry(exporter: BatchExporter, job: BatchExportJob) -> tuple[BatchExportJob, float]:
    """Run the leased `job` here, with a progress bar on a terminal, until it ends or a
    signal stops it at its next checkpoint; the job as it ended, and the seconds it took."""
    if job.checkpoint is not None:
        err.print(f"resuming job {job.id} after {job.exported:,} events")
    else:
        err.print(f"job {job.id}: {_job_line(job)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = _export_progress() if err.is_terminal else None
    began = time.perf_counter()

    async def carry() -> BatchExportJob:
        stop_on_signals(exporter.stop)
        if progress is None:
            return await exporter.run(job)
        bar = progress.add_task("exporting", total=job.estimated_total, completed=job.exported)

        def show(done: int, total: int | None) -> None:
            progress.update(bar, completed=done, total=total)

        return await exporter.run(job, on_progress=show)

    with progress or nullcontext():
        finished = asyncio.run(carry())
    return finished, time.perf_counter() - began


class _EventRate(ProgressColumn):
    """Events per second of a progress task."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:,.0f} events/s")


def _export_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        _EventRate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def _job_line(job: BatchExportJob) -> str:
    target = job.target if job.target_kind is ExportTarget.FILE else f"destination {job.target}"
    span = f"[{format_timestamp(job.start)}, {format_timestamp(job.end)})"
    return f"tenant {job.tenant_id} {span} as {job.format.value} to {target}"


def _export_summary(job: BatchExportJob, seconds: float) -> None:
    """What happened, on stderr; `typer.Exit(1)` unless the job completed."""
    if job.status is JobStatus.COMPLETED:
        rate = f", {job.exported / seconds:,.0f} events/s" if seconds > 0 else ""
        if job.target_kind is ExportTarget.FILE:
            path = Path(job.target)
            manifest = manifest_path(path)
            digest = orjson.loads(manifest.read_bytes()).get("sha256", "?")
            size = path.stat().st_size
            err.print(
                f"exported {job.exported:,} events to {path} ({size:,} bytes) in "
                f"{seconds:.1f} s{rate}\nmanifest {manifest} (sha256 {digest})"
            )
        else:
            dead = f", {job.dead_lettered:,} refused (dead letters)" if job.dead_lettered else ""
            err.print(
                f"delivered {job.exported:,} events to destination {job.target}{dead} in "
                f"{seconds:.1f} s{rate}"
            )
        return
    if job.status is JobStatus.RUNNING:
        err.print(
            f"stopped after {job.exported:,} events; the job keeps its checkpoint: "
            f"`xavyo-siem export --resume {job.id}` (or a worker) continues it"
        )
    elif job.status is JobStatus.CANCELLED:
        err.print(f"job {job.id} was cancelled; nothing of it was kept")
    else:
        err.print(f"error: job {job.id} failed: {job.error}")
    raise typer.Exit(1)


@export_app.command("verify")
def export_verify(
    file: Annotated[Path, typer.Argument(help="An exported file (its manifest is beside it).")],
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="The manifest, if not FILE.manifest.json.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Check a file against its manifest: size, SHA-256, event count, first and last ids.

    Exits 0 when everything matches and 1 naming each difference. Needs no store: anyone
    holding the two files can check them.

    Example: `xavyo-siem export verify march.csv`
    """
    with _export_errors():
        result = verify_export(file, manifest_file=manifest)
    if json:
        print_json_lines(
            [
                {
                    "file": str(file),
                    "ok": result.ok,
                    "events": result.events,
                    "sha256": result.manifest.get("sha256"),
                    "problems": result.problems,
                }
            ]
        )
    if result.ok:
        err.print(
            f"OK: {file} holds the {result.events:,} events of its manifest "
            f"(sha256 {result.manifest['sha256']})"
        )
        return
    for problem in result.problems:
        err.print(f"MISMATCH: {problem}")
    raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(
    tenant: AnyTenantOption = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many per tenant.")
    ] = 50,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List batch export jobs, newest first, with their status and progress.

    Example: `xavyo-siem jobs list --tenant 3f0c… --json`
    """
    with open_store(db, create=False).connect() as conn:
        tenants = [tenant] if tenant else job_rows.job_tenant_ids(conn)
        found = [j for t in tenants for j in job_rows.list_jobs(conn, tenant_id=t, limit=limit)]
    if json:
        print_json_lines(j.to_dict() for j in found)
        return
    table = Table("id", "tenant", "status", "progress", "format", "from", "to", "target", box=None)
    for j in found:
        total = "?" if j.estimated_total is None else f"{j.estimated_total:,}"
        table.add_row(
            str(j.id), str(j.tenant_id), j.status.value, f"{j.exported:,}/{total}",
            j.format.value, format_timestamp(j.start)[:19], format_timestamp(j.end)[:19],
            j.target,
        )  # fmt: skip
    out().print(table)


@jobs_app.command("show")
def jobs_show(
    job: JobArg,
    tenant: JobTenantOption = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Show one job: target, range, filters, status, progress, error, times.

    Example: `xavyo-siem jobs show 7d2e…`
    """
    with _export_errors():
        found = find_export_job(open_store(db), job_id=job, tenant_id=tenant)
    if json:
        print_json_lines([found.to_dict()])
    else:
        print_fields(found.to_dict(), key_width=16, none="")


@jobs_app.command("cancel")
def jobs_cancel(
    job: JobArg,
    tenant: JobTenantOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Cancel a job: a queued one at once; a running one stops at its next checkpoint and
    deletes its partial file (a destination keeps what it already received).

    Example: `xavyo-siem jobs cancel 7d2e…`
    """
    with _export_errors():
        engine = open_store(db)
        found = find_export_job(engine, job_id=job, tenant_id=tenant)
        after = cancel_export_job(
            engine, tenant_id=found.tenant_id, job_id=job, actor=Actor.command_line()
        )
    if after.status is JobStatus.CANCELLED:
        err.print(f"cancelled job {job}")
    else:
        err.print(f"asked job {job} to stop; it cancels itself at its next checkpoint")


@jobs_app.command("expire")
def jobs_expire(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Retention, e.g. 7d, 12h, 90m (default: XAVYO_SIEM_EXPORT_RETENTION, 7d).",
        ),
    ] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Remove the export jobs (every tenant's) that finished longer ago than the retention,
    with the files they wrote. Queued and running jobs are never removed. The workers of
    `run` do this about once an hour; this does it now.

    Example: `xavyo-siem jobs expire`, or `xavyo-siem jobs expire --older-than 1d --json`
    """
    settings = load_settings()
    try:
        retention = parse_duration(
            "--older-than", older_than or "", default=settings.export_retention
        )
    except ValueError as exc:
        raise typer.BadParameter(
            str(exc).removeprefix("--older-than: "), param_hint="--older-than"
        ) from None
    expired = expire_export_jobs(open_store(db), retention=retention, now=datetime.now(UTC))
    if json:
        print_json_lines([expired.to_dict()])
        return
    err.print(f"removed {expired.jobs} export job(s) and {expired.files} file(s)")
