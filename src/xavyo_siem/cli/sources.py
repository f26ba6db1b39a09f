"""`xavyo-siem source`: add, list, show and remove the tables of the identity provider's own
database that `xavyo-siem run` tails into the store.

Every command calls one function of `xavyo_siem.sources.manage`, which checks the settings, the
SSRF guard and the peer table before it writes anything. The connection string is read
from a file, stored sealed, and never printed. Each command imports `manage` itself: it
loads the driver of the peer (psycopg, about 25 MB resident), which the other commands,
`run` among them, do without.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from xavyo_siem.cli.options import (
    DbOption,
    JsonOption,
    OptionOption,
    load_keyring,
    load_settings,
    parse_options,
)
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import TableSource, format_timestamp
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store

__all__ = ["app"]

app = typer.Typer(
    help="Tables of the identity provider's database tailed into the store: add, list, show,"
    " remove.",
    no_args_is_help=True,
)

SourceArg = Annotated[str, typer.Argument(help="The source's name or id.", show_default=False)]


def _read_dsn(path: str) -> str:
    """The connection string from a file (or `-`: standard input); never from the command
    line, where other users of the machine could read it."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    dsn = text.strip()
    if not dsn:
        raise typer.BadParameter("the connection string is empty", param_hint="--dsn-file")
    return dsn


@app.command("add")
def source_add(
    name: Annotated[str, typer.Option("--name", help="A name, unique among the sources.")],
    table: Annotated[
        str, typer.Option("--table", help="The peer table, SCHEMA.TABLE (e.g. audit.events).")
    ],
    dsn_file: Annotated[
        str,
        typer.Option(
            "--dsn-file",
            help="Read the peer's connection string (postgresql://user:password@host:5432/db,"
            " or key=value form) from this file, or - for stdin.",
        ),
    ],
    mapping: Annotated[
        list[str],
        typer.Option(
            "--map",
            help="FIELD=COLUMN (repeatable): event_id, tenant_id and timestamp at least;"
            " metadata.KEY=COLUMN adds a metadata entry, metadata=COLUMN a JSON column.",
        ),
    ],
    source_type: Annotated[
        str, typer.Option("--type", help="The kind of source: postgres_table.")
    ] = "postgres_table",
    option: OptionOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Add a table of the identity provider's PostgreSQL that `xavyo-siem run` tails.

    The table must carry each row's writing transaction (an xid8 column with DEFAULT
    pg_current_xact_id(), option xid_column, default xact_id) and a sequence number (option
    seq_column, default seq); a table without them is refused with the statements that add
    them. Options: xid_column, seq_column, batch_rows (default 5000), start (beginning or
    now). The peer's host must be allowed by XAVYO_SIEM_EGRESS_ALLOW when it is internal.

    Example: `xavyo-siem source add --name idp --type postgres_table --dsn-file idp.dsn
    --table audit.events --map event_id=id --map tenant_id=tenant --map timestamp=created_at
    --map event_type=kind --map actor_email=actor --map metadata=details`
    """
    from xavyo_siem.sources import manage

    settings = load_settings()
    spec = manage.SourceSpec(
        name=name,
        source_type=source_type,
        table=table,
        mapping=list(mapping),
        options=parse_options(option or []),
        enabled=not disabled,
    )
    added = manage.add_source(
        open_store(db),
        spec=spec,
        dsn=_read_dsn(dsn_file),
        keyring=load_keyring(settings, required=True),
        egress=EgressGuard.from_settings(settings),
    )
    if json:
        print_json_lines([added.to_dict()])
    else:
        err.print(
            f"added source {added.name} ({added.id}), reading {added.table} from {added.peer}"
        )


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


@app.command("list")
def source_list(json: JsonOption = False, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """List the sources with their cursor, how long since each last read everything its
    peer had (lag), what they read, and their last error. Never the connection string.

    Example: `xavyo-siem source list --json`
    """
    from xavyo_siem.sources import manage

    found = manage.list_sources(open_store(db))
    now = datetime.now(UTC)
    if json:
        print_json_lines(source.to_dict(now=now) for source in found)
        return
    table = Table("name", "peer", "table", "enabled", "cursor", "lag", "read", "quarantined",
                  "last error", box=None)  # fmt: skip
    for source in found:
        state = source.state
        table.add_row(
            source.name, source.peer, source.table, "yes" if source.enabled else "no",
            f"{state.position.xid}:{state.position.seq}", _ago(state.lag_s(now)),
            str(state.events_read), str(state.quarantined), _last_error(source),
        )  # fmt: skip
    out().print(table)


def _last_error(source: TableSource) -> str:
    state = source.state
    if state.last_error is None or state.last_error_at is None:
        return ""
    return f"{format_timestamp(state.last_error_at)} ({state.failures}x) {state.last_error}"


@app.command("show")
def source_show(source: SourceArg, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Show one source as JSON: its mapping, options, cursor, lag and last error.

    Example: `xavyo-siem source show idp`
    """
    from xavyo_siem.sources import manage

    found = manage.find_source(open_store(db), name_or_id=source)
    print_json_lines([found.to_dict(now=datetime.now(UTC))])


@app.command("remove")
def source_remove(source: SourceArg, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Remove a source; the events it already stored stay. A running worker stops tailing it
    at its next look at the list (within 10 s).

    Example: `xavyo-siem source remove idp`
    """
    from xavyo_siem.sources import manage

    removed = manage.remove_source(open_store(db), name_or_id=source)
    err.print(f"removed source {removed.name} ({removed.id})")
