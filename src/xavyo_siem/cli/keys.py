"""`xavyo-siem keys`: the credential key ring: make a key, re-encrypt the stored
credentials with the newest one, and show which key sealed how many and which credentials
do not open for their destination."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from xavyo_siem.cli.options import DbOption, JsonOption, load_settings
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.credentials import (
    check_credentials,
    count_credentials_by_key,
    rotate_credentials,
)
from xavyo_siem.crypto import load_key_ring, new_key_text
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store
from xavyo_siem.trail import Actor

__all__ = ["app"]

app = typer.Typer(
    help="The credential key ring: make a key, rotate stored credentials, status.",
    no_args_is_help=True,
)


@app.command("new")
def keys_new() -> None:
    """Print a new random AES-256 key as a key-ring entry (`<id>:<base64>`).

    Append it to the key ring (the last key is the primary one), then run `keys rotate`.

    Example: `xavyo-siem keys new >> /etc/xavyo-siem/keys`
    """
    typer.echo(new_key_text())


@app.command("rotate")
def keys_rotate(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Re-encrypt every stored credential with the newest key of the ring, in one transaction.

    Older keys keep opening what they sealed until removed from the ring; remove one once
    `keys status` shows no credential under it. Each credential keeps the endpoint it was
    given for; those stored before credentials were bound to their endpoint are bound to
    the endpoint their destination has now. A credential no key of the ring opens stops the
    rotation, changing nothing, and is named. Exits 1 naming each destination whose
    credential does not open for where it points now (changed without its secret).

    Example: `XAVYO_SIEM_SECRET_KEY_FILE=/etc/xavyo-siem/keys xavyo-siem keys rotate`
    """
    keyring = load_key_ring(load_settings())
    report = rotate_credentials(open_store(db), keyring, actor=Actor.command_line())
    for key_id, count in report.resealed.items():
        err.print(f"re-encrypted {count} credential(s) from key {key_id} to key {report.primary}")
    changed = report.changed_meanwhile
    meanwhile = f", {changed} changed meanwhile" if changed else ""
    bound = f", {report.bound} bound to their endpoint" if report.bound else ""
    err.print(
        f"{report.total_resealed} re-encrypted, {report.already_primary} already under key"
        f" {report.primary}{meanwhile}{bound}"
    )
    for problem in report.not_opening:
        err.print(f"[red]does not open[/]: {problem}", highlight=False)
    if report.not_opening:
        raise typer.Exit(1)


@app.command("status")
def keys_status(json: JsonOption = False, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Show the ring's key ids and how many stored credentials each one sealed.

    Also opens every credential for its destination's type and endpoint: exits 1 naming
    each destination whose credential does not open (a key missing from the ring, an
    endpoint changed without the secret, a credential not yet bound: `keys rotate`) or
    that needs a credential and has none.

    Example: `xavyo-siem keys status --json`
    """
    keyring = load_key_ring(load_settings())
    engine = open_store(db)
    counts = count_credentials_by_key(engine, keyring)
    problems = check_credentials(engine, keyring)
    key_ids = [*keyring.keys, *(k for k in counts if k not in keyring.keys)]
    rows: list[dict[str, Any]] = [
        {
            "key_id": key_id,
            "in_ring": key_id in keyring.keys,
            "primary": key_id == keyring.primary,
            "credentials": counts.get(key_id, 0),
        }
        for key_id in key_ids
    ]
    if json:
        print_json_lines(rows)
    else:
        table = Table("key id", "in ring", "primary", "credentials", box=None)
        for row in rows:
            table.add_row(
                row["key_id"], "yes" if row["in_ring"] else "[red]MISSING[/]",
                "yes" if row["primary"] else "", str(row["credentials"]),
            )  # fmt: skip
        out().print(table)
    for problem in problems:
        err.print(f"[red]does not open[/]: {problem}", highlight=False)
    if problems or any(not row["in_ring"] for row in rows):
        raise typer.Exit(1)
