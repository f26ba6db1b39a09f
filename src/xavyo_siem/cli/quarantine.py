"""`xavyo-siem quarantine`: list, show, retry and purge what ingest could not take (lines
that are no event at all, and events sent again with different content: conflicts).

With `--tenant` every command sees that tenant's entries only; without it, the platform's
view: every entry, those of lines that named no usable tenant included.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer
from rich.table import Table

from xavyo_siem.cli.options import DbOption, JsonOption
from xavyo_siem.cli.output import err, out, print_json_lines
from xavyo_siem.ingest import retry_quarantined
from xavyo_siem.model import format_timestamp
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import open_store, writing
from xavyo_siem.store.quarantine import get_quarantined, list_quarantined, remove_quarantined

__all__ = ["app"]

app = typer.Typer(
    help="What ingest could not take (no event at all, or a conflict): list, show, retry, purge.",
    no_args_is_help=True,
)

ScopeOption = Annotated[
    UUID | None,
    typer.Option("--tenant", help="Only this tenant's entries (default: every entry)."),
]
IdsOption = Annotated[
    list[int] | None, typer.Option("--id", help="Only this entry (repeatable; default all).")
]


@app.command("list")
def quarantine_list(
    tenant: ScopeOption = None,
    after: Annotated[int, typer.Option("--after", min=0, help="Entries after this id.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List quarantined entries, oldest first, with their reason and source.

    Example: `xavyo-siem quarantine list --tenant 3f0c…`
    """
    with open_store(db, create=False).connect() as conn:
        entries = list_quarantined(conn, tenant_id=tenant, after=after, limit=limit)
    if json:
        print_json_lines(entry.to_dict(raw=False) for entry in entries)
        return
    table = Table("id", "tenant", "source", "received", "reason", box=None)
    for entry in entries:
        table.add_row(
            str(entry.id), "" if entry.tenant_id is None else str(entry.tenant_id),
            entry.source, format_timestamp(entry.received_at)[:19], entry.reason,
        )  # fmt: skip
    out().print(table)
    err.print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")


@app.command("show")
def quarantine_show(
    entry_id: Annotated[int, typer.Argument(help="The entry's id.")],
    tenant: ScopeOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Print one entry as JSON, with the line as it was received (capped).

    Example: `xavyo-siem quarantine show 17`
    """
    with open_store(db).connect() as conn:
        entry = get_quarantined(conn, tenant_id=tenant, entry_id=entry_id)
    if entry is None:
        err.print(f"error: no quarantine entry {entry_id}")
        raise typer.Exit(1)
    print_json_lines([entry.to_dict()])


def _all_ids(db: str, tenant: UUID | None) -> list[int]:
    ids: list[int] = []
    with open_store(db).connect() as conn:
        while batch := list_quarantined(
            conn, tenant_id=tenant, after=ids[-1] if ids else 0, limit=1000
        ):
            ids += [entry.id for entry in batch]
    return ids


@app.command("retry")
def quarantine_retry(
    tenant: ScopeOption = None,
    id: IdsOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Ingest entries again, through the same normalising path as `ingest`: an entry that
    is an event now is stored and leaves the quarantine; the others stay (exit status 1).

    Example: `xavyo-siem quarantine retry --id 17`
    """
    ids = id if id else _all_ids(db, tenant)
    result = retry_quarantined(open_store(db), tenant_id=tenant, entry_ids=ids)
    err.print(
        f"stored {result.stored:,}, duplicates {result.duplicates:,}, "
        f"still quarantined {len(result.kept):,}"
    )
    for reason in result.kept[:10]:
        err.print(f"  {reason}", markup=False)
    if result.kept:
        raise typer.Exit(1)


@app.command("purge")
def quarantine_purge(
    tenant: ScopeOption = None,
    id: IdsOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Delete entries for good (all of the view's unless `--id` is given).

    Example: `xavyo-siem quarantine purge --tenant 3f0c… --id 17`
    """
    with writing(open_store(db)) as conn:
        count = remove_quarantined(conn, tenant_id=tenant, entry_ids=id or None)
    err.print(f"purged {count:,} entr{'y' if count == 1 else 'ies'}")
