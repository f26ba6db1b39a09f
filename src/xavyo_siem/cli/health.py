"""`xavyo-siem health`: how delivery to each destination is going (the API's
`/v1/tenants/{tenant_id}/health`)."""

from __future__ import annotations

import typer
from rich.table import Table

from xavyo_siem import destinations as manage
from xavyo_siem.cli.options import AnyTenantOption, DbOption, JsonOption
from xavyo_siem.cli.output import out, print_json_lines
from xavyo_siem.model import DeliveryHealth, RateLimit, format_timestamp
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store
from xavyo_siem.store.destinations import all_tenant_ids

__all__ = ["health"]


def health(
    tenant: AnyTenantOption = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Show how delivery to each destination is going: successes, failures, circuit, lag,
    and which destination holds retention back (expired events it has not delivered are kept).

    Exits 1 when a destination is failing. Example: `xavyo-siem health --json`
    """
    with open_store(db).connect() as conn:
        tenants = [tenant] if tenant else all_tenant_ids(conn)
        reports = [r for t in tenants for r in manage.list_health(conn, tenant_id=t)]
    if json:
        print_json_lines(r.to_dict() for r in reports)
    else:
        _print_table(reports)
    if manage.any_failing(reports):
        raise typer.Exit(1)


def _print_table(reports: list[DeliveryHealth]) -> None:
    table = Table(
        "name", "status", "circuit", "delivered", "failures", "last success", "lag",
        "lag s", "events/s", "rate limit", "dead", "lost?", "cut", "last error", box=None,
    )  # fmt: skip
    for r in reports:
        table.add_row(
            r.name,
            "[red]failing[/]" if r.failing else ("ok" if r.enabled else "disabled"),
            r.circuit_state.value,
            f"{r.successes:,}",
            f"{r.failures:,}",
            format_timestamp(r.last_success)[:19] if r.last_success else "-",
            f"{r.lag_events:,}",
            f"{r.lag_seconds:,.1f}",
            f"{r.throughput_eps:,.0f}",
            _rate(r.rate_limit),
            str(r.dead_letters),
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


def _rate(limit: RateLimit | None) -> str:
    """`1,000/s burst 2,000`, or `none`."""
    return "none" if limit is None else f"{limit.events_per_s:,.0f}/s burst {limit.burst:,}"
