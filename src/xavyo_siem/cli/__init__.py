"""The `xavyo-siem` command line: thin commands over the package's functions."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any
from uuid import UUID

import orjson
import typer
from prometheus_client import start_http_server
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from xavyo_siem import __version__
from xavyo_siem import destinations as manage
from xavyo_siem.batch import (
    BatchExporter,
    ExportRequest,
    ExportSettings,
    cancel_export_job,
    create_export_job,
    find_export_job,
    resume_export_job,
)
from xavyo_siem.credentials import count_credentials_by_key, rotate_credentials
from xavyo_siem.crypto import CryptoError, KeyRing, load_key_ring, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import (
    InvalidDestination,
    InvalidEvent,
    InvalidExport,
    InvalidFilter,
    SiemError,
)
from xavyo_siem.manifest import manifest_path, verify_export
from xavyo_siem.model import (
    AuditEvent,
    BatchExportJob,
    DeliveryType,
    EventFilter,
    ExportFormat,
    ExportTarget,
    JobStatus,
    RateLimit,
    SiemDestination,
    format_timestamp,
)
from xavyo_siem.pipeline.export import PipelineSettings
from xavyo_siem.pipeline.retry import RetryPolicy
from xavyo_siem.pipeline.worker import Worker, WorkerSettings, single_worker_lock
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.settings import DEFAULT_DATABASE_URL, Settings
from xavyo_siem.store import (
    append_events,
    make_engine,
    open_store,
    read_events_in_range,
    upgrade,
    writing,
)
from xavyo_siem.store import dead_letters as dl_rows
from xavyo_siem.store import destinations as dest_rows
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store.tokens import Role, issue_token, list_tokens, revoke_token

__all__ = ["app", "main"]

app = typer.Typer(
    name="xavyo-siem",
    help="Export an identity provider's audit events to its tenants' SIEM systems.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
destination_app = typer.Typer(
    help="Manage where a tenant's events go (syslog, webhook, Splunk HEC, file).",
    no_args_is_help=True,
)
app.add_typer(destination_app, name="destination")
dead_letters_app = typer.Typer(
    help="Events a destination refused for good: list, replay, purge.", no_args_is_help=True
)
app.add_typer(dead_letters_app, name="dead-letters")

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _out() -> Console:
    """Tables on stdout: the terminal's width, or wide enough not to cut columns in a pipe."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 250)


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="XAVYO_SIEM_DATABASE_URL",
        help="Store URL: sqlite:///path.db (default) or postgresql://user@host/db.",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xavyo-siem {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Export an identity provider's audit events to its tenants' SIEM systems.

    Every command takes `--db URL` (or `XAVYO_SIEM_DATABASE_URL`); the default is an
    embedded SQLite file, `./xavyo-siem.db`, which sets itself up on first use.
    """


def _parse_time(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"must be an ISO 8601 time, got {text!r}", param_hint=name
        ) from None
    if value.tzinfo is None:
        raise typer.BadParameter(
            "must carry a UTC offset, e.g. 2026-03-01T00:00:00Z", param_hint=name
        )
    return value


@app.command()
def sample(
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="How many events.")] = 1000,
    tenants: Annotated[
        int, typer.Option("--tenants", "-t", min=1, help="Spread over this many tenants.")
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="The same seed gives the same events.")] = 0,
    start: Annotated[
        str | None, typer.Option("--start", help="Time of the first event (ISO 8601 with offset).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write realistic identity-provider audit events as JSON lines.

    Logins and failed logins, MFA, password resets, user and group changes, role grants,
    token issuance, admin actions and SoD violations, from IPv4 and IPv6 addresses.

    Example: `xavyo-siem sample --count 100000 --tenants 3 --seed 7 -o events.jsonl`
    """
    first = _parse_time("--start", start) or DEFAULT_START
    target: Any = nullcontext(sys.stdout.buffer) if output is None else output.open("wb")
    with target as sink:
        buffer: list[bytes] = []
        for event in generate_events(count, tenants, seed, start=first):
            buffer.append(orjson.dumps(event.to_dict()))
            if len(buffer) >= 4096:
                sink.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            sink.write(b"\n".join(buffer) + b"\n")


def _read_events(stream: IO[bytes], progress: Progress | None, task: Any) -> Iterator[AuditEvent]:
    """Parse and validate JSON lines; a bad line raises InvalidEvent with its line number."""
    loads = orjson.loads
    from_dict = AuditEvent.from_dict
    for number, line in enumerate(stream, start=1):
        if progress is not None and number % 2048 == 0:
            progress.update(task, completed=stream.tell() if stream.seekable() else number)
        if line.isspace():  # stops at the first other byte: no copy of the line, as strip() made
            continue
        try:
            data = loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("event", f"is not valid JSON ({exc})", line=number) from None
        try:
            yield from_dict(data)
        except InvalidEvent as exc:
            raise exc.at_line(number) from None


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="A JSON-lines file, or - for standard input.")],
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Store audit events from a JSON-lines file, each (tenant, event id) once.

    Everything is validated inside one transaction: one bad line stores nothing, and the
    error names the line, the field and the rule. Events already stored are counted as
    duplicates and left as they are, so ingesting the same file twice is harmless.

    Example: `xavyo-siem sample -n 1000 | xavyo-siem ingest -`
    """
    engine = open_store(db)
    if source == "-":
        stream: IO[bytes] = sys.stdin.buffer
        size = None
    else:
        path = Path(source)
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {source}", param_hint="SOURCE")
        stream = path.open("rb", buffering=1 << 20)
        size = path.stat().st_size
    show = err.is_terminal and size is not None and size > 4 << 20
    progress = _progress(bytes_mode=True) if show else None
    began = time.perf_counter()
    with progress or nullcontext(), stream:
        task = progress.add_task("ingesting", total=size) if progress else None
        with writing(engine) as conn:
            result = append_events(conn, _read_events(stream, progress, task))
    seconds = time.perf_counter() - began
    total = result.stored + result.duplicates
    rate = f", {total / seconds:,.0f} events/s" if seconds > 0 and total else ""
    err.print(
        f"stored {result.stored:,} events, skipped {result.duplicates:,} duplicates "
        f"(already stored) in {seconds:.1f} s{rate}"
    )


@app.command()
def events(
    tenant: Annotated[UUID, typer.Option("--tenant", help="The tenant whose events to list.")],
    since: Annotated[
        str | None, typer.Option("--since", help="From this time (inclusive).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Up to this time (exclusive).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many events.")] = 100,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List a tenant's stored events in time order.

    Example: `xavyo-siem events --tenant 3f0c…  --since 2026-01-01T00:00:00Z --limit 20`
    """
    start, end = _parse_time("--since", since), _parse_time("--until", until)
    engine = open_store(db)
    with engine.connect() as conn:
        found, _ = read_events_in_range(conn, tenant_id=tenant, start=start, end=end, limit=limit)
    if json:
        out = sys.stdout.buffer
        for event in found:
            out.write(orjson.dumps(event.to_dict()) + b"\n")
        return
    table = Table("time (UTC)", "type", "outcome", "actor", "source", "event id", box=None)
    for event in found:
        table.add_row(
            format_timestamp(event.timestamp),
            event.event_type,
            event.outcome or "",
            event.actor_email or event.actor_id or "",
            event.source_ip or "",
            str(event.event_id),
        )
    _out().print(table)
    err.print(f"{len(found)} event(s)")


