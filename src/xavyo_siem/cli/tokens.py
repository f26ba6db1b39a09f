"""`xavyo-siem tokens`: the API's tokens: create (shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer
from rich.table import Table

from xavyo_siem.access import create_api_token, revoke_api_token
from xavyo_siem.cli.options import DbOption, JsonOption
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.model import format_timestamp
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store
from xavyo_siem.store.tokens import Role, list_tokens
from xavyo_siem.trail import Actor

__all__ = ["app"]

app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)


@app.command("create")
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
    record, token = create_api_token(
        open_store(db), tenant_id=tenant, role=role, name=name, actor=Actor.command_line()
    )
    if json:
        print_json_lines([{**record.to_dict(), "token": token}])
        return
    typer.echo(token)
    whom = "every tenant (platform)" if tenant is None else f"tenant {tenant}"
    err.print(f"token {record.id}, {record.role.value} of {whom}: shown once, keep it safe")


@app.command("list")
def tokens_list(
    tenant: Annotated[UUID | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List API tokens (never the tokens themselves), revoked ones included.

    Example: `xavyo-siem tokens list --tenant 3f0c… --json`
    """
    with open_store(db, create=False).connect() as conn:
        found = list_tokens(conn, tenant_id=tenant)
    if json:
        print_json_lines(t.to_dict() for t in found)
        return
    table = Table("id", "tenant", "role", "name", "created", "revoked", box=None)
    for t in found:
        table.add_row(
            str(t.id), "platform" if t.tenant_id is None else str(t.tenant_id), t.role.value,
            t.name or "", format_timestamp(t.created_at)[:19],
            format_timestamp(t.revoked_at)[:19] if t.revoked_at else "",
        )  # fmt: skip
    out().print(table)


@app.command("revoke")
def tokens_revoke(
    token_id: Annotated[UUID, typer.Argument(help="The token's id (from `tokens list`).")],
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Revoke an API token for good; requests with it are refused from now on.

    Example: `xavyo-siem tokens revoke 8d1e…`
    """
    revoked = revoke_api_token(open_store(db), token_id=token_id, actor=Actor.command_line())
    if not revoked:
        err.print(f"error: no live token {token_id}")
        raise typer.Exit(1)
    err.print(f"revoked token {token_id}")
