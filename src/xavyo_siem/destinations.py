"""Managing destinations: validate, seal the credential, store; and open one for delivery.

The command line and the HTTP API both call these functions; neither validates on its own.
Validation is pure and names the bad field (`options.framing: must be octet or lf`); only
then is anything written, in one transaction, so a bad request changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Connection, Engine, select

from xavyo_siem.crypto import CryptoError, KeyRing
from xavyo_siem.delivery import (
    Delivered,
    Record,
    Transport,
    TransportConfig,
    open_transport,
    validate_destination,
)
from xavyo_siem.delivery.webhook import WebhookCredentials
from xavyo_siem.egress import EgressDenied, EgressGuard, check_egress, endpoint_host_port
from xavyo_siem.errors import EncodeError, InvalidDestination, InvalidFilter, SiemError
from xavyo_siem.format import FORMAT_OPTIONS, make_formatter
from xavyo_siem.model import (
    AuditEvent,
    DeliveryHealth,
    DeliveryType,
    EventCategory,
    EventFilter,
    ExportFormat,
    Outcome,
    RateLimit,
    SiemDestination,
    to_epoch_us,
)
from xavyo_siem.settings import Settings
from xavyo_siem.store import destinations as rows
from xavyo_siem.store import writing
from xavyo_siem.store.events import START, EventCursor, head_cursor, measure_lag
from xavyo_siem.store.state import read_health, read_state
from xavyo_siem.store.tables import audit_events

__all__ = [
    "FORMAT_OPTIONS",
    "DestinationSpec",
    "TestStep",
    "add_destination",
    "check_destination",
    "destination_health",
    "open_destination",
    "remove_destination",
    "set_enabled",
    "test_destination",
    "update_destination",
]

Formatter = Callable[[AuditEvent], str]

_SYSLOG_TYPES: Final = frozenset(
    (DeliveryType.SYSLOG_TCP, DeliveryType.SYSLOG_TLS, DeliveryType.SYSLOG_UDP)
)
_AUTH_FAILURE: Final = re.compile(r"HTTP 40[13]\b|HEC code [1-4]\b|\btoken\b")


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationSpec:
    """What an operator asks for: every setting of a destination but its identity."""

    name: str
    delivery_type: DeliveryType
    format: ExportFormat
    endpoint: str
    options: Mapping[str, Any]
    filters: EventFilter = field(default_factory=EventFilter)
    rate_limit: RateLimit | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TestStep:
    """One step of `destination test`: what was tried, whether it worked, and the detail."""

    step: str
    ok: bool
    detail: str


def _formatter(spec: DestinationSpec | SiemDestination) -> Formatter:
    """The record formatter of a destination, from its format options (see FORMAT_OPTIONS)."""
    return make_formatter(
        spec.format,
        {name: value for name, value in spec.options.items() if name in FORMAT_OPTIONS},
        syslog_transport=spec.delivery_type in _SYSLOG_TYPES,
    )


def check_destination(spec: DestinationSpec, *, development: bool) -> TransportConfig:
    """Validate every setting of `spec` without I/O; the transport config on success."""
    name = spec.name
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise InvalidDestination("name", "must be non-empty, without surrounding spaces")
    if len(name) > 100 or not name.isprintable():
        raise InvalidDestination("name", "must be at most 100 printable characters")
    if spec.format is ExportFormat.CSV and spec.delivery_type is not DeliveryType.FILE:
        raise InvalidDestination("format", "csv is for file destinations and exports only")
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
    try:
        _formatter(spec)
    except EncodeError as exc:
        raise InvalidDestination(f"options.{exc.field}", exc.reason) from None
    return config


def _start_cursor(conn: Connection, tenant_id: UUID, start: str) -> EventCursor:
    """Where a new destination begins: `now`, `beginning`, or an ISO time (validated)."""
    if start == "beginning":
        return START
    if start == "now":
        return head_cursor(conn, tenant_id=tenant_id)
    where = datetime.fromisoformat(start)
    c = audit_events.c
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


def add_destination(
    engine: Engine,
    *,
    tenant_id: UUID,
    spec: DestinationSpec,
    secret: str | None,
    keyring: KeyRing | None,
    development: bool,
    egress: EgressGuard | None = None,
) -> SiemDestination:
    """Validate and store a new destination; its credential is sealed before it is stored.

    The endpoint's host is resolved and every address checked by `egress` (default: no
    internal address allowed), see xavyo_siem.egress.
    """
    config = check_destination(spec, development=development)
    if spec.delivery_type is DeliveryType.SPLUNK_HEC and not secret:
        raise InvalidDestination("secret", "a Splunk HEC destination needs its token")
    _check_secret(spec.delivery_type, secret)
    _check_reachable(spec.endpoint, egress)
    destination_id = uuid.uuid4()
    now = datetime.now(UTC)
    sealed = _seal(keyring, secret, tenant_id, destination_id)
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
        return rows.insert_destination(
            conn, destination=destination, sealed_secret=sealed, cursor=cursor
        )


def _check_secret(delivery_type: DeliveryType, secret: str | None) -> None:
    """Refuse a credential of the wrong form now rather than at the first delivery."""
    if secret is not None and delivery_type is DeliveryType.WEBHOOK:
        WebhookCredentials.from_secret(secret)


def _check_reachable(endpoint: str, egress: EgressGuard | None) -> None:
    """The SSRF guard at save time: the endpoint's host resolves only to allowed addresses."""
    target = endpoint_host_port(endpoint)
    if target is not None:
        (egress or EgressGuard()).resolve(*target)


