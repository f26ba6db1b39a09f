"""The `xavyo-siem` command line: thin commands over the package's functions."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import datetime
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
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from sqlalchemy import Engine

from xavyo_siem import __version__
from xavyo_siem import destinations as manage
from xavyo_siem.crypto import CryptoError, KeyRing, load_key_ring
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.errors import InvalidDestination, InvalidEvent, InvalidFilter, SiemError
from xavyo_siem.model import (
    AuditEvent,
    DeliveryType,
    EventFilter,
    ExportFormat,
    RateLimit,
    SiemDestination,
    format_timestamp,
)
from xavyo_siem.pipeline.export import PipelineSettings
from xavyo_siem.pipeline.retry import RetryPolicy
from xavyo_siem.pipeline.worker import Worker, WorkerSettings, single_worker_lock
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.settings import DEFAULT_DATABASE_URL, Settings
from xavyo_siem.store import append_events, make_engine, open_store, read_events_in_range, upgrade
from xavyo_siem.store import dead_letters as dl_rows
from xavyo_siem.store import destinations as dest_rows

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
        if not line.strip():
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
        with engine.begin() as conn:
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
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Deliver every enabled destination's events, continuously (Ctrl-C or SIGTERM stops).

    Several workers may share a PostgreSQL store: each destination is leased to one worker
    at a time. On SQLite one worker runs at a time.

    Example: `xavyo-siem run --metrics-port 9464`, or `xavyo-siem run --drain` from cron.
    """
    settings = _settings()
    engine = open_store(db)
    lock = None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            lock = single_worker_lock(Path(database).resolve())
    keyring = _keyring(settings, required=False)
    if metrics_port is not None:
        start_http_server(metrics_port)
    worker = Worker(
        engine=engine,
        open_components=lambda destination: manage.open_destination(
            engine, destination, settings=settings, keyring=keyring
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

    async def main_loop() -> list[str]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        return await worker.run(drain=drain)

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
    with engine.begin() as conn:
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
    with engine.begin() as conn:
        count = dl_rows.remove_dead_letters(conn, tenant_id=tenant, destination_id=found.id, ids=id)
    err.print(f"purged {count} dead letter(s) of {found.name}")


def _progress(*, bytes_mode: bool) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    columns.append(TransferSpeedColumn() if bytes_mode else MofNCompleteColumn())
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err, transient=True)


def main() -> None:
    """Console entry point: run the app, turning our errors into one clear line."""
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
