"""The isolation boundary around each destination: hostile endpoints and options, a transport
or a formatter with a bug, never stop the worker or another tenant's delivery, and the
failing destination's health says why with its circuit open."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from file_output import delivered_id_set
from hostile_strategies import (
    PEER_REPLIES,
    HostileDestination,
    hostile_destinations,
    loopback_resolver,
)
from xavyo_siem import delivery_health
from xavyo_siem import destinations as manage
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.delivery import Record, Transport
from xavyo_siem.delivery.base import DeliveryResult
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination, SiemError
from xavyo_siem.model import (
    AuditEvent,
    CircuitState,
    DeliveryHealth,
    DeliveryType,
    ExportFormat,
    SiemDestination,
)
from xavyo_siem.pipeline import (
    DestinationComponents,
    OpenComponents,
    PipelineSettings,
    RetryPolicy,
)
from xavyo_siem.runtime import Worker, WorkerSettings, open_destination
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events, make_engine, upgrade, writing
from xavyo_siem.store.destinations import insert_destination
from xavyo_siem.store.events import START

KEYS: Final = KeyRing.parse(new_key_text())
LOOPBACK: Final = ("127.0.0.0/8", "::1/128")
GUARD: Final = EgressGuard(allow=LOOPBACK, getaddrinfo=loopback_resolver)
QUICK: Final = WorkerSettings(
    lease_ttl_s=5,
    scan_interval_s=0.05,
    pipeline=PipelineSettings(
        poll_interval_s=0.02,
        retry=RetryPolicy(base_s=0.01, cap_s=0.1, misconfigured_cap_s=0.2),
    ),
)
TENANT_A: Final = UUID("0000000a-0000-4000-8000-000000000000")
OTHER_TENANTS: Final = (
    UUID("0000000b-0000-4000-8000-000000000000"),
    UUID("0000000c-0000-4000-8000-000000000000"),
    UUID("0000000d-0000-4000-8000-000000000000"),
)
WAIT_S: Final = 30.0  # a guard against a hang, not a speed check
SEND_BUG: Final = "send bug: the transport fell over (isolation test)"
FORMAT_BUG: Final = "format bug: the formatter fell over (isolation test)"


# -- helpers -----------------------------------------------------------------------------------


def events_of(tenant: UUID, count: int, seed: int) -> list[AuditEvent]:
    """`count` sample events of `tenant` (distinct ids for distinct seeds)."""
    return [replace(e, tenant_id=tenant) for e in generate_events(count, 1, seed=seed)]


def store(engine: Engine, events: Sequence[AuditEvent]) -> None:
    with engine.begin() as conn:
        append_events(conn, events)


def ids(events: Sequence[AuditEvent]) -> set[str]:
    return {str(e.event_id) for e in events}


def add_file_destination(engine: Engine, tenant: UUID, name: str, path: Path) -> SiemDestination:
    return manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=DestinationSpec(
            name=name,
            delivery_type=DeliveryType.FILE,
            format=ExportFormat.JSON,
            endpoint=f"file://{path}",
            options={"start": "beginning", "batch_max_events": "7"},
        ),
        secret=None,
        keyring=KEYS,
        development=False,
        egress=GUARD,
    )


def health_of(engine: Engine, destination: SiemDestination) -> DeliveryHealth:
    with engine.connect() as conn:
        reports = delivery_health.list_health(conn, tenant_id=destination.tenant_id)
    return next(report for report in reports if report.destination_id == destination.id)


def opener(
    engine: Engine,
    settings_: Settings,
    *,
    spoil: Callable[[SiemDestination, DestinationComponents], DestinationComponents] | None = None,
) -> OpenComponents:
    """`open_destination` bound to `engine` and the loopback guard; `spoil` may swap in
    broken parts for some destinations."""

    async def open_components(destination: SiemDestination) -> DestinationComponents:
        components = await open_destination(
            engine, destination, settings=settings_, keyring=KEYS, egress=GUARD
        )
        return components if spoil is None else spoil(destination, components)

    return open_components


@dataclass(slots=True)
class RunningWorker:
    """A Worker running in this event loop, and what tests wait for while it runs."""

    worker: Worker
    task: asyncio.Task[list[str]]

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait until `predicate()` holds; fail at once if the worker stopped meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not predicate():
            if self.task.done():
                raise AssertionError(
                    f"the worker stopped while waiting for {what}: {self.outcome()}"
                )
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {WAIT_S:g} s waiting for {what}")
            await asyncio.sleep(0.02)

    def outcome(self) -> str:
        if self.task.cancelled():
            return "cancelled"
        exc = self.task.exception()
        return f"raised {exc!r}" if exc is not None else f"returned {self.task.result()!r}"

    async def stop(self) -> list[str]:
        """Ask the worker to stop and wait for `run()` to return (re-raising what it raised)."""
        self.worker.stop()
        return await asyncio.wait_for(asyncio.shield(self.task), WAIT_S)


@contextlib.asynccontextmanager
async def running_worker(
    engine: Engine, open_components: OpenComponents
) -> AsyncIterator[RunningWorker]:
    worker = Worker(engine=engine, open_components=open_components, settings=QUICK)
    running = RunningWorker(worker, asyncio.create_task(worker.run(), name="isolation-worker"))
    try:
        yield running
    finally:
        if not running.task.done():
            worker.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.wait({running.task}), WAIT_S)
            running.task.cancel()
        with contextlib.suppress(BaseException):
            await running.task  # retrieved: the test asserts what it needs about it


class HostilePeer:
    """A TCP listener on 127.0.0.1 and ::1 (one port) that reads what arrives for a moment,
    answers with `reply`, and hangs up."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.port = 0
        self._servers: list[asyncio.Server] = []

    async def __aenter__(self) -> HostilePeer:
        for _ in range(50):  # the same free port on both families
            v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            v4.bind(("127.0.0.1", 0))
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                v6.bind(("::1", v4.getsockname()[1]))
            except OSError:
                v4.close()
                v6.close()
                continue
            self.port = v4.getsockname()[1]
            for sock in (v4, v6):
                self._servers.append(await asyncio.start_server(self._answer, sock=sock))
            return self
        raise RuntimeError("no port free on both 127.0.0.1 and ::1")

    async def __aexit__(self, *_: object) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(reader.read(65536), 0.2)
            writer.write(self.reply)
            await asyncio.wait_for(writer.drain(), 1)
        writer.close()


