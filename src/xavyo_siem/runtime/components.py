"""Opening a destination's components for delivery, and testing a destination end to end.

`open_destination` turns a stored destination into what its delivery loop needs: the
transport (its credential unsealed, the SSRF guard checked at every connect), the record
formatter, and the events per batch of its validated transport config. `test_destination`
opens one and walks it through each step a delivery depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from xavyo_siem.crypto import CryptoError, KeyRing
from xavyo_siem.delivery import (
    Delivered,
    DeliveryResult,
    Record,
    S3Config,
    Transport,
    connect_targets,
    credential_binding,
    credential_required,
    open_transport,
)
from xavyo_siem.destinations import check_destination, format_key, spec_of
from xavyo_siem.egress import EgressDenied, EgressGuard, check_egress
from xavyo_siem.errors import SiemError
from xavyo_siem.format import JSON_OBJECT_FORMATS, csv_header
from xavyo_siem.model import (
    AuditEvent,
    DeliveryType,
    EventCategory,
    ExportFormat,
    Outcome,
    SiemDestination,
)
from xavyo_siem.pipeline.batches import SharedFormats
from xavyo_siem.pipeline.loop import DestinationComponents
from xavyo_siem.runtime.store_gate import StoreUnavailable, is_outage
from xavyo_siem.settings import Settings
from xavyo_siem.store import destinations as rows
from xavyo_siem.trail import Action, Actor, Change, management_event, record_now

__all__ = ["DestinationOpener", "TestStep", "open_destination", "test_destination", "test_event"]

_AUTH_FAILURE: Final = re.compile(r"HTTP 40[13]\b|HEC code [1-4]\b|\btoken\b")
# The types whose probe (`transport.check()`) presents the credential, and what its
# success proves.
_PROBE_AUTHENTICATES: Final = {
    DeliveryType.SPLUNK_HEC: "the HEC token was accepted",
    DeliveryType.ELASTICSEARCH: "the cluster accepted the credential",
    DeliveryType.S3: "the server accepted the signed request",
}


@dataclass(frozen=True, slots=True)
class TestStep:
    """One step of `destination test`: what was tried, whether it worked, and the detail."""

    step: str
    ok: bool
    detail: str


async def open_destination(
    engine: Engine,
    destination: SiemDestination,
    *,
    settings: Settings,
    keyring: KeyRing | None,
    egress: EgressGuard | None = None,
) -> DestinationComponents:
    """The transport, formatter and batch size that deliver to `destination`, its secret
    decrypted.

    The settings and the sealed secret are read again together, from one row of the store,
    and everything is built from that row: the secret opens only under its binding (the
    type and the origins the transport sends it to, `credential_binding`), so one given for
    another endpoint (a direct change of the store) raises `CryptoError`, and a type that
    needs a credential raises `CryptoError` without one: nothing is ever sent in its place.
    A destination changed over the API meanwhile opens with its new settings and secret. The
    transport connects only to addresses the SSRF guard allows, checked at every connect
    (`egress`; default: the guard of `settings.egress_allow`). The batch size is the
    destination's `batch_max_events`, or its type's default when it has none.
    """

    def read() -> tuple[SiemDestination, str | None] | None:
        with _outage_is_unavailable(), engine.connect() as conn:
            return rows.get_destination_with_secret(
                conn, tenant_id=destination.tenant_id, destination_id=destination.id
            )

    found = await asyncio.to_thread(read)
    if found is None:
        raise SiemError("destination: no longer exists")
    return _components(*found, settings=settings, keyring=keyring, egress=egress)


_Found = tuple[SiemDestination, str | None] | None  # a destination's row and sealed credential


class DestinationOpener:
    """`open_destination` for a worker's many destinations: the opens that start together
    (a worker starting its turns, a backlog reaching thousands of destinations at once)
    read their rows from the store in one statement, not one connection each.

    Each destination is still built from its own row, read when it is opened, with its
    sealed credential (see `open_destination`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: Settings,
        keyring: KeyRing | None,
        egress: EgressGuard | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.keyring = keyring
        self.egress = EgressGuard.from_settings(settings) if egress is None else egress
        self._waiting: dict[tuple[UUID, UUID], list[asyncio.Future[_Found]]] = {}
        self._reading: asyncio.Task[None] | None = None
        self._formats = SharedFormats()

    async def __call__(self, destination: SiemDestination) -> DestinationComponents:
        future: asyncio.Future[_Found] = asyncio.get_running_loop().create_future()
        key = (destination.tenant_id, destination.id)
        self._waiting.setdefault(key, []).append(future)
        if self._reading is None:
            self._reading = asyncio.create_task(self._read())
        found = await future
        if found is None:
            raise SiemError("destination: no longer exists")
        opened = _components(
            *found, settings=self.settings, keyring=self.keyring, egress=self.egress
        )
        shared = self._formats.formatter(format_key(found[0]), opened.formatter)
        return replace(opened, formatter=shared)

    async def _read(self) -> None:
        """Read the rows of every open waiting, once the opens started with it joined."""
        await asyncio.sleep(0)
        waiting, self._waiting = self._waiting, {}
        self._reading = None
        engine = self.engine

        def read() -> dict[UUID, tuple[SiemDestination, str | None]]:
            with _outage_is_unavailable(), engine.connect() as conn:
                return rows.get_destinations_with_secrets(conn, destinations_of=list(waiting))

        try:
            found = await asyncio.to_thread(read)
        except BaseException as exc:  # every open waiting learns why
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, ident), futures in waiting.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(ident))


