"""`xavyo-siem db`: the store's schema."""

from __future__ import annotations

import typer

from xavyo_siem.cli.options import DbOption
from xavyo_siem.cli.output import err
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import make_engine, upgrade

__all__ = ["app"]

app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Bring the store's schema up to date (PostgreSQL needs this after every update).

    Example: `xavyo-siem db upgrade --db postgresql://siem@db.internal/siem`
    """
    before, after = upgrade(make_engine(db))
    if before == after:
        err.print(f"database already at revision {after}")
    else:
        err.print(f"database upgraded from {before or 'empty'} to revision {after}")