# -- the property ------------------------------------------------------------------------------


def fill(value: Any, placeholders: dict[str, str]) -> Any:
    """`value` with the `{peer}` and `{tmp}` placeholders of its strings filled in."""
    if isinstance(value, str):
        for key, text in placeholders.items():
            value = value.replace(key, text)
    return value


def add_hostile(
    engine: Engine,
    wanted: HostileDestination,
    name: str,
    *,
    development: bool,
    placeholders: dict[str, str],
) -> SiemDestination | None:
    """Ask for `wanted` through the same function the API and CLI call; None when refused,
    after checking the refusal is a SiemError whose message says what is wrong."""
    spec = DestinationSpec(
        name=name,
        delivery_type=wanted.delivery_type,
        format=wanted.format,
        endpoint=fill(wanted.endpoint, placeholders),
        options={key: fill(value, placeholders) for key, value in wanted.options.items()},
    )
    refusal: SiemError | None = None
    try:
        return manage.add_destination(
            engine,
            tenant_id=OTHER_TENANTS[wanted.tenant],
            spec=spec,
            secret=wanted.secret,
            keyring=KEYS,
            development=development,
            egress=GUARD,
        )
    except SiemError as exc:  # anything else escapes: a validator must never crash
        refusal = exc
    assert str(refusal).strip(), f"{type(refusal).__name__} without a message for {spec!r}"
    if isinstance(refusal, InvalidDestination):
        assert refusal.field, f"a refusal that names no field: {refusal!r}"
        assert str(refusal).startswith(refusal.field), f"no field named first: {refusal}"
    return None


