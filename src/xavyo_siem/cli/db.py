"""`xavyo-siem db`: the store's schema."""

from __future__ import annotations

import typer

from xavyo_siem.cli.options import DbOption, load_settings
from xavyo_siem.cli.output import err
from xavyo_siem.credentials import CredentialBinder
from xavyo_siem.crypto import DEV_KEY_FILE, load_key_ring
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import make_engine, upgrade

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
    before, after = upgrade(make_engine(db), bind_credential=binder)
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
