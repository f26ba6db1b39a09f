"""Managing destinations: validate, seal the credential, store, enable, remove, health.

The command line and the HTTP API both call these functions; neither validates on its own.
Validation is pure and names the bad field (`options.framing: must be octet or lf`); only
then is anything written, in one transaction, so a bad request changes nothing. Opening a
destination for delivery, and testing one, is the worker's (xavyo_siem.runtime).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Connection, Engine, select

from xavyo_siem.crypto import CryptoError, KeyRing
from xavyo_siem.delivery import (
    ELASTICSEARCH_FORMATS,
    SENTINEL_FORMATS,
    ConnectTarget,
    S3Config,
    S3Credentials,
    TransportConfig,
    check_client_secret,
    check_hec_token,
    connect_targets,
    elasticsearch_authorization,
    validate_destination,
)
from xavyo_siem.delivery.option_values import DeliveryPolicy
from xavyo_siem.delivery.targets import credential_binding, credential_targets
from xavyo_siem.delivery.webhook import WebhookCredentials
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import EncodeError, InvalidDestination, InvalidFilter
from xavyo_siem.format import FORMAT_OPTIONS, make_formatter
from xavyo_siem.model import (
    DEFAULT_RATE_LIMIT,
    AuditEvent,
    DeliveryType,
    EventFilter,
    ExportFormat,
    RateLimit,
    SiemDestination,
    to_epoch_us,
)
from xavyo_siem.store import dead_letters as letters
from xavyo_siem.store import destinations as rows
from xavyo_siem.store import writing
from xavyo_siem.store.events import START, EventCursor, head_cursor
from xavyo_siem.store.scope import scope_to_tenant
from xavyo_siem.store.tables import audit_events
from xavyo_siem.trail import Action, Actor, Change, audited, record

__all__ = [
    "FORMAT_OPTIONS",
    "CheckedDestination",
    "DestinationSpec",
    "add_destination",
    "check_destination",
    "find_destination",
    "format_key",
    "formatter_for",
    "purge_dead_letters",
    "remove_destination",
    "replay_dead_letters",
    "set_enabled",
    "spec_of",
    "update_destination",
]

Formatter = Callable[[AuditEvent], str]


_SYSLOG_TYPES: Final = frozenset(
    (
        DeliveryType.SYSLOG_TCP,
        DeliveryType.SYSLOG_TLS,
        DeliveryType.SYSLOG_UDP,
        DeliveryType.SYSLOG_RELP,
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationSpec:
    """What an operator asks for: every setting of a destination but its identity."""

    name: str
    delivery_type: DeliveryType
    format: ExportFormat
    endpoint: str
    options: Mapping[str, Any]
    filters: EventFilter = field(default_factory=EventFilter)
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT  # None: no limit
    enabled: bool = True


def formatter_for(spec: DestinationSpec | SiemDestination) -> Formatter:
    """The record formatter of a destination, from its format and its format options (the
    names in `FORMAT_OPTIONS`); raises InvalidDestination naming a bad option."""
    try:
        return make_formatter(
            spec.format,
            _format_options(spec),
            syslog_transport=spec.delivery_type in _SYSLOG_TYPES,
        )
    except EncodeError as exc:
        raise InvalidDestination(f"options.{exc.field}", exc.reason) from None


def format_key(spec: DestinationSpec | SiemDestination) -> Hashable:
    """What `formatter_for` builds a destination's formatter from: destinations with equal
    keys write every event alike."""
    options = sorted((name, repr(value)) for name, value in _format_options(spec).items())
    return spec.format, spec.delivery_type in _SYSLOG_TYPES, tuple(options)


def _format_options(spec: DestinationSpec | SiemDestination) -> dict[str, Any]:
    return {name: value for name, value in spec.options.items() if name in FORMAT_OPTIONS}


@dataclass(frozen=True, slots=True)
class CheckedDestination:
    """A destination's settings once validated: its transport config, its formatter, and
    what the pipeline does with a batch that keeps failing."""

    config: TransportConfig
    formatter: Formatter
    policy: DeliveryPolicy


def check_destination(spec: DestinationSpec, *, development: bool) -> CheckedDestination:
    """Validate every setting of `spec` without I/O; the transport config and the formatter
    on success (building the formatter is how its options are validated)."""
    name = spec.name
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise InvalidDestination("name", "must be non-empty, without surrounding spaces")
    if len(name) > 100 or not name.isprintable():
        raise InvalidDestination("name", "must be at most 100 printable characters")
    if spec.format is ExportFormat.CSV and spec.delivery_type is not DeliveryType.FILE:
        raise InvalidDestination("format", "csv is for file destinations and exports only")
    if (
        spec.delivery_type is DeliveryType.ELASTICSEARCH
        and spec.format not in ELASTICSEARCH_FORMATS
    ):
        raise InvalidDestination(
            "format",
            f"an elasticsearch destination stores JSON documents: use one of"
            f" {', '.join(sorted(ELASTICSEARCH_FORMATS))}, not {spec.format.value}",
        )
    if spec.delivery_type is DeliveryType.SENTINEL and spec.format.value not in SENTINEL_FORMATS:
        raise InvalidDestination(
            "format",
            f"a sentinel destination sends JSON objects (a stream's columns): use one of"
            f" {', '.join(sorted(SENTINEL_FORMATS))}, not {spec.format.value}",
        )
    if spec.rate_limit is not None:
        if not spec.rate_limit.events_per_s > 0:
            raise InvalidDestination("rate_limit.events_per_s", "must be a positive number")
        if spec.rate_limit.burst < 1:
            raise InvalidDestination("rate_limit.burst", "must be at least 1")
    transport_options = {
        key: value for key, value in spec.options.items() if key not in FORMAT_OPTIONS
    }
    config = validate_destination(
        spec.delivery_type, spec.endpoint, transport_options, development=development
    )
    lake = isinstance(config, S3Config) and config.layout == "security_lake"
    if lake and spec.format.value != "ocsf":
        raise InvalidDestination("format", "Amazon Security Lake takes OCSF: use format ocsf")
    return CheckedDestination(
        config, formatter_for(spec), DeliveryPolicy.from_options(spec.options)
    )


def _start_cursor(conn: Connection, tenant_id: UUID, start: str) -> EventCursor:
    """Where a new destination begins: `now`, `beginning`, or an ISO time (validated)."""
    if start == "beginning":
        return START
    if start == "now":
        return head_cursor(conn, tenant_id=tenant_id)
    where = datetime.fromisoformat(start)
    c = audit_events.c
    scope_to_tenant(conn, tenant_id)  # a read here, not in a store function: scope it
    first = conn.execute(
        select(c.txid, c.seq)
        .where(c.tenant_id == str(tenant_id), c.ts_us >= to_epoch_us(where))
        .order_by(c.txid, c.seq)
        .limit(1)
    ).first()
    return (
        head_cursor(conn, tenant_id=tenant_id)
        if first is None
        else EventCursor(first[0], first[1] - 1)
    )


@audited(Action.DESTINATION_CREATED)
def add_destination(
    engine: Engine,
    *,
    tenant_id: UUID,
    spec: DestinationSpec,
    secret: str | None,
    keyring: KeyRing | None,
    development: bool,
    egress: EgressGuard | None = None,
    actor: Actor | None = None,
) -> SiemDestination:
    """Validate and store a new destination; its credential is sealed before it is stored.

    The endpoint's host is resolved and every address checked by `egress` (default: no
    internal address allowed), see xavyo_siem.egress. `actor`'s request is recorded in the
    tenant's audit trail (xavyo_siem.trail), refused or not.
    """
    config = check_destination(spec, development=development).config
    if spec.delivery_type is DeliveryType.SPLUNK_HEC and not secret:
        raise InvalidDestination("secret", "a Splunk HEC destination needs its token")
    if spec.delivery_type is DeliveryType.SENTINEL:
        check_client_secret(secret)
    _check_secret(spec.delivery_type, secret)
    _check_reachable(config, egress)
    destination_id = uuid.uuid4()
    now = datetime.now(UTC)
    sealed = _seal(keyring, secret, tenant_id, destination_id, spec)
    destination = SiemDestination(
        id=destination_id,
        tenant_id=tenant_id,
        name=spec.name,
        delivery_type=spec.delivery_type,
        format=spec.format,
        endpoint=spec.endpoint,
        options=dict(spec.options),
        filters=spec.filters,
        rate_limit=spec.rate_limit,
        enabled=spec.enabled,
        created_at=now,
        updated_at=now,
    )
    with writing(engine) as conn:
        if rows.find_destination(conn, tenant_id=tenant_id, name=spec.name) is not None:
            raise InvalidDestination("name", f"the tenant already has a destination {spec.name!r}")
        cursor = _start_cursor(conn, tenant_id, config.start)
        created = rows.insert_destination(
            conn, destination=destination, sealed_secret=sealed, cursor=cursor
        )
        given = ["name", "delivery_type", "format", "endpoint", "enabled", *_option_names(spec)]
        given += ["filters"] if spec.filters != EventFilter() else []
        given += ["rate_limit"] if spec.rate_limit is not None else []
        record(
            conn, actor, tenant_id=tenant_id, action=Action.DESTINATION_CREATED,
            change=_about(created, [*given, *(["secret"] if secret is not None else [])]),
        )  # fmt: skip
        return created


def _option_names(spec: DestinationSpec) -> list[str]:
    return [f"options.{name}" for name in spec.options]


def _about(destination: SiemDestination, fields: Iterable[str] = ()) -> Change:
    """A change to `destination`, for the audit trail: its id and name, what was set (names
    only) and its type and format."""
    return Change(
        target=f"destination:{destination.id}",
        target_name=destination.name,
        fields=fields,
        details={
            "delivery_type": destination.delivery_type.value,
            "format": destination.format.value,
        },
    )


def _destination_target(kwargs: Mapping[str, Any]) -> str | None:
    return f"destination:{kwargs['destination_id']}" if "destination_id" in kwargs else None


def _check_secret(delivery_type: DeliveryType, secret: str | None) -> None:
    """Refuse a credential of the wrong form now rather than at the first delivery."""
    if secret is not None and delivery_type is DeliveryType.WEBHOOK:
        WebhookCredentials.from_secret(secret)
    if secret is not None and delivery_type is DeliveryType.SPLUNK_HEC:
        check_hec_token(secret)
    if secret is not None and delivery_type is DeliveryType.ELASTICSEARCH:
        elasticsearch_authorization(secret)
    if secret is not None and delivery_type is DeliveryType.SENTINEL:
        check_client_secret(secret)
    if secret is not None and delivery_type is DeliveryType.S3:
        S3Credentials.from_secret(secret)


def _check_reachable(config: TransportConfig, egress: EgressGuard | None) -> None:
    """The SSRF guard at save time: every host the transport will connect to resolves only
    to allowed addresses."""
    for host, port, field_name in connect_targets(config):
        try:
            (egress or EgressGuard()).resolve(host, port)
        except InvalidDestination as exc:
            raise InvalidDestination(field_name, exc.reason) from None


def _targets(destination: SiemDestination) -> tuple[ConnectTarget, ...]:
    """The hosts and ports `destination`'s transport connects to (none if its settings no
    longer validate)."""
    try:
        return connect_targets(check_destination(spec_of(destination), development=True).config)
    except InvalidDestination:
        return ()


def _seal(
    keyring: KeyRing | None,
    secret: str | None,
    tenant_id: UUID,
    destination_id: UUID,
    target: DestinationSpec | SiemDestination,
) -> str | None:
    """`secret` sealed for the destination and bound to its type and origins."""
    if secret is None:
        return None
    if keyring is None:
        raise CryptoError("a credential can only be stored encrypted, and no key is configured")
    return keyring.seal(
        secret,
        tenant_id=tenant_id,
        destination_id=destination_id,
        binding=credential_binding(target),
    )


def _check_credential_stays(current: SiemDestination, updated: SiemDestination) -> None:
    """Refuse to send a stored credential somewhere new: changing the delivery type or an
    origin it goes to (`credential_targets`) needs the secret again. The error names the
    field that moved it."""
    if not current.has_secret:
        return
    before = credential_targets(current)
    if updated.delivery_type is current.delivery_type and credential_targets(updated) == before:
        return
    if updated.delivery_type is not current.delivery_type:
        field_name, what = "delivery_type", "the delivery type"
    elif (
        updated.endpoint != current.endpoint
        and credential_targets(replace(current, endpoint=updated.endpoint)) != before
    ):
        field_name, what = "endpoint", "the endpoint's scheme, host or port"
    else:
        moved = sorted(
            name
            for name in {*current.options, *updated.options}
            if current.options.get(name) != updated.options.get(name)
        )
        field_name = f"options.{moved[0]}" if moved else "endpoint"
        what = "where the credential is sent"
    raise InvalidDestination(
        field_name,
        f"changing {what} needs the secret again: give the secret with this change"
        " (the stored one stays bound to where it was given for)",
    )


def _get(conn: Connection, tenant_id: UUID, destination_id: UUID) -> SiemDestination:
    found = rows.get_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
    if found is None:
        raise InvalidDestination("destination", f"no destination {destination_id} for this tenant")
    return found


def find_destination(engine: Engine, *, tenant_id: UUID, name_or_id: str | UUID) -> SiemDestination:
    """The tenant's destination `name_or_id`: by its name within the tenant, or by its id.

    A `UUID` is an id. Text is a name, or else an id written as text (a name is looked up
    first, so a destination is always found by its own name). When the tenant has no such
    destination, `InvalidDestination` on field `destination` names it (the API answers 404).
    """
    with engine.connect() as conn:
        found = rows.find_by_name_or_id(conn, tenant_id=tenant_id, name_or_id=name_or_id)
    if found is None:
        raise InvalidDestination(
            "destination", f"tenant {tenant_id} has no destination {str(name_or_id)!r}"
        )
    return found


@audited(Action.DESTINATION_UPDATED, target=_destination_target)
def update_destination(
    engine: Engine,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    changes: Mapping[str, Any],
    secret: str | None = None,
    keyring: KeyRing | None,
    development: bool,
    egress: EgressGuard | None = None,
    actor: Actor | None = None,
) -> SiemDestination:
    """Change some settings (`name`, `endpoint`, `format`, `options`, `filters`,
    `rate_limit`, `enabled`); options given are merged, None removes one. A new secret
    replaces the old one. Everything is validated before anything is written; a new
    endpoint is checked by the SSRF guard (`egress`) as in `add_destination`.

    A stored credential stays bound to where it was given for: a change of an origin it is
    sent to (`credential_targets`: the endpoint's scheme, host or port, or an option naming
    a URL) is refused unless the secret comes with it (`InvalidDestination` naming the
    field). A path, a query or any other option changes without it."""
    allowed = {"name", "endpoint", "format", "options", "filters", "rate_limit", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidDestination(sorted(unknown)[0], "cannot be changed")
    with writing(engine) as conn:
        current = _get(conn, tenant_id, destination_id)
        options = dict(current.options)
        for key, value in (changes.get("options") or {}).items():
            if value is None:
                options.pop(key, None)
            else:
                options[key] = value
        try:
            filters = (
                EventFilter.from_dict(changes["filters"])
                if "filters" in changes
                else current.filters
            )
        except InvalidFilter as exc:
            raise InvalidDestination(exc.field, exc.reason) from None
        updated = replace(
            current,
            name=changes.get("name", current.name),
            endpoint=changes.get("endpoint", current.endpoint),
            format=ExportFormat(changes.get("format", current.format)),
            options=options,
            filters=filters,
            rate_limit=changes.get("rate_limit", current.rate_limit),
            enabled=bool(changes.get("enabled", current.enabled)),
        )
        config = check_destination(spec_of(updated), development=development).config
        _check_secret(updated.delivery_type, secret)
        if secret is None:
            _check_credential_stays(current, updated)
        if updated.endpoint != current.endpoint or _targets(current) != connect_targets(config):
            _check_reachable(config, egress)
        if updated.name != current.name:
            clash = rows.find_destination(conn, tenant_id=tenant_id, name=updated.name)
            if clash is not None:
                raise InvalidDestination("name", f"the tenant already has {updated.name!r}")
        result = rows.update_destination(conn, destination=updated, now=datetime.now(UTC))
        if secret is not None:
            rows.set_sealed_secret(
                conn,
                tenant_id=tenant_id,
                destination_id=destination_id,
                sealed=_seal(keyring, secret, tenant_id, destination_id, updated),
            )
            result = rows.get_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
        assert result is not None
        _record_update(conn, actor, result, changes, secret_given=secret is not None)
        return result


def _record_update(
    conn: Connection,
    actor: Actor | None,
    updated: SiemDestination,
    changes: Mapping[str, Any],
    *,
    secret_given: bool,
) -> None:
    """Record an update: the names of the settings changed, options by name."""
    names = [name for name in changes if name != "options"]
    names += [f"options.{key}" for key in changes.get("options") or {}]
    names += ["secret"] if secret_given else []
    change = _about(updated, names)
    record(
        conn, actor, tenant_id=updated.tenant_id, action=Action.DESTINATION_UPDATED, change=change
    )


def _enabling(kwargs: Mapping[str, Any]) -> Action:
    return Action.DESTINATION_ENABLED if kwargs.get("enabled") else Action.DESTINATION_DISABLED


@audited(_enabling, target=_destination_target)
def set_enabled(
    engine: Engine,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    enabled: bool,
    actor: Actor | None = None,
) -> SiemDestination:
    """Enable or disable delivery to a destination (its cursor is kept either way)."""
    with writing(engine) as conn:
        current = _get(conn, tenant_id, destination_id)
        result = rows.update_destination(
            conn, destination=replace(current, enabled=enabled), now=datetime.now(UTC)
        )
        assert result is not None
        action = _enabling({"enabled": enabled})
        record(conn, actor, tenant_id=tenant_id, action=action, change=_about(result, ["enabled"]))
    return result


@audited(Action.DESTINATION_DELETED, target=_destination_target)
def remove_destination(
    engine: Engine, *, tenant_id: UUID, destination_id: UUID, actor: Actor | None = None
) -> None:
    """Delete a destination with its cursor, health and dead letters."""
    with writing(engine) as conn:
        current = _get(conn, tenant_id, destination_id)
        rows.delete_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
        record(
            conn,
            actor,
            tenant_id=tenant_id,
            action=Action.DESTINATION_DELETED,
            change=_about(current),
        )


@audited(Action.DEAD_LETTERS_REPLAYED, target=_destination_target)
def replay_dead_letters(
    engine: Engine,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    ids: Sequence[int] | None = None,
    actor: Actor | None = None,
) -> int:
    """Queue the destination's dead letters (`ids`, or all) to be sent again by its worker;
    how many were queued."""
    with writing(engine) as conn:
        current = _get(conn, tenant_id, destination_id)
        queued = letters.request_replay(
            conn, tenant_id=tenant_id, destination_id=destination_id, ids=ids
        )
        change = _letters_change(current, ids, queued)
        record(conn, actor, tenant_id=tenant_id, action=Action.DEAD_LETTERS_REPLAYED, change=change)
    return queued


@audited(Action.DEAD_LETTERS_PURGED, target=_destination_target)
def purge_dead_letters(
    engine: Engine,
    *,
    tenant_id: UUID,
    destination_id: UUID,
    ids: Sequence[int] | None = None,
    actor: Actor | None = None,
) -> int:
    """Delete the destination's dead letters (`ids`, or all) for good; how many were."""
    with writing(engine) as conn:
        current = _get(conn, tenant_id, destination_id)
        purged = letters.remove_dead_letters(
            conn, tenant_id=tenant_id, destination_id=destination_id, ids=ids
        )
        change = _letters_change(current, ids, purged)
        record(conn, actor, tenant_id=tenant_id, action=Action.DEAD_LETTERS_PURGED, change=change)
    return purged


def _letters_change(destination: SiemDestination, ids: Sequence[int] | None, count: int) -> Change:
    about = _about(destination)
    selection = "all" if ids is None else ",".join(str(i) for i in ids[:50])
    return replace(about, details={**about.details, "dead_letters": selection, "count": str(count)})


def spec_of(destination: SiemDestination) -> DestinationSpec:
    """The settings of a stored destination, as `check_destination` validates them."""
    return DestinationSpec(
        name=destination.name,
        delivery_type=destination.delivery_type,
        format=destination.format,
        endpoint=destination.endpoint,
        options=destination.options,
        filters=destination.filters,
        rate_limit=destination.rate_limit,
        enabled=destination.enabled,
    )