# The loopback twin of `https://a[2606:4700::1111]/x`: a host that validation reads as ::1
# and the HTTP client refuses to parse, for the webhook and HEC transports alike.
MALFORMED_AUTHORITY: Final = [
    HostileDestination(
        tenant=0,
        delivery_type=DeliveryType.WEBHOOK,
        format=ExportFormat.JSON,
        endpoint="https://a[::1]/x",
        options={"start": "beginning"},
        secret=None,
    ),
    HostileDestination(
        tenant=1,
        delivery_type=DeliveryType.SPLUNK_HEC,
        format=ExportFormat.JSON,
        endpoint="https://a[::1]:{peer}/services/collector",
        options={"start": "beginning"},
        secret="00000000-0000-4000-8000-000000000001",
    ),
]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    hostile=st.lists(hostile_destinations(tenants=len(OTHER_TENANTS)), min_size=1, max_size=4),
    development=st.booleans(),
    reply=st.sampled_from(PEER_REPLIES),
)
@example(hostile=MALFORMED_AUTHORITY, development=False, reply=b"")
def test_hostile_destinations_never_stop_the_worker_or_a_healthy_tenant(
    hostile: list[HostileDestination], development: bool, reply: bytes
) -> None:
    """Beside one to four destinations of other tenants with generated hostile endpoints,
    options and secrets (each refused with a SiemError that says why, or run), a healthy
    file destination receives every event of its tenant and no other, the worker is still
    running afterwards, and it stops cleanly when asked."""
    asyncio.run(_hostile_case(hostile, development=development, reply=reply))


