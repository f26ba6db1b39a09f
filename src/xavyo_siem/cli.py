"""The `xavyo-siem` command line: thin commands over the package's functions."""

from __future__ import annotations

import os
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

from xavyo_siem import __version__
from xavyo_siem.errors import InvalidEvent, SiemError
from xavyo_siem.model import AuditEvent, format_timestamp
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import append_events, make_engine, open_store, read_events_in_range, upgrade

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

err = Console(stderr=True, highlight=False)

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
    Console(highlight=False).print(table)
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


def _progress(*, bytes_mode: bool) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    columns.append(TransferSpeedColumn() if bytes_mode else MofNCompleteColumn())
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err, transient=True)


def main() -> None:
    """Console entry point: run the app, turning our errors into one clear line."""
    try:
        app()
    except InvalidEvent as exc:
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
