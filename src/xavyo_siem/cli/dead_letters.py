"""`xavyo-siem dead-letters`: list, replay and purge the events a destination refused for
good (the API's `/v1/tenants/{tenant_id}/destinations/{destination_id}/dead-letters`).

Replay only marks them: the running worker sends them before new events, through the
destination's rate limit, and removes each one the destination accepts.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from xavyo_siem.cli.options import DbOption, DestinationArg, JsonOption, TenantOption
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.destinations import find_destination, purge_dead_letters, replay_dead_letters
from xavyo_siem.model import SiemDestination, format_timestamp
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import dead_letters as rows
from xavyo_siem.store import open_store
from xavyo_siem.trail import Actor

__all__ = ["app"]

app = typer.Typer(
    help="Events a destination refused for good: list, replay, purge.", no_args_is_help=True
)

IdsOption = Annotated[
    list[int] | None, typer.Option("--id", help="Only this dead letter (repeatable; default all).")
]


@app.command("list")
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
    engine = open_store(db, create=False)
    found = find_destination(engine, tenant_id=tenant, name_or_id=destination)
    with engine.connect() as conn:
        letters = rows.list_dead_letters(
            conn, tenant_id=tenant, destination_id=found.id, limit=limit
        )
    if json:
        print_json_lines(letter.to_dict() for letter in letters)
        return
    table = Table("id", "event id", "when", "reason", box=None)
    for letter in letters:
        table.add_row(
            str(letter.id), str(letter.event_id), format_timestamp(letter.created_at)[:19],
            letter.reason,
        )  # fmt: skip
    out().print(table)


@app.command("replay")
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
    found = find_destination(engine, tenant_id=tenant, name_or_id=destination)
    _refuse_unknown(engine, found, id)
    count = replay_dead_letters(
        engine, tenant_id=tenant, destination_id=found.id, ids=id, actor=Actor.command_line()
    )
    err.print(f"{count} dead letter(s) queued for replay to {found.name}")


@app.command("purge")
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
    found = find_destination(engine, tenant_id=tenant, name_or_id=destination)
    _refuse_unknown(engine, found, id)
    count = purge_dead_letters(
        engine, tenant_id=tenant, destination_id=found.id, ids=id, actor=Actor.command_line()
    )
    err.print(f"purged {count} dead letter(s) of {found.name}")


def _refuse_unknown(engine: Engine, destination: SiemDestination, ids: list[int] | None) -> None:
    """Refuse `--id` values that are not dead letters of the destination, before any change."""
    if not ids:
        return
    with engine.connect() as conn:
        missing = rows.missing_ids(
            conn, tenant_id=destination.tenant_id, destination_id=destination.id, ids=ids
        )
    if missing:
        listed = ", ".join(str(i) for i in missing)
        raise typer.BadParameter(
            f"no dead letter {listed} for destination {destination.name} "
            "(`xavyo-siem dead-letters list` shows them)",
            param_hint="--id",
        )
