"""`xavyo-siem health`: how delivery to each destination is going (the API's
`/v1/tenants/{tenant_id}/health`), and whether any worker is alive to do it."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from xavyo_siem import delivery_health
from xavyo_siem.cli.options import AnyTenantOption, DbOption, JsonOption
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.model import (
    DeliveryHealth,
    RateLimit,
    WorkersSeen,
    format_duration,
    format_timestamp,
)
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store
from xavyo_siem.store.destinations import all_tenant_ids
from xavyo_siem.store.leases import worker_heartbeats

__all__ = ["health"]


def health(
    tenant: AnyTenantOption = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Show how delivery to each destination is going: status, lag, last success, circuit,
    dead letters, which destination holds retention back (expired events it has not
    delivered are kept), and how many workers are alive to deliver.

    A status is `ok`, `failing`, `never delivered` (nothing accepted yet), `disabled`, or
    `switched off` (the worker disabled it: its endpoint said it is gone). Exits 1 when an
    enabled destination is failing or one was switched off.

    Example: `xavyo-siem health --tenant 3f0c…`, or `xavyo-siem health --json`
    """
    with open_store(db, create=False).connect() as conn:
        tenants = [tenant] if tenant else all_tenant_ids(conn)
        reports = [r for t in tenants for r in delivery_health.list_health(conn, tenant_id=t)]
        beats = worker_heartbeats(conn)
    if json:
        print_json_lines(r.to_dict() for r in reports)
    elif reports:
        _print_table(reports)
        err.print(_workers_line(WorkersSeen.of(beats, now=datetime.now(UTC))), markup=True)
    else:
        err.print(
            "no destinations" + (f" for tenant {tenant}" if tenant else "")
            + " (add one with `xavyo-siem destination add`)"
        )  # fmt: skip
    if delivery_health.any_failing(reports):
        raise typer.Exit(1)


_STYLES = {"failing": "[red]failing[/]", "switched off": "[red]switched off[/]"}


def _print_table(reports: list[DeliveryHealth]) -> None:
    table = Table(
        "tenant", "name", "status", "circuit", "delivered", "failures", "last success",
        "lag", "events/s", "rate limit", "dead", "lost?", "cut", "last error", box=None,
    )  # fmt: skip
    now = datetime.now(UTC)
    for r in reports:
        status = r.state
        table.add_row(
            str(r.tenant_id)[:8] + "…",
            r.name,
            _STYLES.get(status, status),
            r.circuit_state.value if r.enabled else "-",
            f"{r.successes:,}",
            f"{r.failures:,}",
            _ago(r.last_success, now),
            _lag(r),
            f"{r.throughput_eps:,.0f}",
            _rate(r.rate_limit),
            f"{r.dead_letters:,}",
            f"{r.possibly_lost:,}",
            f"{r.truncated:,}",
            (r.disabled_reason or r.last_error or "")[:60],
        )
    out().print(table)
    for r in reports:
        if r.retention_held_since is not None:
            out().print(
                f"retention held back by {r.name} ({r.destination_id}, tenant {r.tenant_id})"
                f" since {format_timestamp(r.retention_held_since)[:19]}:"
                f" {r.retention_held_events:,} expired events kept"
            )


def _lag(report: DeliveryHealth) -> str:
    """`0`, or how many events wait and how old the oldest is: `1,204 (3 h)`."""
    if report.lag_events == 0:
        return "0"
    return f"{report.lag_events:,} ({format_duration(report.lag_seconds)})"


def _ago(moment: datetime | None, now: datetime) -> str:
    """`never`, or `2026-03-01 10:00:00 (5 min ago)`."""
    if moment is None:
        return "never"
    age = format_duration((now - moment).total_seconds())
    return f"{format_timestamp(moment)[:19].replace('T', ' ')} ({age} ago)"


def _workers_line(seen: WorkersSeen) -> str:
    """Whether a worker is delivering (red when none is)."""
    text = f"workers: {seen.describe()}"
    return text if seen.alive else f"[red]{text}[/]"


def _rate(limit: RateLimit | None) -> str:
    """`1,000/s burst 2,000`, or `none`."""
    return "none" if limit is None else f"{limit.events_per_s:,.0f}/s burst {limit.burst:,}"