@db_app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Bring the store's schema up to date (PostgreSQL needs this after every update).

    Example: `xavyo-siem db upgrade --db postgresql://siem@db.internal/siem`
    """
    before, after = upgrade(make_engine(db))
    if before == after:
        err.print(f"database already at revision {after}")
    else:
        err.print(f"database upgraded from {before or 'empty'} to revision {after}")


# -- destinations ------------------------------------------------------------------------------

TenantOption = Annotated[UUID, typer.Option("--tenant", help="The tenant (UUID).")]
DestinationArg = Annotated[str, typer.Argument(help="The destination's name or id.")]


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise SiemError(str(exc)) from None


def _keyring(settings: Settings, *, required: bool) -> KeyRing | None:
    try:
        return load_key_ring(settings)
    except CryptoError:
        if required:
            raise
        return None


def _read_secret(path: str | None) -> str | None:
    """The credential from a file or standard input (`-`); never from the command line."""
    if path is None:
        return None
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    secret = text.strip()
    if not secret:
        raise typer.BadParameter("the secret is empty", param_hint="--secret-file")
    return secret


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"must be KEY=VALUE, got {pair!r}", param_hint="--option")
        options[key.strip()] = value
    return options


def _parse_rate(text: str | None) -> RateLimit | None:
    if text is None:
        return None
    rate, _, burst = text.partition(":")
    try:
        events_per_s = float(rate)
        size = int(burst) if burst else max(1, int(events_per_s))
    except ValueError:
        raise typer.BadParameter(
            "must be EVENTS_PER_S or EVENTS_PER_S:BURST, e.g. 500:1000", param_hint="--rate-limit"
        ) from None
    return RateLimit(events_per_s, size)


def _parse_filters(
    categories: list[str] | None, event_types: list[str] | None, min_severity: int | None
) -> EventFilter | None:
    if categories is None and event_types is None and min_severity is None:
        return None
    try:
        return EventFilter.from_dict(
            {
                "categories": categories or [],
                "event_types": event_types or [],
                "min_severity": min_severity or 0,
            }
        )
    except InvalidFilter as exc:
        raise typer.BadParameter(exc.reason, param_hint=exc.field) from None


def _find(engine: Engine, tenant: UUID, name_or_id: str) -> SiemDestination:
    with engine.connect() as conn:
        found = dest_rows.find_destination(conn, tenant_id=tenant, name=name_or_id)
        if found is None:
            try:
                found = dest_rows.get_destination(
                    conn, tenant_id=tenant, destination_id=UUID(name_or_id)
                )
            except ValueError:
                found = None
    if found is None:
        raise InvalidDestination(
            "destination", f"tenant {tenant} has no destination {name_or_id!r}"
        )
    return found


def _print_json_lines(items: list[dict[str, Any]]) -> None:
    out = sys.stdout.buffer
    for item in items:
        out.write(orjson.dumps(item) + b"\n")


def _show_destination(destination: SiemDestination) -> None:
    data = destination.to_dict()
    for key, value in data.items():
        shown = orjson.dumps(value).decode() if isinstance(value, dict | list) else value
        _out().print(f"{key:>14}: {shown}")


CategoryOption = Annotated[
    list[str] | None,
    typer.Option("--category", help="Only events of this category (repeatable)."),
]
EventTypeOption = Annotated[
    list[str] | None,
    typer.Option("--event-type", help="Only events of this type (repeatable)."),
]
MinSeverityOption = Annotated[
    int | None, typer.Option("--min-severity", min=0, max=10, help="Only events this severe.")
]
RateOption = Annotated[
    str | None,
    typer.Option("--rate-limit", help="At most EVENTS_PER_S[:BURST] events to this destination."),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="A per-type setting KEY=VALUE (repeatable)."),
]
SecretOption = Annotated[
    str | None,
    typer.Option(
        "--secret-file",
        help="Read the credential (HEC token, webhook secrets) from this file, or - for stdin.",
    ),
]


@destination_app.command("add")
def destination_add(
    tenant: TenantOption,
    name: Annotated[str, typer.Option("--name", help="A name, unique within the tenant.")],
    delivery_type: Annotated[
        DeliveryType, typer.Option("--type", help="How events are delivered.")
    ],
    format: Annotated[ExportFormat, typer.Option("--format", help="How events are written.")],
    endpoint: Annotated[
        str,
        typer.Option(
            "--endpoint",
            help="tcp://host:port, tls://host:port, udp://host:port, https://…, file:///path",
        ),
    ],
    secret_file: SecretOption = None,
    option: OptionOption = None,
    category: CategoryOption = None,
    event_type: EventTypeOption = None,
    min_severity: MinSeverityOption = None,
    rate_limit: RateOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Add a destination for a tenant. It starts at "now" unless `--option start=beginning`
    (or `start=<ISO time>`) asks for history.

    The credential is read from `--secret-file` (or stdin with `-`), never from the command
    line, and stored encrypted with the key in `XAVYO_SIEM_SECRET_KEY`.

    Example: `xavyo-siem destination add --tenant 3f0c… --name splunk --type splunk_hec
    --format json --endpoint https://splunk.example:8088 --secret-file token.txt
    --option index=audit --option ack=true --rate-limit 2000:4000`
    """
    settings = _settings()
    secret = _read_secret(secret_file)
    spec = DestinationSpec(
        name=name,
        delivery_type=delivery_type,
        format=format,
        endpoint=endpoint,
        options=_parse_options(option or []),
        filters=_parse_filters(category, event_type, min_severity) or EventFilter(),
        rate_limit=_parse_rate(rate_limit),
        enabled=not disabled,
    )
    engine = open_store(db)
    added = manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=spec,
        secret=secret,
        keyring=None if secret is None else _keyring(settings, required=True),
        development=settings.development,
        egress=EgressGuard.from_settings(settings),
    )
    if json:
        _print_json_lines([added.to_dict()])
    else:
        err.print(f"added destination {added.name} ({added.id})")


