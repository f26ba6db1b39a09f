"""Commands on audit events: `sample` writes some, `ingest` stores a file of them, `events`
lists a tenant's (the API's `/v1/tenants/{tenant_id}/events`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Annotated, Any
from uuid import UUID

import orjson
import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from xavyo_siem.cli.options import DbOption, JsonOption, parse_time
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.ingest import events_of_lines, store_events
from xavyo_siem.model import format_timestamp
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store, read_events_in_range
from xavyo_siem.store.quarantine import QuarantineEntry

__all__ = ["ingest", "list_events", "sample"]

# Files larger than this show a progress bar while they are ingested (on a terminal).
_PROGRESS_BYTES = 4 << 20


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
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of stdout (- is stdout)."),
    ] = None,
) -> None:
    """Write realistic identity-provider audit events as JSON lines.

    Logins and failed logins, MFA, password resets, user and group changes, role grants,
    token issuance, admin actions and SoD violations, from IPv4 and IPv6 addresses.

    Example: `xavyo-siem sample --count 100000 --tenants 3 --seed 7 -o events.jsonl`
    """
    first = parse_time("--start", start) or DEFAULT_START
    to_stdout = output is None or str(output) == "-"
    target: Any = nullcontext(sys.stdout.buffer) if to_stdout else _create(output)
    with target as sink:
        buffer: list[bytes] = []
        for event in generate_events(count, tenants, seed, start=first):
            buffer.append(orjson.dumps(event.to_dict()))
            if len(buffer) >= 4096:
                sink.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            sink.write(b"\n".join(buffer) + b"\n")


def ingest(
    source: Annotated[str, typer.Argument(help="A JSON-lines file, or - for standard input.")],
    strict: Annotated[
        bool,
        typer.Option("--strict", help="All or nothing: one line that is no event stores nothing."),
    ] = False,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Store audit events from a JSON-lines file, each (tenant, event id) once.

    An event is never refused for its content: what it cannot carry is normalised, and the
    event's `normalized` names the fields changed. A line that cannot be an event at all
    (not JSON, not an object, no usable tenant, id or time) is kept verbatim in the
    quarantine (`xavyo-siem quarantine list`) with its reason; the rest of the file is
    stored and the command exits with status 1, printing the first reasons. An event whose
    id is stored with different content is a conflict, kept in the quarantine too (status
    1); the same content again is a duplicate, left as it is, so ingesting the same file
    twice is harmless. With `--strict`, one line that is no event stores nothing (status
    2), and the error names the line, the field and the rule.

    Example: `xavyo-siem sample -n 1000 | xavyo-siem ingest -`
    """
    engine = open_store(db)
    stream, size = _open_source(source)
    show = err.is_terminal and size is not None and size > _PROGRESS_BYTES
    progress = _bytes_progress() if show else None
    set_aside: list[QuarantineEntry] | None = None if strict else []
    name = "stdin" if source == "-" else Path(source).name
    began = time.perf_counter()
    with progress or nullcontext(), stream:
        shown = None if progress is None else _shown_in(progress, stream, size)
        events = events_of_lines(stream, on_progress=shown, set_aside=set_aside, source=name)
        result = store_events(engine, events, set_aside=set_aside, source=name)
    seconds = time.perf_counter() - began
    total = result.stored + result.duplicates
    rate = f", {total / seconds:,.0f} events/s" if seconds > 0 and total else ""
    if json:
        print_json_lines([result.to_dict()])
    err.print(
        f"stored {result.stored:,} events, skipped {result.duplicates:,} duplicates "
        f"(already stored) in {seconds:.1f} s{rate}"
    )
    if result.quarantined:
        err.print(
            f"quarantined {result.quarantined:,} ({result.conflicts:,} conflicts); "
            "see `xavyo-siem quarantine list`. First reasons:"
        )
        for reason in result.errors:
            err.print(f"  {reason}", markup=False)
        raise typer.Exit(1)


def _create(path: Path | None) -> IO[bytes]:
    """`path` opened for writing, or a clear error naming `--output` when it cannot be."""
    assert path is not None
    try:
        return path.open("wb")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {path}: {exc.strerror or exc}", param_hint="--output"
        ) from None


def _open_source(source: str) -> tuple[IO[bytes], int | None]:
    """The stream of `ingest SOURCE` and its size in bytes (None for standard input)."""
    if source == "-":
        return sys.stdin.buffer, None
    path = Path(source)
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {source}", param_hint="SOURCE")
    return path.open("rb", buffering=1 << 20), path.stat().st_size


def _shown_in(progress: Progress, stream: IO[bytes], size: int | None) -> Callable[[int], None]:
    """A progress task for the stream's bytes, and how to move it on at a line number."""
    task = progress.add_task("ingesting", total=size)

    def show(line: int) -> None:
        progress.update(task, completed=stream.tell() if stream.seekable() else line)

    return show


def _bytes_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def list_events(
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
    start, end = parse_time("--since", since), parse_time("--until", until)
    with open_store(db, create=False).connect() as conn:
        found, _ = read_events_in_range(conn, tenant_id=tenant, start=start, end=end, limit=limit)
    if json:
        print_json_lines(event.to_dict() for event in found)
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
    out().print(table)
    err.print(f"{len(found)} event(s)")