def _seal(
    keyring: KeyRing | None, secret: str | None, tenant_id: UUID, destination_id: UUID
) -> str | None:
    if secret is None:
        return None
    if keyring is None:
        raise CryptoError("a credential can only be stored encrypted, and no key is configured")
    return keyring.seal(secret, tenant_id=tenant_id, destination_id=destination_id)


def _get(conn: Connection, tenant_id: UUID, destination_id: UUID) -> SiemDestination:
    found = rows.get_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
    if found is None:
        raise InvalidDestination("destination", f"no destination {destination_id} for this tenant")
    return found


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
) -> SiemDestination:
    """Change some settings (`name`, `endpoint`, `format`, `options`, `filters`,
    `rate_limit`, `enabled`); options given are merged, None removes one. A new secret
    replaces the old one. Everything is validated before anything is written; a new
    endpoint is checked by the SSRF guard (`egress`) as in `add_destination`."""
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
        check_destination(_spec_of(updated), development=development)
        _check_secret(updated.delivery_type, secret)
        if updated.endpoint != current.endpoint:
            _check_reachable(updated.endpoint, egress)
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
                sealed=_seal(keyring, secret, tenant_id, destination_id),
            )
            result = rows.get_destination(conn, tenant_id=tenant_id, destination_id=destination_id)
        assert result is not None
        return result


def set_enabled(
    engine: Engine, *, tenant_id: UUID, destination_id: UUID, enabled: bool
) -> SiemDestination:
    """Enable or disable delivery to a destination (its cursor is kept either way)."""
    with writing(engine) as conn:
        current = _get(conn, tenant_id, destination_id)
        result = rows.update_destination(
            conn, destination=replace(current, enabled=enabled), now=datetime.now(UTC)
        )
    assert result is not None
    return result


def remove_destination(engine: Engine, *, tenant_id: UUID, destination_id: UUID) -> None:
    """Delete a destination with its cursor, health and dead letters."""
    with writing(engine) as conn:
        if not rows.delete_destination(conn, tenant_id=tenant_id, destination_id=destination_id):
            raise InvalidDestination(
                "destination", f"no destination {destination_id} for this tenant"
            )


def _spec_of(destination: SiemDestination) -> DestinationSpec:
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


async def open_destination(
    engine: Engine,
    destination: SiemDestination,
    *,
    settings: Settings,
    keyring: KeyRing | None,
    egress: EgressGuard | None = None,
) -> tuple[Transport, Formatter]:
    """The transport and formatter that deliver to `destination`, its secret decrypted.

    The transport connects only to addresses the SSRF guard allows, checked at every
    connect (`egress`; default: the guard of `settings.egress_allow`).
    """
    spec = _spec_of(destination)
    config = check_destination(spec, development=settings.development)

    def read() -> str | None:
        with engine.connect() as conn:
            return rows.read_sealed_secret(
                conn, tenant_id=destination.tenant_id, destination_id=destination.id
            )

    sealed = await asyncio.to_thread(read)
    secret = None
    if sealed is not None:
        if keyring is None:
            raise CryptoError("the destination's credential is sealed and no key is configured")
        secret = keyring.open(
            sealed, tenant_id=destination.tenant_id, destination_id=destination.id
        )
    transport = open_transport(
        config,
        secret=secret,
        event_is_json=destination.format is ExportFormat.JSON,
        development=settings.development,
        egress=EgressGuard.from_settings(settings) if egress is None else egress,
    )
    return transport, _formatter(spec)


def test_event(tenant_id: UUID) -> AuditEvent:
    """The synthetic event `destination test` sends: clearly a test, of this tenant."""
    return AuditEvent(
        event_id=uuid.uuid4(),
        tenant_id=tenant_id,
        timestamp=datetime.now(UTC),
        event_type="XAVYO_SIEM_TEST",
        category=EventCategory.ADMINISTRATIVE,
        severity=0,
        event_name="xavyo-siem destination test",
        action="test_delivery",
        outcome=Outcome.SUCCESS,
        reason="sent by `xavyo-siem destination test`; safe to ignore",
    )