@destination_app.command("list")
def destination_list(
    tenant: Annotated[
        UUID | None, typer.Option("--tenant", help="Only this tenant (default: every tenant).")
    ] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List destinations, by tenant and name.

    Example: `xavyo-siem destination list --tenant 3f0c… --json`
    """
    engine = open_store(db)
    with engine.connect() as conn:
        tenants = [tenant] if tenant else dest_rows.all_tenant_ids(conn)
        found = [d for t in tenants for d in dest_rows.list_destinations(conn, tenant_id=t)]
    if json:
        _print_json_lines([d.to_dict() for d in found])
        return
    table = Table("tenant", "name", "type", "format", "endpoint", "enabled", "id", box=None)
    for d in found:
        table.add_row(
            str(d.tenant_id), d.name, d.delivery_type.value, d.format.value, d.endpoint,
            "yes" if d.enabled else "no", str(d.id),
        )  # fmt: skip
    _out().print(table)


@destination_app.command("show")
def destination_show(
    tenant: TenantOption,
    destination: DestinationArg,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Show one destination's settings (never its credential, only whether it has one).

    Example: `xavyo-siem destination show --tenant 3f0c… splunk`
    """
    found = _find(open_store(db), tenant, destination)
    if json:
        _print_json_lines([found.to_dict()])
    else:
        _show_destination(found)


@destination_app.command("update")
def destination_update(
    tenant: TenantOption,
    destination: DestinationArg,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    format: Annotated[ExportFormat | None, typer.Option("--format", help="A new format.")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="A new endpoint.")] = None,
    secret_file: SecretOption = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Set KEY=VALUE; KEY= (empty) removes it."),
    ] = None,
    category: CategoryOption = None,
    event_type: EventTypeOption = None,
    min_severity: MinSeverityOption = None,
    rate_limit: Annotated[
        str | None, typer.Option("--rate-limit", help="EVENTS_PER_S[:BURST], or none.")
    ] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Change a destination's settings; what is not given stays as it is.

    Example: `xavyo-siem destination update --tenant 3f0c… splunk --secret-file new-token.txt`
    """
    settings = _settings()
    engine = open_store(db)
    current = _find(engine, tenant, destination)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if format is not None:
        changes["format"] = format
    if endpoint is not None:
        changes["endpoint"] = endpoint
    if option:
        changes["options"] = {
            k: (v if v != "" else None) for k, v in _parse_options(option).items()
        }
    filters = _parse_filters(category, event_type, min_severity)
    if filters is not None:
        changes["filters"] = filters.to_dict()
    if rate_limit is not None:
        changes["rate_limit"] = None if rate_limit == "none" else _parse_rate(rate_limit)
    secret = _read_secret(secret_file)
    updated = manage.update_destination(
        engine,
        tenant_id=tenant,
        destination_id=current.id,
        changes=changes,
        secret=secret,
        keyring=None if secret is None else _keyring(settings, required=True),
        development=settings.development,
        egress=EgressGuard.from_settings(settings),
    )
    if json:
        _print_json_lines([updated.to_dict()])
    else:
        err.print(f"updated destination {updated.name}")


def _set_enabled(tenant: UUID, destination: str, db: str, *, enabled: bool) -> None:
    engine = open_store(db)
    current = _find(engine, tenant, destination)
    manage.set_enabled(engine, tenant_id=tenant, destination_id=current.id, enabled=enabled)
    err.print(f"{'enabled' if enabled else 'disabled'} destination {current.name}")


@destination_app.command("enable")
def destination_enable(
    tenant: TenantOption, destination: DestinationArg, db: DbOption = DEFAULT_DATABASE_URL
) -> None:
    """Resume delivery to a destination from where it stopped.

    Example: `xavyo-siem destination enable --tenant 3f0c… splunk`
    """
    _set_enabled(tenant, destination, db, enabled=True)


@destination_app.command("disable")
def destination_disable(
    tenant: TenantOption, destination: DestinationArg, db: DbOption = DEFAULT_DATABASE_URL
) -> None:
    """Pause delivery to a destination; its cursor is kept, so nothing is skipped.

    Example: `xavyo-siem destination disable --tenant 3f0c… splunk`
    """
    _set_enabled(tenant, destination, db, enabled=False)


@destination_app.command("remove")
def destination_remove(
    tenant: TenantOption, destination: DestinationArg, db: DbOption = DEFAULT_DATABASE_URL
) -> None:
    """Delete a destination with its cursor, health and dead letters.

    Example: `xavyo-siem destination remove --tenant 3f0c… old-splunk`
    """
    engine = open_store(db)
    current = _find(engine, tenant, destination)
    manage.remove_destination(engine, tenant_id=tenant, destination_id=current.id)
    err.print(f"removed destination {current.name}")


@destination_app.command("test")
def destination_test(
    tenant: TenantOption,
    destination: DestinationArg,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Check the settings, connect, and send one test event (type XAVYO_SIEM_TEST).

    Exits 1 when a step fails. Example: `xavyo-siem destination test --tenant 3f0c… splunk`
    """
    settings = _settings()
    engine = open_store(db)
    found = _find(engine, tenant, destination)
    steps = asyncio.run(
        manage.test_destination(
            engine, found, settings=settings, keyring=_keyring(settings, required=False)
        )
    )
    if json:
        _print_json_lines([{"step": s.step, "ok": s.ok, "detail": s.detail} for s in steps])
    else:
        for step in steps:
            mark = "[green]ok[/]" if step.ok else "[red]FAILED[/]"
            err.print(f"{step.step:>14}: {mark}  {step.detail}", highlight=False)
    if not all(step.ok for step in steps):
        raise typer.Exit(1)


