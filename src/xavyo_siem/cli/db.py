"""`xavyo-siem db`: the store's schema."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from xavyo_siem.cli.options import DbOption
from xavyo_siem.cli.output import err
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE

__all__ = ["app"]

app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Bring the store's schema up to date (PostgreSQL needs this after every update).

    Example: `xavyo-siem db upgrade --db postgresql://siem@db.internal/siem`
    """
    engine = make_engine(db)
    before, after = upgrade(engine)
    if before == after:
        err.print(f"database already at revision {after}")
    else:
        err.print(f"database upgraded from {before or 'empty'} to revision {after}")
    if engine.dialect.name == "postgresql":
        err.print(_how_to_connect(db), markup=False, highlight=False)


def _how_to_connect(db: str) -> str:
    """How the service connects: as a login role in the group roles, not as the owner."""
    url = make_url(db).set(username="xavyo_siem_app", password=None)
    return (
        f"row-level security: connect the service as a member of {SERVICE_ROLE} (the API) and "
        f"{WORKER_ROLE} (workers, operator commands), never as the tables' owner, e.g.\n"
        "  CREATE ROLE xavyo_siem_app LOGIN PASSWORD '...'"
        f" IN ROLE {SERVICE_ROLE}, {WORKER_ROLE};\n"
        f"  XAVYO_SIEM_DATABASE_URL={url.render_as_string(hide_password=False)}"
    )
