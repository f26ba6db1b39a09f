"""`xavyo-siem destination`: add, list, show, update, enable, disable, remove and test a
tenant's destinations (the API's `/v1/tenants/{tenant_id}/destinations`).

Every command calls one function of `xavyo_siem.destinations`, which validates everything
(settings, SSRF guard, TLS rules) before it writes anything, and finds a destination by
name or id (`find_destination`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from xavyo_siem import destinations as manage
from xavyo_siem.cli.options import (
    AnyTenantOption,
    CategoryOption,
    DbOption,
    DestinationArg,
    EventTypeOption,
    JsonOption,
    MinSeverityOption,
    OptionOption,
    RateOption,
    SecretOption,
    TenantOption,
    check_local_files,
    load_keyring,
    load_settings,
    parse_filters,
    parse_options,
    parse_rate,
    read_secret,
)
from xavyo_siem.cli.output import err, out, print_fields, print_json_lines
from xavyo_siem.declared import export_yaml
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import DeliveryType, EventFilter, ExportFormat
from xavyo_siem.runtime.components import test_destination
from xavyo_siem.settings import DEFAULT_DATABASE_URL
from xavyo_siem.store import destinations as dest_rows
from xavyo_siem.store import open_store
from xavyo_siem.store.ranges import has_events
from xavyo_siem.trail import Actor

__all__ = ["app"]

app = typer.Typer(
    help="Manage where a tenant's events go (syslog, webhook, Splunk HEC, Sentinel, file).",
    no_args_is_help=True,
)


@app.command("add")
def destination_add(
    tenant: TenantOption,
    name: Annotated[str, typer.Option("--name", help="A name, unique within the tenant.")],
    delivery_type: Annotated[
        DeliveryType, typer.Option("--type", help="How events are delivered.")
    ],
    format: Annotated[ExportFormat, typer.Option("--format", help="How events are written.")],
    endpoint: Annotated[
        str,
        typer.Option(
            "--endpoint",
            help="tcp://host:port, tls://host:port, udp://host:port, relp://host:port,"
            " https://…, file:///path",
        ),
    ],
    secret_file: SecretOption = None,
    option: OptionOption = None,
    category: CategoryOption = None,
    event_type: EventTypeOption = None,
    min_severity: MinSeverityOption = None,
    rate_limit: RateOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Add a destination for a tenant. It starts at "now" unless `--option start=beginning`
    (or `start=<ISO time>`) asks for history.

    The credential is read from `--secret-file` (or stdin with `-`), never from the command
    line, and stored encrypted with the key in `XAVYO_SIEM_SECRET_KEY`.

    Example: `xavyo-siem destination add --tenant 3f0c… --name splunk --type splunk_hec
    --format json --endpoint https://splunk.example:8088 --secret-file token.txt
    --option index=audit --option ack=true --rate-limit 2000:4000`
    """
    settings = load_settings()
    secret = read_secret(secret_file)
    spec = DestinationSpec(
        name=name,
        delivery_type=delivery_type,
        format=format,
        endpoint=endpoint,
        options=check_local_files(parse_options(option or [])),
        filters=parse_filters(category, event_type, min_severity) or EventFilter(),
        rate_limit=parse_rate(rate_limit),
        enabled=not disabled,
    )
    engine = open_store(db)
    with engine.connect() as conn:
        known_tenant = has_events(conn, tenant_id=tenant)
    added = manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=spec,
        secret=secret,
        keyring=None if secret is None else load_keyring(settings, required=True),
        development=settings.development,
        egress=EgressGuard.from_settings(settings),
        actor=Actor.command_line(),
    )
    if json:
        print_json_lines([added.to_dict()])
    else:
        err.print(f"added destination {added.name} ({added.id})")
    if not known_tenant:
        err.print(
            f"note: no events of tenant {tenant} were stored before this one; check the "
            "tenant id if you expected some (`xavyo-siem events --tenant …` lists them)"
        )


