"""`xavyo-siem tenant purge`: offboarding, every row and export file of one tenant."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from xavyo_siem.cli.options import DbOption, JsonOption
from xavyo_siem.cli.output import err, print_json_lines
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store
from xavyo_siem.tenants import purge_tenant
from xavyo_siem.trail import Actor

__all__ = ["app"]

app = typer.Typer(help="Tenants: purge (offboarding).", no_args_is_help=True)


@app.command("purge")
def tenant_purge(
    tenant: Annotated[UUID, typer.Argument(help="The tenant to remove.", show_default=False)],
    yes: Annotated[
        bool, typer.Option("--yes", help="Remove for good; without it, only say what would go.")
    ] = False,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Remove everything of a tenant: its events, destinations (with their cursors, health,
    leases and dead letters), export jobs and their files, and API tokens, in one
    transaction; the files after it. Another tenant's rows are never touched. Refused while
    one of the tenant's exports runs (`jobs cancel` it first).

    Without `--yes` nothing is removed: it prints what would be and exits with status 1.

    Example: `xavyo-siem tenant purge 3f0c…` (a dry run), then
    `xavyo-siem tenant purge 3f0c… --yes --json`
    """
    purge = purge_tenant(
        open_store(db), tenant_id=tenant, dry_run=not yes, actor=Actor.command_line()
    )
    if json:
        print_json_lines([purge.to_dict()])
    else:
        verb = "would remove" if purge.dry_run else "removed"
        err.print(f"tenant {tenant}: {verb}")
        for kind, count in purge.removed.items():
            typer.echo(f"  {kind:<18} {count}")
    if purge.dry_run:
        err.print("nothing removed: repeat with --yes to purge the tenant")
        raise typer.Exit(1)
