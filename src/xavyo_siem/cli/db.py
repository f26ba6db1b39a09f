"""`xavyo-siem db`: the store's schema."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from xavyo_siem.cli.options import DbOption, load_settings
from xavyo_siem.cli.output import err
from xavyo_siem.credentials import CredentialBinder
from xavyo_siem.crypto import DEV_KEY_FILE, load_key_ring
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE

__all__ = ["app"]

app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Bring the store's schema up to date (PostgreSQL needs this after every update).

    With the key ring configured (`XAVYO_SIEM_SECRET_KEY` or `XAVYO_SIEM_SECRET_KEY_FILE`)
    it also binds credentials stored by versions before 0006 to their destination's
    endpoint; without it, `keys rotate` does that later.

    Example: `xavyo-siem db upgrade --db postgresql://siem@db.internal/siem`
    """
    settings = load_settings()
    configured = settings.secret_key or settings.secret_key_file
    binder = None
    if configured or (settings.development and DEV_KEY_FILE.exists()):
        binder = CredentialBinder(load_key_ring(settings))
    engine = make_engine(db)
    before, after = upgrade(engine, bind_credential=binder)
    if before == after:
        err.print(f"database already at revision {after}")
    else:
        err.print(f"database upgraded from {before or 'empty'} to revision {after}")
    if binder is not None and binder.bound:
        err.print(f"bound {binder.bound} credential(s) to their destination's endpoint")
    if binder is not None and binder.left:
        for reason in binder.left:
            err.print(f"[red]not bound[/]: {reason}", highlight=False)
        err.print("the worker refuses these until they are given again (`keys status` names them)")
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