async def _hostile_case(
    hostile: list[HostileDestination], *, development: bool, reply: bytes
) -> None:
    with tempfile.TemporaryDirectory(prefix="isolation-") as scratch:
        root = Path(scratch)
        hostile_dir = root / "hostile" / "a" / "b"
        hostile_dir.mkdir(parents=True)
        (hostile_dir / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n\x00\xff\n")
        engine = make_engine(f"sqlite:///{root}/store.db")
        try:
            upgrade(engine)
            async with HostilePeer(reply) as peer:
                await _run_hostile_case(
                    engine,
                    hostile,
                    development=development,
                    placeholders={"{peer}": str(peer.port), "{tmp}": str(hostile_dir)},
                    out=root / "healthy.jsonl",
                )
        finally:
            engine.dispose()


async def _run_hostile_case(
    engine: Engine,
    hostile: list[HostileDestination],
    *,
    development: bool,
    placeholders: dict[str, str],
    out: Path,
) -> None:
    add_file_destination(engine, TENANT_A, "healthy", out)
    for index, wanted in enumerate(hostile):
        add_hostile(
            engine, wanted, f"hostile-{index}", development=development, placeholders=placeholders
        )
    first = [
        events_of(tenant, 12, seed=index) for index, tenant in enumerate((TENANT_A, *OTHER_TENANTS))
    ]
    store(engine, [event for batch in first for event in batch])
    env = Settings(env="development" if development else "production", egress_allow=LOOPBACK)
    async with running_worker(engine, opener(engine, env)) as running:
        await running.until(lambda: delivered_id_set(out) >= ids(first[0]), "the first events")
        later = [
            events_of(tenant, 9, seed=100 + index)
            for index, tenant in enumerate((TENANT_A, *OTHER_TENANTS))
        ]
        store(engine, [event for batch in later for event in batch])
        everything = ids(first[0]) | ids(later[0])
        await running.until(lambda: delivered_id_set(out) >= everything, "every event of tenant A")
        assert delivered_id_set(out) == everything, "another tenant's event reached tenant A"
        assert not running.task.done(), f"the worker stopped: {running.outcome()}"
        await running.stop()


# -- focused faults ----------------------------------------------------------------------------


class SendRaises:
    """A transport with a bug: `send` raises RuntimeError; the rest is the real transport's."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        raise RuntimeError(SEND_BUG)

    async def check(self) -> DeliveryResult:
        return await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()


def formatter_raises(event: AuditEvent) -> str:
    """A formatter with a bug: it raises something other than EncodeError."""
    raise ValueError(FORMAT_BUG)


async def assert_isolated(
    engine: Engine,
    broken: SiemDestination,
    *,
    open_components: OpenComponents,
    out: Path,
    reason: str | None,
) -> None:
    """Run a worker over the healthy destination of tenant A (writing to `out`) and
    `broken`: every event of A arrives, `broken`'s health shows the failure (containing
    `reason` when given) with an open circuit, the worker runs on, and it stops cleanly."""
    mine = events_of(TENANT_A, 40, seed=1)
    theirs = events_of(broken.tenant_id, 40, seed=2)
    store(engine, mine + theirs)

    def recorded() -> bool:
        health = health_of(engine, broken)
        said = health.last_error or ""
        return (
            health.circuit_state is CircuitState.OPEN
            and bool(said.strip())
            and (reason is None or reason in said)
        )

    async with running_worker(engine, open_components) as running:
        await running.until(lambda: delivered_id_set(out) >= ids(mine), "every event of tenant A")
        await running.until(recorded, "the broken destination's failure in its health")
        later = events_of(TENANT_A, 10, seed=3)
        store(engine, later)
        await running.until(
            lambda: delivered_id_set(out) >= ids(mine + later), "tenant A's later events"
        )
        assert delivered_id_set(out) == ids(mine + later)
        assert not running.task.done(), f"the worker stopped: {running.outcome()}"
        await running.stop()
    health = health_of(engine, broken)
    assert health.successes == 0
    assert health.failures >= 1


async def test_a_malformed_ipv6_webhook_fails_alone(engine: Engine, tmp_path: Path) -> None:
    """A webhook to `https://a[2606:4700::1111]/x` is refused when saved; one stored before
    that rule, beside a healthy file destination of another tenant: the healthy one receives
    every event, the worker runs on and stops cleanly, and the webhook's health names the
    endpoint rule with its circuit open."""
    out = tmp_path / "healthy.jsonl"
    add_file_destination(engine, TENANT_A, "healthy", out)
    spec = DestinationSpec(
        name="malformed-ipv6",
        delivery_type=DeliveryType.WEBHOOK,
        format=ExportFormat.JSON,
        endpoint="https://a[2606:4700::1111]/x",
        options={"start": "beginning"},
    )
    with pytest.raises(InvalidDestination) as refused:
        manage.add_destination(
            engine,
            tenant_id=OTHER_TENANTS[0],
            spec=spec,
            secret=None,
            keyring=KEYS,
            development=False,
            egress=GUARD,
        )
    assert refused.value.field == "endpoint"
    now = datetime.now(UTC)
    with writing(engine) as conn:  # as an older version, which had no such rule, saved it
        broken = insert_destination(
            conn,
            destination=SiemDestination(
                id=uuid4(),
                tenant_id=OTHER_TENANTS[0],
                name=spec.name,
                delivery_type=spec.delivery_type,
                format=spec.format,
                endpoint=spec.endpoint,
                options=dict(spec.options),
                created_at=now,
                updated_at=now,
            ),
            sealed_secret=None,
            cursor=START,
        )
    await assert_isolated(
        engine, broken, open_components=opener(engine, Settings()), out=out, reason="brackets"
    )


async def test_a_transport_whose_send_raises_fails_alone(engine: Engine, tmp_path: Path) -> None:
    """A destination whose transport raises RuntimeError from `send`, beside a healthy file
    destination of another tenant: the healthy one receives every event, the worker runs on
    and stops cleanly, and the broken one's health names the error with its circuit open."""
    out = tmp_path / "healthy.jsonl"
    add_file_destination(engine, TENANT_A, "healthy", out)
    broken = add_file_destination(engine, OTHER_TENANTS[0], "send-raises", tmp_path / "b.jsonl")

    def spoil(destination: SiemDestination, parts: DestinationComponents) -> DestinationComponents:
        if destination.id != broken.id:
            return parts
        return replace(parts, transport=SendRaises(parts.transport))

    await assert_isolated(
        engine,
        broken,
        open_components=opener(engine, Settings(), spoil=spoil),
        out=out,
        reason=SEND_BUG,
    )


async def test_a_formatter_that_raises_fails_alone(engine: Engine, tmp_path: Path) -> None:
    """A destination whose formatter raises ValueError (not EncodeError), beside a healthy
    file destination of another tenant: the healthy one receives every event, the worker
    runs on and stops cleanly, and the broken one's health names the error with its
    circuit open."""
    out = tmp_path / "healthy.jsonl"
    add_file_destination(engine, TENANT_A, "healthy", out)
    broken = add_file_destination(engine, OTHER_TENANTS[0], "format-raises", tmp_path / "c.jsonl")

    def spoil(destination: SiemDestination, parts: DestinationComponents) -> DestinationComponents:
        if destination.id != broken.id:
            return parts
        return replace(parts, formatter=formatter_raises)

    await assert_isolated(
        engine,
        broken,
        open_components=opener(engine, Settings(), spoil=spoil),
        out=out,
        reason=FORMAT_BUG,
    )