# -- run, health, dead letters -------------------------------------------------------------------


@app.command()
def run(
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit once every destination has caught up.")
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.01, help="Seconds between reads when idle.")
    ] = 0.5,
    retry_base: Annotated[
        float, typer.Option("--retry-base", min=0.001, help="First retry delay ceiling, seconds.")
    ] = 0.5,
    retry_cap: Annotated[
        float, typer.Option("--retry-cap", min=0.001, help="Longest retry delay, seconds.")
    ] = 60.0,
    probe_cap: Annotated[
        float,
        typer.Option(
            "--probe-cap", min=0.001, help="Longest wait between probes of a misconfigured one."
        ),
    ] = 300.0,
    lease_ttl: Annotated[
        float, typer.Option("--lease-ttl", min=1, help="Seconds a dead worker's leases last.")
    ] = 30.0,
    api: Annotated[bool, typer.Option("--api", help="Also serve the HTTP API.")] = False,
    api_host: Annotated[
        str, typer.Option("--api-host", help="With --api: the address to listen on.")
    ] = "127.0.0.1",
    api_port: Annotated[
        int, typer.Option("--api-port", min=1, max=65535, help="With --api: the port.")
    ] = 8080,
    api_export_dir: Annotated[
        Path, typer.Option("--api-export-dir", help="With --api: where file exports go.")
    ] = Path("exports"),
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Deliver every enabled destination's events, continuously (Ctrl-C or SIGTERM stops).

    Several workers may share a PostgreSQL store: each destination is leased to one worker
    at a time. On SQLite one worker runs at a time.

    With `--api` the HTTP API is served too, in the same process. In production a
    credential key is required (XAVYO_SIEM_SECRET_KEY or XAVYO_SIEM_SECRET_KEY_FILE).

    Example: `xavyo-siem run --metrics-port 9464`, or `xavyo-siem run --drain` from cron.
    """
    settings = _settings()
    engine = open_store(db)
    lock = None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            lock = single_worker_lock(Path(database).resolve())
    keyring, egress = _startup_secrets(settings)
    if metrics_port is not None:
        start_http_server(metrics_port)
    worker = Worker(
        engine=engine,
        open_components=lambda destination: manage.open_destination(
            engine, destination, settings=settings, keyring=keyring, egress=egress
        ),
        settings=WorkerSettings(
            lease_ttl_s=lease_ttl,
            scan_interval_s=min(2.0, max(poll_interval, 0.2)),
            pipeline=PipelineSettings(
                poll_interval_s=poll_interval,
                retry=RetryPolicy(
                    base_s=retry_base, cap_s=retry_cap, misconfigured_cap_s=probe_cap
                ),
            ),
        ),
    )

    server = (
        _api_server(settings, engine, keyring, egress, api_host, api_port, api_export_dir)
        if api
        else None
    )

    async def main_loop() -> list[str]:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            worker.stop()
            if server is not None:
                server.should_exit = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        serving = None if server is None else asyncio.create_task(server.serve())
        try:
            return await worker.run(drain=drain)
        finally:
            if server is not None and serving is not None:
                server.should_exit = True
                await serving

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    err.print(f"worker {worker.owner} started ({'draining' if drain else 'continuous'})")
    try:
        stuck = asyncio.run(main_loop())
    finally:
        if lock is not None:
            lock.close()
    if stuck:
        for reason in stuck:
            err.print(f"stuck: {reason}")
        raise typer.Exit(1)


@app.command()
def health(
    tenant: Annotated[
        UUID | None, typer.Option("--tenant", help="Only this tenant (default: every tenant).")
    ] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Show how delivery to each destination is going: successes, failures, circuit, lag.

    Exits 1 when a destination is failing. Example: `xavyo-siem health --json`
    """
    engine = open_store(db)
    with engine.connect() as conn:
        tenants = [tenant] if tenant else dest_rows.all_tenant_ids(conn)
        reports = [
            manage.destination_health(conn, d)
            for t in tenants
            for d in dest_rows.list_destinations(conn, tenant_id=t)
        ]
    if json:
        _print_json_lines([r.to_dict() for r in reports])
    else:
        table = Table(
            "name", "status", "circuit", "delivered", "failures", "last success", "lag",
            "lag s", "events/s", "dead", "last error", box=None,
        )  # fmt: skip
        for r in reports:
            table.add_row(
                r.name,
                "[red]failing[/]" if r.failing else ("ok" if r.enabled else "disabled"),
                r.circuit_state.value,
                f"{r.successes:,}",
                f"{r.failures:,}",
                format_timestamp(r.last_success)[:19] if r.last_success else "-",
                f"{r.lag_events:,}",
                f"{r.lag_seconds:,.1f}",
                f"{r.throughput_eps:,.0f}",
                str(r.dead_letters),
                (r.last_error or "")[:60],
            )
        _out().print(table)
    if any(r.failing and r.enabled for r in reports):
        raise typer.Exit(1)


