"""`xavyo-siem retention set | show | apply`: how long events are kept, and removing the
expired ones (never what a destination, a dead letter or a running export still needs,
unless `--force`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from xavyo_siem.cli.options import AnyTenantOption, DbOption, JsonOption
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.settings import DEFAULT_DATABASE_URL, parse_duration
from xavyo_siem.store import open_store, writing
from xavyo_siem.store.retention import (
    RetentionReport,
    apply_retention,
    read_retention,
    set_retention,
)

__all__ = ["app"]

app = typer.Typer(
    help="Retention: how long events are kept (set, show), and removing expired ones (apply).",
    no_args_is_help=True,
)


@app.command("set")
def retention_set(
    keep: Annotated[
        str,
        typer.Option(
            "--keep",
            help="How long to keep events after they were received: 90d, 12h, 30m; `forever`"
            " keeps them all; `default` removes a tenant's own policy.",
            show_default=False,
        ),
    ],
    tenant: AnyTenantOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Set the platform's retention policy, or with `--tenant` one tenant's own (which
    overrides the platform's for that tenant).

    Example: `xavyo-siem retention set --keep 90d`, then
    `xavyo-siem retention set --tenant 3f0c… --keep 400d`
    """
    keep_s: int | None
    if keep.strip().lower() in ("forever", "default"):
        if keep.strip().lower() == "default" and tenant is None:
            raise typer.BadParameter("`default` is for a tenant's own policy", param_hint="--keep")
        keep_s = None
    else:
        try:
            keep_s = int(parse_duration("--keep", keep, default=timedelta()).total_seconds())
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--keep") from None
    with writing(open_store(db)) as conn:
        set_retention(conn, tenant_id=tenant, keep_s=keep_s, now=datetime.now(UTC))
    whose = "the platform" if tenant is None else f"tenant {tenant}"
    if keep_s is None:
        said = "keeps events forever" if tenant is None else "follows the platform's policy"
    else:
        said = f"keeps events {_duration(keep_s)} after they were received"
    err.print(f"{whose} {said}")


@app.command("show")
def retention_show(json: JsonOption = False, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Show the platform's retention policy and every tenant's own.

    Example: `xavyo-siem retention show --json`
    """
    with open_store(db).connect() as conn:
        policies = read_retention(conn)
    if json:
        print_json_lines([policies.to_dict()])
        return
    table = Table("scope", "keep", box=None)
    table.add_row("platform", "forever" if policies.keep_s is None else _duration(policies.keep_s))
    for tenant_id, keep_s in sorted(policies.overrides.items(), key=lambda item: str(item[0])):
        table.add_row(f"tenant {tenant_id}", _duration(keep_s))
    out().print(table)


@app.command("apply")
def retention_apply(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove expired events even if a destination has not delivered them, a dead"
            " letter refers to them or a running export needs them (they are counted).",
        ),
    ] = False,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Remove the events whose retention expired, now (a worker does it every hour). What
    a destination (enabled or not) has not delivered, what a dead letter refers to and what
    a running export needs are kept, and listed as held, unless `--force`.

    Example: `xavyo-siem retention apply --json`
    """
    report = apply_retention(open_store(db), now=datetime.now(UTC), force=force)
    if json:
        print_json_lines([report.to_dict()])
        return
    _print_report(report, force=force)


def _print_report(report: RetentionReport, *, force: bool) -> None:
    dropped = len(report.dropped_partitions)
    err.print(
        f"removed {report.removed:,} events one by one"
        + (f", and {dropped} whole partitions (about {report.dropped_estimate:,} events,"
           f" gone after {report.detach_s:.3f} s)" if dropped else "")
    )  # fmt: skip
    if dropped or report.finished:
        earlier = f" (with {len(report.finished)} an earlier run left)" if report.finished else ""
        err.print(
            f"disk space returned by dropping the detached tables{earlier} in"
            f" {report.drop_s:.2f} s, which no ingest or read waits for; their events' keys"
            f" removed in {report.keys_s:.1f} s"
        )
    if report.busy_partitions:
        err.print(
            f"left for the next run, in use now: {', '.join(report.busy_partitions)} (a long"
            " query or a vacuum held the lock the detach needs)"
        )
    if force:
        err.print(f"removed {report.removed_undelivered:,} events that were still needed")
    if report.held:
        table = Table("tenant", "held by", "reason", "events", "since", box=None)
        for hold in report.held:
            table.add_row(
                str(hold.tenant_id),
                hold.holder,
                hold.reason,
                f"{hold.held_events:,}",
                hold.since.isoformat()[:19],
            )
        err.print("kept, because still needed (`--force` removes them):")
        out().print(table)


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