@contextlib.contextmanager
def _outage_is_unavailable() -> Iterator[None]:
    """The store being away is not the destination's fault: `StoreUnavailable`."""
    try:
        yield
    except DBAPIError as exc:
        if is_outage(exc):
            raise StoreUnavailable(str(exc.orig)) from exc
        raise


def _components(
    destination: SiemDestination,
    sealed: str | None,
    *,
    settings: Settings,
    keyring: KeyRing | None,
    egress: EgressGuard | None,
) -> DestinationComponents:
    """What delivers to `destination`, built from its row and its sealed credential."""
    checked = check_destination(spec_of(destination), development=settings.development)
    config, formatter = checked.config, checked.formatter
    secret = None
    if sealed is None and credential_required(destination.delivery_type):
        raise CryptoError(
            f"credential: a {destination.delivery_type.value} destination has no stored"
            " credential; nothing is sent without it (give the secret again)"
        )
    if sealed is not None:
        if keyring is None:
            raise CryptoError("the destination's credential is sealed and no key is configured")
        try:
            secret = keyring.open(
                sealed,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                binding=credential_binding(destination),
            )
        except CryptoError as exc:
            raise CryptoError(f"credential: refused, nothing is sent: {exc}") from None
    transport = open_transport(
        config,
        secret=secret,
        event_is_json=destination.format in JSON_OBJECT_FORMATS,
        development=settings.development,
        egress=EgressGuard.from_settings(settings) if egress is None else egress,
        file_header=csv_header() if destination.format is ExportFormat.CSV else None,
        tenant_id=destination.tenant_id,
    )
    linger_s = config.object_max_age_s if isinstance(config, S3Config) else 0.0
    return DestinationComponents(
        transport, formatter, config.batch_max_events, checked.policy, linger_s
    )


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
    actor: Actor | None = None,  # noqa: PT028 - not a pytest test
) -> list[TestStep]:
    """Check the settings, resolve, probe the destination, then send one test event.

    The steps, in order, stopping at the first failure: `configuration` (settings valid,
    credential opens), `resolve` (the host's addresses, each allowed by the SSRF guard),
    `connect`, `tls` (TLS transports: the peer's certificate verified), `authenticate`
    (HEC token, Elasticsearch credential, webhook credentials), `deliver` (the test event
    accepted). A sentinel destination resolves both of its hosts, then `token` (Microsoft
    Entra ID issued one), `connect` and `tls` (the ingestion endpoint), and `ingest` (the
    Logs Ingestion API accepted the test event). `actor`'s test is recorded in the tenant's
    audit trail: the steps passed, and the first that failed (its name only: a peer's answer
    stays out of the trail).
    """
    steps = await _test_steps(
        engine, destination, settings=settings, keyring=keyring, egress=egress
    )
    if actor is not None:
        failed = next((step.step for step in steps if not step.ok), None)
        change = Change(
            target=f"destination:{destination.id}",
            target_name=destination.name,
            details={"steps": ",".join(step.step for step in steps if step.ok)},
        )
        event = management_event(
            tenant_id=destination.tenant_id,
            actor=actor,
            action=Action.DESTINATION_TESTED,
            change=change,
            outcome=Outcome.SUCCESS if failed is None else Outcome.FAILURE,
            reason=None if failed is None else f"step {failed} failed",
        )
        await asyncio.to_thread(record_now, engine, event)
    return steps


async def _test_steps(
    engine: Engine,
    destination: SiemDestination,
    *,
    settings: Settings,
    keyring: KeyRing | None,
    egress: EgressGuard | None,
) -> list[TestStep]:
    guard = EgressGuard.from_settings(settings) if egress is None else egress
    steps: list[TestStep] = []
    try:
        opened = await open_destination(
            engine, destination, settings=settings, keyring=keyring, egress=guard
        )
    except SiemError as exc:
        return [TestStep("configuration", False, str(exc))]
    steps.append(TestStep("configuration", True, f"{destination.delivery_type.value} ok"))
    transport = opened.transport
    try:
        checked = check_destination(spec_of(destination), development=settings.development)
        for host, port, _field in connect_targets(checked.config):
            steps.append(await _resolve_step(host, port, guard))
            if not steps[-1].ok:
                return steps
        probe = await transport.check()
        steps += _probe_steps(destination, probe)
        if isinstance(probe, Delivered):
            event = test_event(destination.tenant_id)
            record = Record.of(event, opened.formatter(event))
            result = await transport.send([record])
            accepted = "accepted"
            if destination.delivery_type is DeliveryType.SYSLOG_UDP and isinstance(
                result, Delivered
            ):
                result, accepted = await _udp_answer(transport)
            steps += _delivery_steps(destination, result, accepted=accepted)
    finally:
        await transport.aclose()
    return steps