@dead_letters_app.command("list")
def dead_letters_list(
    tenant: TenantOption,
    destination: DestinationArg,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List the events a destination refused for good, with the reason.

    Example: `xavyo-siem dead-letters list --tenant 3f0c… splunk`
    """
    engine = open_store(db)
    found = _find(engine, tenant, destination)
    with engine.connect() as conn:
        letters = dl_rows.list_dead_letters(
            conn, tenant_id=tenant, destination_id=found.id, limit=limit
        )
    if json:
        _print_json_lines([letter.to_dict() for letter in letters])
        return
    table = Table("id", "event id", "when", "reason", box=None)
    for letter in letters:
        table.add_row(
            str(letter.id), str(letter.event_id), format_timestamp(letter.created_at)[:19],
            letter.reason,
        )  # fmt: skip
    _out().print(table)


IdsOption = Annotated[
    list[int] | None, typer.Option("--id", help="Only this dead letter (repeatable; default all).")
]


@dead_letters_app.command("replay")
def dead_letters_replay(
    tenant: TenantOption,
    destination: DestinationArg,
    id: IdsOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Send dead letters again: the running worker sends them before new events, under the
    destination's rate limit, and removes each one the destination accepts.

    Example: `xavyo-siem dead-letters replay --tenant 3f0c… splunk`
    """
    engine = open_store(db)
    found = _find(engine, tenant, destination)
    with writing(engine) as conn:
        count = dl_rows.request_replay(conn, tenant_id=tenant, destination_id=found.id, ids=id)
    err.print(f"{count} dead letter(s) queued for replay to {found.name}")


@dead_letters_app.command("purge")
def dead_letters_purge(
    tenant: TenantOption,
    destination: DestinationArg,
    id: IdsOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Delete dead letters for good (the events stay in the store).

    Example: `xavyo-siem dead-letters purge --tenant 3f0c… splunk --id 12`
    """
    engine = open_store(db)
    found = _find(engine, tenant, destination)
    with writing(engine) as conn:
        count = dl_rows.remove_dead_letters(conn, tenant_id=tenant, destination_id=found.id, ids=id)
    err.print(f"purged {count} dead letter(s) of {found.name}")


# -- API, tokens, keys ---------------------------------------------------------------------------

tokens_app = typer.Typer(
    help="API tokens: create (shown once), list, revoke.", no_args_is_help=True
)
app.add_typer(tokens_app, name="tokens")
keys_app = typer.Typer(
    help="The credential key ring: make a key, rotate stored credentials, status.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def _startup_secrets(settings: Settings) -> tuple[KeyRing, EgressGuard]:
    """The key ring and SSRF guard a long-running process needs, or a clear refusal.

    In production a missing key is an error (`CryptoError` names the settings); in
    development a key file is made on first use.
    """
    return load_key_ring(settings), EgressGuard.from_settings(settings)


def _api_server(
    settings: Settings,
    engine: Engine,
    keyring: KeyRing,
    egress: EgressGuard,
    host: str,
    port: int,
    export_dir: Path,
) -> Any:
    """A uvicorn server for the API that leaves signal handling to the command."""
    import uvicorn

    from xavyo_siem.api import create_app

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    api = create_app(settings, engine, keyring=keyring, egress=egress, export_dir=export_dir)
    config = uvicorn.Config(
        api, host=host, port=port, log_level="info", server_header=False, lifespan="off"
    )
    return Server(config)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port.")] = 8080,
    export_dir: Annotated[
        Path, typer.Option("--export-dir", help="Where file exports asked over the API go.")
    ] = Path("exports"),
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Serve the HTTP API (OpenAPI document at /openapi.json) until Ctrl-C or SIGTERM.

    In production a credential key is required (XAVYO_SIEM_SECRET_KEY or
    XAVYO_SIEM_SECRET_KEY_FILE). Put a TLS-terminating proxy in front of it. Export jobs
    are carried out by `xavyo-siem run` workers (their files go under `--export-dir`,
    which the workers must be able to write).

    Example: `xavyo-siem serve --host 0.0.0.0 --port 8080`
    """
    settings = _settings()
    keyring, egress = _startup_secrets(settings)
    engine = open_store(db)
    server = _api_server(settings, engine, keyring, egress, host, port, export_dir)

    async def main_loop() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
        await server.serve()

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main_loop())


@tokens_app.command("create")
def tokens_create(
    role: Annotated[Role, typer.Option("--role", help="admin changes; viewer only reads.")],
    tenant: Annotated[
        UUID | None, typer.Option("--tenant", help="The tenant the token acts on.")
    ] = None,
    platform: Annotated[
        bool, typer.Option("--platform", help="A platform token: acts on every tenant.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Who or what uses it.")] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Make an API token and print it. It is shown only now: the store keeps only its hash.

    Example: `xavyo-siem tokens create --tenant 3f0c… --role viewer --name soc-dashboard`
    """
    if (tenant is None) == (not platform):
        raise typer.BadParameter("give either --tenant T or --platform", param_hint="--tenant")
    engine = open_store(db)
    with writing(engine) as conn:
        record, token = issue_token(
            conn, tenant_id=tenant, role=role, name=name, now=datetime.now(UTC)
        )
    if json:
        _print_json_lines([{**record.to_dict(), "token": token}])
        return
    typer.echo(token)
    whom = "every tenant (platform)" if tenant is None else f"tenant {tenant}"
    err.print(f"token {record.id}, {record.role.value} of {whom}: shown once, keep it safe")


@tokens_app.command("list")
def tokens_list(
    tenant: Annotated[UUID | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List API tokens (never the tokens themselves), revoked ones included.

    Example: `xavyo-siem tokens list --tenant 3f0c… --json`
    """
    with open_store(db).connect() as conn:
        found = list_tokens(conn, tenant_id=tenant)
    if json:
        _print_json_lines([t.to_dict() for t in found])
        return
    table = Table("id", "tenant", "role", "name", "created", "revoked", box=None)
    for t in found:
        table.add_row(
            str(t.id), "platform" if t.tenant_id is None else str(t.tenant_id), t.role.value,
            t.name or "", format_timestamp(t.created_at)[:19],
            format_timestamp(t.revoked_at)[:19] if t.revoked_at else "",
        )  # fmt: skip
    _out().print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[UUID, typer.Argument(help="The token's id (from `tokens list`).")],
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Revoke an API token for good; requests with it are refused from now on.

    Example: `xavyo-siem tokens revoke 8d1e…`
    """
    with writing(open_store(db)) as conn:
        revoked = revoke_token(conn, token_id=token_id, now=datetime.now(UTC))
    if not revoked:
        err.print(f"error: no live token {token_id}")
        raise typer.Exit(1)
    err.print(f"revoked token {token_id}")


@keys_app.command("new")
def keys_new() -> None:
    """Print a new random AES-256 key as a key-ring entry (`<id>:<base64>`).

    Append it to the key ring (the last key is the primary one), then run `keys rotate`.

    Example: `xavyo-siem keys new >> /etc/xavyo-siem/keys`
    """
    typer.echo(new_key_text())


@keys_app.command("rotate")
def keys_rotate(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Re-encrypt every stored credential with the newest key of the ring, in one transaction.

    Older keys keep opening what they sealed until removed from the ring; remove one once
    `keys status` shows no credential under it.

    Example: `XAVYO_SIEM_SECRET_KEY_FILE=/etc/xavyo-siem/keys xavyo-siem keys rotate`
    """
    keyring = load_key_ring(_settings())
    report = rotate_credentials(open_store(db), keyring)
    for key_id, count in report.resealed.items():
        err.print(f"re-encrypted {count} credential(s) from key {key_id} to key {report.primary}")
    changed = report.changed_meanwhile
    meanwhile = f", {changed} changed meanwhile" if changed else ""
    err.print(
        f"{report.total_resealed} re-encrypted, {report.already_primary} already under key"
        f" {report.primary}{meanwhile}"
    )


@keys_app.command("status")
def keys_status(json: JsonOption = False, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Show the ring's key ids and how many stored credentials each one sealed.

    Exits 1 when a credential is sealed by a key missing from the ring.

    Example: `xavyo-siem keys status --json`
    """
    keyring = load_key_ring(_settings())
    counts = count_credentials_by_key(open_store(db), keyring)
    key_ids = [*keyring.keys, *(k for k in counts if k not in keyring.keys)]
    rows: list[dict[str, Any]] = [
        {
            "key_id": key_id,
            "in_ring": key_id in keyring.keys,
            "primary": key_id == keyring.primary,
            "credentials": counts.get(key_id, 0),
        }
        for key_id in key_ids
    ]
    if json:
        _print_json_lines(rows)
    else:
        table = Table("key id", "in ring", "primary", "credentials", box=None)
        for row in rows:
            table.add_row(
                row["key_id"], "yes" if row["in_ring"] else "[red]MISSING[/]",
                "yes" if row["primary"] else "", str(row["credentials"]),
            )  # fmt: skip
        _out().print(table)
    if any(not row["in_ring"] for row in rows):
        raise typer.Exit(1)


# -- batch exports and jobs ----------------------------------------------------------------------

export_app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring
app.add_typer(export_app, name="export")
jobs_app = typer.Typer(help="Batch export jobs: list, show, cancel.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

JobArg = Annotated[UUID, typer.Argument(help="The job's id.", show_default=False)]
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


class _EventRate(ProgressColumn):
    """Events per second of a progress task."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:,.0f} events/s")


def _job_line(job: BatchExportJob) -> str:
    target = job.target if job.target_kind is ExportTarget.FILE else f"destination {job.target}"
    span = f"[{format_timestamp(job.start)}, {format_timestamp(job.end)})"
    return f"tenant {job.tenant_id} {span} as {job.format.value} to {target}"


def _print_job(job: BatchExportJob) -> None:
    for key, value in job.to_dict().items():
        shown = orjson.dumps(value).decode() if isinstance(value, dict | list) else value
        _out().print(f"{key:>16}: {'' if shown is None else shown}")


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


@export_app.callback()
def export(
    ctx: typer.Context,
    tenant: Annotated[UUID | None, typer.Option("--tenant", help="The tenant (UUID).")] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Events at or after this time (ISO 8601).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Events before this time (ISO 8601).")
    ] = None,
    format: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="File format (default csv); a destination uses its own."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (and its manifest).")
    ] = None,
    destination: Annotated[
        str | None, typer.Option("--destination", help="Deliver to this destination (name or id).")
    ] = None,
    category: CategoryOption = None,
    event_type: EventTypeOption = None,
    min_severity: MinSeverityOption = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="A format option KEY=VALUE (repeatable), e.g. formula_guard=false (CSV for "
            "programs, not spreadsheets: values are written unguarded).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    queue: Annotated[
        bool, typer.Option("--queue", help="Only queue the job, for the workers of `run`.")
    ] = False,
    resume: Annotated[
        UUID | None,
        typer.Option("--resume", help="Continue this job from its checkpoint (its runner died)."),
    ] = None,
    chunk_events: Annotated[
        int, typer.Option("--chunk-events", min=1, help="Events per page and checkpoint.")
    ] = 10_000,
    lease_ttl: Annotated[
        float, typer.Option("--lease-ttl", min=1, help="Seconds a dead exporter's job stays held.")
    ] = 30.0,
    json: Annotated[bool, typer.Option("--json", help="Print the job as JSON at the end.")] = False,
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
        settings = _settings()
        engine = open_store(db)
        ttl = timedelta(seconds=lease_ttl)
        opened: list[tuple[KeyRing, EgressGuard]] = []

        async def components(target: SiemDestination) -> tuple[Any, Any]:
            if not opened:
                opened.append(_startup_secrets(settings))
            keyring, egress = opened[0]
            return await manage.open_destination(
                engine, target, settings=settings, keyring=keyring, egress=egress
            )

        exporter = BatchExporter(
            engine=engine,
            settings=ExportSettings(chunk_events=chunk_events, lease_ttl_s=lease_ttl),
            open_components=components,
        )
        if resume is not None:
            found = find_export_job(engine, job_id=resume, tenant_id=tenant)
            job = resume_export_job(
                engine, tenant_id=found.tenant_id, job_id=resume, owner=exporter.owner, ttl=ttl
            )
        else:
            if tenant is None:
                raise typer.BadParameter("is required (or --resume JOB)", param_hint="--tenant")
            start, end = _parse_time("--from", from_), _parse_time("--to", to)
            if start is None or end is None:
                missing = "--from" if start is None else "--to"
                raise typer.BadParameter("is required", param_hint=missing)
            request = ExportRequest(
                tenant_id=tenant,
                start=start,
                end=end,
                output=output,
                destination=destination,
                format=format,
                filters=_parse_filters(category, event_type, min_severity),
                options=_parse_options(option or []),
                overwrite=force,
            )
            job = create_export_job(
                engine, request, owner=None if queue else exporter.owner, ttl=ttl
            )
            if queue:
                err.print(f"queued job {job.id}: {_job_line(job)}")
                if json:
                    _print_json_lines([job.to_dict()])
                return
    if job.checkpoint is not None:
        err.print(f"resuming job {job.id} after {job.exported:,} events")
    else:
        err.print(f"job {job.id}: {_job_line(job)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = _export_progress() if err.is_terminal else None
    began = time.perf_counter()

    async def carry() -> BatchExportJob:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, exporter.stop)
        if progress is None:
            return await exporter.run(job)
        bar = progress.add_task("exporting", total=job.estimated_total, completed=job.exported)

        def show(done: int, total: int | None) -> None:
            progress.update(bar, completed=done, total=total)

        return await exporter.run(job, on_progress=show)

    with progress or nullcontext():
        finished = asyncio.run(carry())
    if json:
        _print_json_lines([finished.to_dict()])
    _export_summary(finished, time.perf_counter() - began)


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
        _print_json_lines(
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
    tenant: Annotated[
        UUID | None, typer.Option("--tenant", help="Only this tenant (default: every tenant).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many per tenant.")
    ] = 50,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List batch export jobs, newest first, with their status and progress.

    Example: `xavyo-siem jobs list --tenant 3f0c… --json`
    """
    engine = open_store(db)
    with engine.connect() as conn:
        tenants = [tenant] if tenant else job_rows.job_tenant_ids(conn)
        found = [j for t in tenants for j in job_rows.list_jobs(conn, tenant_id=t, limit=limit)]
    if json:
        _print_json_lines([j.to_dict() for j in found])
        return
    table = Table("id", "tenant", "status", "progress", "format", "from", "to", "target", box=None)
    for j in found:
        total = "?" if j.estimated_total is None else f"{j.estimated_total:,}"
        table.add_row(
            str(j.id), str(j.tenant_id), j.status.value, f"{j.exported:,}/{total}",
            j.format.value, format_timestamp(j.start)[:19], format_timestamp(j.end)[:19],
            j.target,
        )  # fmt: skip
    _out().print(table)


@jobs_app.command("show")
def jobs_show(
    job: JobArg,
    tenant: Annotated[UUID | None, typer.Option("--tenant", help="The job's tenant.")] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Show one job: target, range, filters, status, progress, error, times.

    Example: `xavyo-siem jobs show 7d2e…`
    """
    with _export_errors():
        found = find_export_job(open_store(db), job_id=job, tenant_id=tenant)
    if json:
        _print_json_lines([found.to_dict()])
    else:
        _print_job(found)


@jobs_app.command("cancel")
def jobs_cancel(
    job: JobArg,
    tenant: Annotated[UUID | None, typer.Option("--tenant", help="The job's tenant.")] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Cancel a job: a queued one at once; a running one stops at its next checkpoint and
    deletes its partial file (a destination keeps what it already received).

    Example: `xavyo-siem jobs cancel 7d2e…`
    """
    with _export_errors():
        engine = open_store(db)
        found = find_export_job(engine, job_id=job, tenant_id=tenant)
        after = cancel_export_job(engine, tenant_id=found.tenant_id, job_id=job)
    if after.status is JobStatus.CANCELLED:
        err.print(f"cancelled job {job}")
    else:
        err.print(f"asked job {job} to stop; it cancels itself at its next checkpoint")


def _progress(*, bytes_mode: bool) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    columns.append(TransferSpeedColumn() if bytes_mode else MofNCompleteColumn())
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err, transient=True)


def tune_gc() -> None:
    """Make Python's cycle collector cheap for batch work; every command does this first.

    Reading or writing events allocates millions of small objects that hold no cycles, and
    each full collection would walk every object alive, all the imported modules included:
    that halved the store's read rate. Startup objects are frozen out of collection, and
    collections run ~100x less often; memory stays bounded by the batch sizes.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def main() -> None:
    """Console entry point: run the app, turning our errors into one clear line."""
    tune_gc()
    try:
        app()
    except (InvalidEvent, InvalidDestination, InvalidFilter) as exc:
        err.print(f"error: {exc}")
        sys.exit(2)
    except SiemError as exc:
        err.print(f"error: {exc}")
        sys.exit(1)
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
