"""`xavyo-siem apply -f FILE`: make the store's destinations match a declaration kept in a
file (reviewed as a diff, versioned like any other configuration)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from xavyo_siem import declared
from xavyo_siem.cli.options import DbOption, JsonOption, load_keyring, load_settings
from xavyo_siem.cli.output import err
from xavyo_siem.egress import EgressGuard
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store
from xavyo_siem.trail import Actor

__all__ = ["apply"]


def apply(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The declaration (YAML), or - for stdin.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; change nothing.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune", help="Remove the named tenants' destinations that the file leaves out."
        ),
    ] = False,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Make the destinations of the tenants a file names match the file.

    Each destination the file declares is added, or updated where a setting or its
    credential differs; one that already matches is not written, so applying the same file
    again changes nothing (and records nothing). A credential is never in the file:
    `secret: {file: PATH}` or `secret: {env: NAME}` says where to read it, and none keeps
    the stored one. With `--prune`, the named tenants' destinations the file leaves out
    are removed. `--dry-run` prints the plan: `+` added, `~` changed (field by field, the
    credential only as "replaced"), `-` removed, `=` unchanged. docs/delivery.md shows the
    file's form; `xavyo-siem destination export` writes it from the store.

    Example: `xavyo-siem apply -f destinations.yaml --dry-run`
    """
    settings = load_settings()
    text = typer.get_text_stream("stdin").read() if str(file) == "-" else _read(file)
    wanted = declared.parse(text)
    engine = open_store(db)
    keyring = load_keyring(settings, required=any(d.secret for d in wanted))
    steps = declared.plan(engine, wanted, keyring=keyring, prune=prune)
    if not dry_run:
        declared.apply_steps(
            engine,
            steps,
            keyring=keyring,
            development=settings.development,
            egress=EgressGuard.from_settings(settings),
            actor=Actor.command_line(),
        )
    if json:
        for step in steps:
            typer.echo(
                orjson.dumps(
                    {
                        "action": step.action,
                        "tenant_id": str(step.tenant_id),
                        "name": step.name,
                        "changes": sorted(step.changes),
                        "credential_replaced": step.new_secret is not None,
                        "applied": not dry_run,
                    }
                ).decode()
            )
    else:
        for step in steps:
            if step.action != "keep":
                typer.echo(step.describe())
    counts = {
        action: sum(s.action == action for s in steps)
        for action in ("add", "update", "remove", "keep")
    }
    verb = "would" if dry_run else "did"
    err.print(
        f"{verb} add {counts['add']}, update {counts['update']}, remove {counts['remove']};"
        f" {counts['keep']} unchanged"
    )


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise typer.BadParameter(f"cannot read {file}: {reason}", param_hint="--file") from None