@app.command("list")
def destination_list(
    tenant: AnyTenantOption = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """List destinations, by tenant and name.

    Example: `xavyo-siem destination list --tenant 3f0c… --json`
    """
    with open_store(db, create=False).connect() as conn:
        tenants = [tenant] if tenant else dest_rows.all_tenant_ids(conn)
        found = [d for t in tenants for d in dest_rows.list_destinations(conn, tenant_id=t)]
    if json:
        print_json_lines(d.to_dict() for d in found)
        return
    table = Table("tenant", "name", "type", "format", "endpoint", "enabled", "id", box=None)
    for d in found:
        table.add_row(
            str(d.tenant_id), d.name, d.delivery_type.value, d.format.value, d.endpoint,
            "yes" if d.enabled else "no", str(d.id),
        )  # fmt: skip
    out().print(table)


@app.command("export")
def destination_export(
    tenant: AnyTenantOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Write destinations as a declaration that `xavyo-siem apply -f` takes back unchanged
    (every tenant's, or one's). No credential is written: add `secret: {file: PATH}` to
    a destination to replace its stored one.

    Example: `xavyo-siem destination export --tenant 3f0c… -o destinations.yaml`
    """
    with open_store(db, create=False).connect() as conn:
        tenants = [tenant] if tenant else dest_rows.all_tenant_ids(conn)
        found = [d for t in tenants for d in dest_rows.list_destinations(conn, tenant_id=t)]
    text = export_yaml(found)
    if output is None or str(output) == "-":
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        err.print(f"wrote {len(found)} destination(s) to {output}")


@app.command("show")
def destination_show(
    tenant: TenantOption,
    destination: DestinationArg,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Show one destination's settings (never its credential, only whether it has one).

    Example: `xavyo-siem destination show --tenant 3f0c… splunk`
    """
    found = manage.find_destination(open_store(db), tenant_id=tenant, name_or_id=destination)
    if json:
        print_json_lines([found.to_dict()])
    else:
        print_fields(found.to_dict(), key_width=14, none="None")


@app.command("update")
def destination_update(
    tenant: TenantOption,
    destination: DestinationArg,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    format: Annotated[ExportFormat | None, typer.Option("--format", help="A new format.")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="A new endpoint.")] = None,
    secret_file: SecretOption = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Set KEY=VALUE; KEY= (empty) removes it."),
    ] = None,
    category: CategoryOption = None,
    event_type: EventTypeOption = None,
    min_severity: MinSeverityOption = None,
    rate_limit: Annotated[
        str | None, typer.Option("--rate-limit", help="EVENTS_PER_S[:BURST], or none.")
    ] = None,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Change a destination's settings; what is not given stays as it is.

    A stored secret stays bound to where it was given for: a new `--endpoint` with another
    scheme, host or port (or an option naming a URL) needs `--secret-file` again, else the
    change is refused (exit 2) and nothing changes.

    Example: `xavyo-siem destination update --tenant 3f0c… splunk --secret-file new-token.txt`
    """
    settings = load_settings()
    engine = open_store(db)
    current = manage.find_destination(engine, tenant_id=tenant, name_or_id=destination)
    changes: dict[str, Any] = {
        key: value
        for key, value in (("name", name), ("format", format), ("endpoint", endpoint))
        if value is not None
    }
    if option:
        given = check_local_files(parse_options(option))
        changes["options"] = {k: (v if v != "" else None) for k, v in given.items()}
    filters = parse_filters(category, event_type, min_severity)
    if filters is not None:
        changes["filters"] = filters.to_dict()
    if rate_limit is not None:
        changes["rate_limit"] = parse_rate(rate_limit)
    secret = read_secret(secret_file)
    updated = manage.update_destination(
        engine,
        tenant_id=tenant,
        destination_id=current.id,
        changes=changes,
        secret=secret,
        keyring=None if secret is None else load_keyring(settings, required=True),
        development=settings.development,
        egress=EgressGuard.from_settings(settings),
        actor=Actor.command_line(),
    )
    if json:
        print_json_lines([updated.to_dict()])
    else:
        err.print(f"updated destination {updated.name}")


def _set_enabled(tenant: UUID, destination: str, db: str, *, enabled: bool) -> None:
    engine = open_store(db)
    current = manage.find_destination(engine, tenant_id=tenant, name_or_id=destination)
    manage.set_enabled(
        engine,
        tenant_id=tenant,
        destination_id=current.id,
        enabled=enabled,
        actor=Actor.command_line(),
    )
    err.print(f"{'enabled' if enabled else 'disabled'} destination {current.name}")


@app.command("enable")
def destination_enable(
    tenant: TenantOption, destination: DestinationArg, db: DbOption = DEFAULT_DATABASE_URL
) -> None:
    """Resume delivery to a destination from where it stopped.

    Example: `xavyo-siem destination enable --tenant 3f0c… splunk`
    """
    _set_enabled(tenant, destination, db, enabled=True)


@app.command("disable")
def destination_disable(
    tenant: TenantOption, destination: DestinationArg, db: DbOption = DEFAULT_DATABASE_URL
) -> None:
    """Pause delivery to a destination; its cursor is kept, so nothing is skipped.

    Example: `xavyo-siem destination disable --tenant 3f0c… splunk`
    """
    _set_enabled(tenant, destination, db, enabled=False)


@app.command("remove")
def destination_remove(
    tenant: TenantOption, destination: DestinationArg, db: DbOption = DEFAULT_DATABASE_URL
) -> None:
    """Delete a destination with its cursor, health and dead letters.

    Example: `xavyo-siem destination remove --tenant 3f0c… old-splunk`
    """
    engine = open_store(db)
    current = manage.find_destination(engine, tenant_id=tenant, name_or_id=destination)
    manage.remove_destination(
        engine, tenant_id=tenant, destination_id=current.id, actor=Actor.command_line()
    )
    err.print(f"removed destination {current.name}")


@app.command("test")
def destination_test(
    tenant: TenantOption,
    destination: DestinationArg,
    json: JsonOption = False,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Check the settings, connect, and send one test event (type XAVYO_SIEM_TEST).

    Exits 1 when a step fails. Example: `xavyo-siem destination test --tenant 3f0c… splunk`
    """
    settings = load_settings()
    engine = open_store(db)
    found = manage.find_destination(engine, tenant_id=tenant, name_or_id=destination)
    keyring = load_keyring(settings, required=False)
    steps = asyncio.run(
        test_destination(
            engine, found, settings=settings, keyring=keyring, actor=Actor.command_line()
        )
    )
    if json:
        print_json_lines({"step": s.step, "ok": s.ok, "detail": s.detail} for s in steps)
    else:
        for step in steps:
            mark = "[green]ok[/]" if step.ok else "[red]FAILED[/]"
            err.print(f"{step.step:>14}: {mark}  {step.detail}", highlight=False)
    if not all(step.ok for step in steps):
        raise typer.Exit(1)