# How long `destination test` waits for an ICMP "port unreachable" after a UDP datagram.
_UDP_ANSWER_S = 0.5


async def _udp_answer(transport: Transport) -> tuple[DeliveryResult, str]:
    """UDP has no acknowledgement: the best a test can do is wait briefly for an ICMP error
    (nobody listening on the port), and otherwise say that nothing came back."""
    await asyncio.sleep(_UDP_ANSWER_S)
    heard = await transport.check()
    return heard, (
        f"sent; no ICMP error came back within {_UDP_ANSWER_S:g} s (UDP has no "
        "acknowledgement: check that the receiver got the test event)"
    )


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
    relp_tls = destination.delivery_type is DeliveryType.SYSLOG_RELP and str(
        destination.options.get("tls", "false")
    ).strip().lower() in ("true", "yes", "on", "1")
    s3_tls = destination.delivery_type is DeliveryType.S3 and not str(
        destination.options.get("endpoint_url") or "https://"
    ).lower().startswith("http://")
    return (
        relp_tls
        or s3_tls
        or destination.delivery_type is DeliveryType.SYSLOG_TLS
        or destination.endpoint.lower().startswith("https://")
    )


def _is_auth_failure(reason: str) -> bool:
    """Whether a transport's reason says the peer refused our credential."""
    return _AUTH_FAILURE.search(reason) is not None


def _probe_steps(destination: SiemDestination, probe: object) -> list[TestStep]:
    """`transport.check()` as steps: connect, then TLS and (HEC, Elasticsearch, S3) the
    credential probe."""
    if destination.delivery_type is DeliveryType.SENTINEL:
        return _sentinel_probe_steps(destination, probe)
    tls = _uses_tls(destination)
    authenticated = _PROBE_AUTHENTICATES.get(destination.delivery_type)
    connected = TestStep("connect", True, "connected")
    verified = TestStep("tls", True, _tls_detail(destination))
    if isinstance(probe, Delivered):
        steps = [connected] + ([verified] if tls else [])
        if authenticated is not None:
            steps.append(TestStep("authenticate", True, authenticated))
        return steps
    reason = _describe(probe)
    if tls and ("TLS" in reason or "certificate" in reason):
        return [connected, TestStep("tls", False, reason)]
    if authenticated is not None and _is_auth_failure(reason):
        return [connected, *([verified] if tls else []), TestStep("authenticate", False, reason)]
    return [TestStep("connect", False, reason)]


def _sentinel_probe_steps(destination: SiemDestination, probe: object) -> list[TestStep]:
    """A sentinel destination's `check()` as steps: the token, then the ingestion endpoint."""
    token = TestStep("token", True, "Microsoft Entra ID issued a token")
    connected = TestStep("connect", True, "reached the ingestion endpoint")
    if isinstance(probe, Delivered):
        tls = [TestStep("tls", True, _tls_detail(destination))] if _uses_tls(destination) else []
        return [token, connected, *tls]
    reason = _describe(probe)
    if reason.startswith("the token endpoint"):
        return [TestStep("token", False, reason)]
    if "TLS" in reason or "certificate" in reason:
        return [token, connected, TestStep("tls", False, reason)]
    return [token, TestStep("connect", False, reason)]


def _tls_detail(destination: SiemDestination) -> str:
    options = destination.options
    if str(options.get("tls_verify", "true")).strip().lower() in ("false", "no", "off", "0"):
        return "handshake done; verification is OFF (development mode)"
    if options.get("fingerprint") and not options.get("ca_file"):
        return "the peer's certificate matches the pinned fingerprint"
    return "the peer's certificate chain and host name verified"


def _delivery_steps(
    destination: SiemDestination, result: object, *, accepted: str = "accepted"
) -> list[TestStep]:
    """The test event's send as steps: webhook credentials, then acceptance."""
    webhook = destination.delivery_type is DeliveryType.WEBHOOK
    if destination.delivery_type is DeliveryType.SENTINEL:
        if isinstance(result, Delivered):
            return [TestStep("ingest", True, "the Logs Ingestion API accepted the test event")]
        return [TestStep("ingest", False, _describe(result))]
    if isinstance(result, Delivered):
        steps = []
        if webhook and destination.has_secret:
            steps.append(TestStep("authenticate", True, "the receiver accepted our credentials"))
        detail = getattr(result, "detail", None)
        return [*steps, TestStep("deliver", True, f"{accepted}: {detail}" if detail else accepted)]
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
