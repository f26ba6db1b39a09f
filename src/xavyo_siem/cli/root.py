"""The root of the command line: the `xavyo-siem` app, `--version`, the command groups in
the order `--help` lists them, and `main`, which turns our errors into one clear line."""

from __future__ import annotations

import gc
import os
import sys
from typing import Annotated

import typer

from xavyo_siem import __version__
from xavyo_siem.cli import (
    apply,
    db,
    dead_letters,
    destinations,
    events,
    exports,
    health,
    keys,
    quarantine,
    retention,
    run,
    sources,
    tenants,
    tokens,
)
from xavyo_siem.cli.output import err
from xavyo_siem.errors import (
    InvalidDestination,
    InvalidEvent,
    InvalidFilter,
    InvalidSource,
    SiemError,
)
from xavyo_siem.speedups import helpers_in_use

__all__ = ["app", "main", "tune_gc", "version_line"]

app = typer.Typer(
    name="xavyo-siem",
    help="Export an identity provider's audit events to its tenants' SIEM systems.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def version_line() -> str:
    """What `--version` prints: the version, and which helpers run (C, or the Python ones and
    why)."""
    return f"xavyo-siem {__version__}, running the {helpers_in_use()}"


def _version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Export an identity provider's audit events to its tenants' SIEM systems.

    Every command takes `--db URL` (or `XAVYO_SIEM_DATABASE_URL`); the default is an
    embedded SQLite file, `./xavyo-siem.db`, which sets itself up on first use.
    """


app.command("sample")(events.sample)
app.command("ingest")(events.ingest)
app.command("events")(events.list_events)
app.command("run")(run.run)
app.command("health")(health.health)
app.command("apply")(apply.apply)
app.command("serve")(run.serve)
app.add_typer(db.app, name="db")
app.add_typer(destinations.app, name="destination")
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(tokens.app, name="tokens")
app.add_typer(keys.app, name="keys")
app.add_typer(exports.export_app, name="export")
app.add_typer(exports.jobs_app, name="jobs")
app.add_typer(tenants.app, name="tenant")
app.add_typer(sources.app, name="source")
app.add_typer(retention.app, name="retention")


def tune_gc() -> None:
    """Make Python's cycle collector cheap for batch work; every command does this first.

    Reading or writing events allocates millions of small objects that hold no cycles, and
    each full collection would walk every object alive, all the imported modules included:
    that halved the store's read rate. Startup objects are frozen out of collection, and
    collections run ~100x less often; memory stays bounded by the batch sizes.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def main() -> None:
    """Console entry point: run the app, turning our errors into one clear line."""
    tune_gc()
    try:
        app()
    except (InvalidEvent, InvalidDestination, InvalidFilter, InvalidSource) as exc:
        err.print(f"error: {exc}")
        sys.exit(2)
    except SiemError as exc:
        err.print(f"error: {exc}")
        sys.exit(1)
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