async def test_destination(
    engine: Engine,
    destination: SiemDestination,
    *,
    settings: Settings,
    keyring: KeyRing | None,
    egress: EgressGuard | None = None,  # noqa: PT028 - not a pytest test
) -> list[TestStep]:
    """Check the settings, resolve, probe the destination, then send one test event.

    The steps, in order, stopping at the first failure: `configuration` (settings valid,
    credential opens), `resolve` (the host's addresses, each allowed by the SSRF guard),
    `connect`, `tls` (TLS transports: the peer's certificate verified), `authenticate`
    (HEC token, webhook credentials), `deliver` (the test event accepted).
    """
    guard = EgressGuard.from_settings(settings) if egress is None else egress
    steps: list[TestStep] = []
    try:
        transport, formatter = await open_destination(
            engine, destination, settings=settings, keyring=keyring, egress=guard
        )
    except SiemError as exc:
        return [TestStep("configuration", False, str(exc))]
    steps.append(TestStep("configuration", True, f"{destination.delivery_type.value} ok"))
    try:
        target = endpoint_host_port(destination.endpoint)
        if target is not None:
            steps.append(await _resolve_step(*target, guard))
            if not steps[-1].ok:
                return steps
        probe = await transport.check()
        steps += _probe_steps(destination, probe)
        if isinstance(probe, Delivered):
            event = test_event(destination.tenant_id)
            record = Record.of(event, formatter(event))
            result = await transport.send([record])
            steps += _delivery_steps(destination, result)
    finally:
        await transport.aclose()
    return steps


async def _resolve_step(host: str, port: int, guard: EgressGuard) -> TestStep:
    try:
        infos = await check_egress(host, port, guard)
    except EgressDenied as exc:
        return TestStep("resolve", False, exc.reason)
    except (OSError, TimeoutError) as exc:
        detail = getattr(exc, "strerror", None) or type(exc).__name__
        return TestStep("resolve", False, f"{host} does not resolve ({detail})")
    addresses = ", ".join(dict.fromkeys(str(info[4][0]) for info in infos))
    return TestStep("resolve", True, f"{host}: {addresses}")


def _uses_tls(destination: SiemDestination) -> bool:
    return destination.delivery_type is DeliveryType.SYSLOG_TLS or (
        destination.endpoint.lower().startswith("https://")
    )


def _is_auth_failure(reason: str) -> bool:
    """Whether a transport's reason says the peer refused our credential."""
    return _AUTH_FAILURE.search(reason) is not None


def _probe_steps(destination: SiemDestination, probe: object) -> list[TestStep]:
    """`transport.check()` as steps: connect, then TLS and (HEC) the token probe."""
    tls = _uses_tls(destination)
    hec = destination.delivery_type is DeliveryType.SPLUNK_HEC
    connected = TestStep("connect", True, "connected")
    verified = TestStep("tls", True, _tls_detail(destination))
    if isinstance(probe, Delivered):
        steps = [connected] + ([verified] if tls else [])
        if hec:
            steps.append(TestStep("authenticate", True, "the HEC token was accepted"))
        return steps
    reason = _describe(probe)
    if tls and ("TLS" in reason or "certificate" in reason):
        return [connected, TestStep("tls", False, reason)]
    if hec and _is_auth_failure(reason):
        return [connected, *([verified] if tls else []), TestStep("authenticate", False, reason)]
    return [TestStep("connect", False, reason)]


def _tls_detail(destination: SiemDestination) -> str:
    options = destination.options
    if str(options.get("tls_verify", "true")).strip().lower() in ("false", "no", "off", "0"):
        return "handshake done; verification is OFF (development mode)"
    if options.get("fingerprint") and not options.get("ca_file"):
        return "the peer's certificate matches the pinned fingerprint"
    return "the peer's certificate chain and host name verified"


def _delivery_steps(destination: SiemDestination, result: object) -> list[TestStep]:
    """The test event's send as steps: webhook credentials, then acceptance."""
    webhook = destination.delivery_type is DeliveryType.WEBHOOK
    if isinstance(result, Delivered):
        steps = []
        if webhook and destination.has_secret:
            steps.append(TestStep("authenticate", True, "the receiver accepted our credentials"))
        return [*steps, TestStep("deliver", True, "accepted")]
    reason = _describe(result)
    if webhook and _is_auth_failure(reason):
        return [TestStep("authenticate", False, reason)]
    return [TestStep("deliver", False, reason)]


def _describe(result: object) -> str:
    if isinstance(result, Delivered):
        return "accepted"
    reason = getattr(result, "reason", None)
    if reason:
        return str(reason)
    return repr(result)


def destination_health(conn: Connection, destination: SiemDestination) -> DeliveryHealth:
    """The destination's stored health with its lag measured now (events and seconds)."""
    state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    cursor = START if state is None else state.cursor
    lag_events, oldest = measure_lag(
        conn, tenant_id=destination.tenant_id, after=cursor, filter=destination.filters
    )
    lag_seconds = 0.0 if oldest is None else max((datetime.now(UTC) - oldest).total_seconds(), 0)
    found = read_health(
        conn,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        lag_events=lag_events,
        lag_seconds=lag_seconds,
    )
    assert found is not None
    return found
