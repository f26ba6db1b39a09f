"""The worker against real peers: HEC outages and revoked tokens, rsyslog restarts, poison
events, a black-holed destination, and the rate limit measured at the receiver."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from syslog_records import lines_with_every
from xavyo_siem import delivery_health
from xavyo_siem import destinations as manage
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import (
    AuditEvent,
    CircuitState,
    DeliveryType,
    EventCategory,
    EventFilter,
    ExportFormat,
    RateLimit,
    SiemDestination,
)
from xavyo_siem.pipeline import DestinationComponents, PipelineSettings, RetryPolicy
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.runtime import Worker, WorkerSettings, open_destination
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events
from xavyo_siem.store.dead_letters import list_dead_letters
from xavyo_siem.store.destinations import get_destination
from xavyo_siem.store.state import read_health, read_state

from peers.hec_server import HecFaults, HecServer
from peers.resetting_collector import ResettingCollector
from peers.rsyslog import start_rsyslog
from peers.webhook_receiver import WebhookReceiver

# Loopback peers: the SSRF guard refuses 127.0.0.1 unless the operator allows it.
DEV = Settings(env="development", egress_allow=("127.0.0.0/8", "::1/128", "localhost"))
KEYS = KeyRing.parse(new_key_text())
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()
FAST = PipelineSettings(
    poll_interval_s=0.02,
    retry=RetryPolicy(base_s=0.01, cap_s=0.1, misconfigured_cap_s=0.2),
    lag_refresh_s=0.2,
)
QUICK = WorkerSettings(
    lease_ttl_s=5,
    scan_interval_s=0.1,
    listen_poll_s=0.05,
    pipeline=replace(FAST, poll_interval_s=0.05),
)


def stored(engine: Engine, count: int, seed: int, tenants: int = 1) -> list[AuditEvent]:
    events = list(generate_events(count, tenants, seed=seed))
    with engine.begin() as conn:
        append_events(conn, events)
    return events


def add(
    engine: Engine, tenant: UUID, *, secret: str | None = None, **spec: object
) -> SiemDestination:
    base = DestinationSpec(
        name=f"dest-{len(str(spec))}-{time.monotonic_ns()}",
        delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON,
        endpoint="file:///dev/null",
        options={"start": "beginning"},
    )
    return manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=replace(base, **spec),
        secret=secret,  # type: ignore[arg-type]
        keyring=KEYS,
        development=True,
        egress=EgressGuard.from_settings(DEV),
    )


def worker(engine: Engine) -> Worker:
    """A worker that delivers every destination of the store through its real transport."""

    async def open_components(destination: SiemDestination) -> DestinationComponents:
        return await open_destination(engine, destination, settings=DEV, keyring=KEYS)

    return Worker(engine=engine, open_components=open_components, settings=QUICK)


def serve(engine: Engine, *, drain: bool = False) -> tuple[Worker, asyncio.Task[list[str]]]:
    """A worker running (with `drain`: until every destination has caught up)."""
    running = worker(engine)
    return running, asyncio.create_task(running.run(drain=drain))


async def drain(engine: Engine, timeout: float) -> None:
    """Run a worker until every destination has caught up (`run --drain`), none stuck."""
    assert await asyncio.wait_for(worker(engine).run(drain=True), timeout) == []


def lane_of(running: Worker, destination: SiemDestination) -> Lane | None:
    """The worker's lane of `destination`, once it serves it."""
    return None if running.scheduler is None else running.scheduler.lanes.get(destination.id)


async def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def finish(running: Worker, task: asyncio.Task[list[str]]) -> None:
    running.stop()
    await asyncio.wait_for(task, 30)


def hec_ids(server: HecServer) -> list[str]:
    return [envelope["event"]["event_id"] for envelope in server.received]


async def test_hec_503_outage_then_recovery_delivers_every_event_in_order(engine: Engine) -> None:
    """While HEC answers 503 the batch waits; afterwards every event arrives once, in order."""
    events = stored(engine, 600, seed=30)
    async with HecServer(faults=HecFaults(busy=12, retry_after="0")) as server:
        destination = add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.SPLUNK_HEC,
            endpoint=server.url,
            secret=server.token,
            options={"start": "beginning", "batch_max_events": "100"},
        )
        running, task = serve(engine)
        await until(lambda: len(server.received) >= len(events), 60, "all events at HEC")
        await finish(running, task)
    assert hec_ids(server) == [str(e.event_id) for e in events]
    assert sum(1 for r in server.requests if r.status == 503) == 12
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert health is not None
    assert (health.successes, health.failures, health.circuit_state) == (
        600,
        12,
        CircuitState.CLOSED,
    )


async def test_invalid_token_stops_delivery_without_spinning_and_resumes_when_fixed(
    engine: Engine,
) -> None:
    """An invalid token marks the destination failing, keeps the cursor, and probes on a
    backoff; once the token is valid, delivery resumes from where it stopped, nothing lost."""
    events = stored(engine, 300, seed=31)
    async with HecServer() as server:
        destination = add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.SPLUNK_HEC,
            endpoint=server.url,
            secret=server.token,
        )
        server.token, valid = str(uuid4()), server.token  # the stored one is no longer known
        running, task = serve(engine)

        def stuck() -> bool:
            lane = lane_of(running, destination)
            return lane is not None and lane.stuck_reason is not None

        await until(stuck, 30, "the destination to be stuck")
        await asyncio.sleep(1.0)
        attempts = len(server.requests)
        with engine.connect() as conn:
            state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
            health = read_health(
                conn, tenant_id=destination.tenant_id, destination_id=destination.id
            )
        server.token = valid
        await until(lambda: len(server.received) >= len(events), 60, "delivery after the fix")
        await finish(running, task)
    assert state is not None
    assert health is not None
    assert state.cursor.seq == 0
    assert health.circuit_state is CircuitState.OPEN
    assert "invalid token" in (health.circuit_reason or "").lower()
    assert attempts < 25, (
        f"{attempts} attempts in about a second: a misconfigured destination spins"
    )
    assert hec_ids(server) == [str(e.event_id) for e in events]


async def test_a_disabled_hec_token_switches_the_destination_off_until_enabled_again(
    engine: Engine,
) -> None:
    """HEC's "token disabled" switches the destination off with the reason (health, API
    fields) instead of probing it; enabling it again resumes from its cursor, nothing lost."""
    events = stored(engine, 300, seed=33)
    async with HecServer(disabled=True) as server:
        destination = add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.SPLUNK_HEC,
            endpoint=server.url,
            secret=server.token,
        )
        running, task = serve(engine)

        def switched_off() -> bool:
            with engine.connect() as conn:
                found = get_destination(
                    conn, tenant_id=destination.tenant_id, destination_id=destination.id
                )
            return found is not None and not found.enabled

        await until(switched_off, 30, "the destination to be switched off")
        await until(lambda: lane_of(running, destination) is None, 30, "its lane to go")
        await asyncio.sleep(0.5)
        attempts = len(server.requests)
        with engine.connect() as conn:
            health = delivery_health.destination_health(
                conn,
                get_destination(  # type: ignore[arg-type]
                    conn, tenant_id=destination.tenant_id, destination_id=destination.id
                ),
            )
        assert attempts == 1  # switched off at the first answer, not probed
        assert health.failing
        assert not health.enabled
        assert "Token disabled" in (health.disabled_reason or "")
        server.disabled = False
        manage.set_enabled(
            engine, tenant_id=destination.tenant_id, destination_id=destination.id, enabled=True
        )
        await until(lambda: len(server.received) >= len(events), 60, "delivery once enabled")
        await finish(running, task)
    with engine.connect() as conn:
        again = get_destination(
            conn, tenant_id=destination.tenant_id, destination_id=destination.id
        )
    assert again is not None
    assert again.disabled_reason is None
    assert hec_ids(server) == [str(e.event_id) for e in events]


async def test_a_webhook_that_answers_410_gone_is_switched_off(engine: Engine) -> None:
    """A webhook receiver answering 410 Gone switches its destination off with the reason;
    enabling it again resumes from its cursor, every event delivered."""
    events = stored(engine, 50, seed=35)
    async with WebhookReceiver(secrets=(WEBHOOK_SECRET,), script=deque([410])) as receiver:
        destination = add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.WEBHOOK,
            endpoint=receiver.url,
            secret=WEBHOOK_SECRET,
        )
        running, task = serve(engine)

        def switched_off() -> bool:
            with engine.connect() as conn:
                found = get_destination(
                    conn, tenant_id=destination.tenant_id, destination_id=destination.id
                )
            return found is not None and found.disabled_reason is not None

        await until(switched_off, 30, "the destination to be switched off")
        with engine.connect() as conn:
            found = get_destination(
                conn, tenant_id=destination.tenant_id, destination_id=destination.id
            )
        assert found is not None
        assert not found.enabled
        assert "410" in (found.disabled_reason or "")
        manage.set_enabled(
            engine, tenant_id=destination.tenant_id, destination_id=destination.id, enabled=True
        )
        await until(lambda: len(receiver.events()) >= len(events), 60, "delivery once enabled")
        await finish(running, task)
    assert sorted(e["event_id"] for e in receiver.events()) == sorted(
        str(e.event_id) for e in events
    )


async def test_poison_event_is_dead_lettered_and_the_rest_flow(engine: Engine) -> None:
    """An event HEC refuses as invalid (code 6) lands in dead letters; every other one arrives."""
    events = stored(engine, 250, seed=32)
    async with HecServer(faults=HecFaults(invalid_event_at=7, invalid_event_times=1)) as server:
        destination = add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.SPLUNK_HEC,
            endpoint=server.url,
            secret=server.token,
            options={"start": "beginning", "batch_max_events": "50"},
        )
        await drain(engine, 60)
    poison = str(events[7].event_id)
    with engine.connect() as conn:
        letters = list_dead_letters(
            conn, tenant_id=destination.tenant_id, destination_id=destination.id
        )
    assert [str(letter.event_id) for letter in letters] == [poison]
    assert "6" in letters[0].reason
    arrived = hec_ids(server)
    assert set(arrived) == {str(e.event_id) for e in events} - {poison}


def file_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [orjson.loads(line)["event_id"] for line in path.read_bytes().splitlines()]


def syslog_ids(lines: list[str]) -> list[str]:
    ids = []
    for line in lines:
        body = line[line.index("{") :]
        ids.append(orjson.loads(body)["event_id"])
    return ids


async def test_syslog_receiver_stopped_and_started_loses_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    """rsyslog stopped mid-stream and started again: every event arrives, duplicates at most
    the batches that were in flight."""
    events = stored(engine, 3000, seed=33)
    with start_rsyslog(tmp_path / "rsyslog", tcp=True) as peer:
        add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.SYSLOG_TCP,
            endpoint=f"tcp://127.0.0.1:{peer.tcp_port}",
            options={"start": "beginning", "batch_max_events": "100", "timeout_s": "2"},
            rate_limit=RateLimit(3000, 100),
        )
        _, task = serve(engine, drain=True)
        await until(lambda: peer.count_lines() >= 600, 60, "the first deliveries")
        peer.stop()
        await asyncio.sleep(0.5)
        peer.start()
        assert await asyncio.wait_for(task, 90) == []  # caught up after the restart
        ids = {str(e.event_id) for e in events}
        received = syslog_ids(lines_with_every(peer, ids, lambda line: syslog_ids([line])[0]))
    assert set(received) == {str(e.event_id) for e in events}
    assert len(received) - len(set(received)) <= 200


async def test_relp_receiver_killed_and_restarted_loses_nothing_through_the_worker(
    engine: Engine, tmp_path: Path
) -> None:
    """A RELP destination served by the worker: rsyslog killed with SIGKILL mid-stream and
    started again; the worker drains and every event arrives at least once."""
    events = stored(engine, 3000, seed=34)
    with start_rsyslog(tmp_path / "rsyslog", relp=True) as peer:
        add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.SYSLOG_RELP,
            endpoint=f"relp://127.0.0.1:{peer.relp_port}",
            options={"start": "beginning", "batch_max_events": "100", "timeout_s": "2"},
            rate_limit=RateLimit(3000, 100),
        )
        _, task = serve(engine, drain=True)
        await until(lambda: peer.count_lines() >= 600, 60, "the first deliveries")
        peer.kill()
        await asyncio.sleep(0.3)
        peer.start()
        assert await asyncio.wait_for(task, 90) == []  # caught up after the crash
        received = syslog_ids(peer.wait_for(len(events), timeout=30))
    assert set(received) == {str(e.event_id) for e in events}
    assert len(received) - len(set(received)) <= 100  # at most the batch in flight


async def test_black_holed_destination_does_not_hold_back_another_tenant(
    engine: Engine, tmp_path: Path
) -> None:
    """A destination that accepts connections and never answers blocks only itself: another
    tenant's destination delivers its whole backlog meanwhile, and no event crosses tenants."""
    events = stored(engine, 2000, seed=34, tenants=2)
    tenant_a, tenant_b = sorted({e.tenant_id for e in events}, key=str)
    async with HecServer(faults=HecFaults(hang=1000)) as hole:
        black = add(
            engine,
            tenant_a,
            delivery_type=DeliveryType.SPLUNK_HEC,
            endpoint=hole.url,
            secret=hole.token,
            options={"start": "beginning", "timeout_s": "30"},
        )
        out = tmp_path / "b.jsonl"
        add(engine, tenant_b, endpoint=f"file://{out}", rate_limit=RateLimit(5000, 500))
        wanted = [str(e.event_id) for e in events if e.tenant_id == tenant_b]
        running, task = serve(engine)
        await until(lambda: len(file_ids(out)) >= len(wanted), 60, "tenant B to catch up")
        lane_a = lane_of(running, black)
        assert running.scheduler is not None
        assert lane_a is not None
        assert lane_a.pending is not None, "A must still be waiting on its black hole"
        assert black.id in running.scheduler.turns, "A's batch must still be on the wire"
        await finish(running, task)
    assert file_ids(out) == wanted
    assert hole.received == []


class TimingSyslogPeer:
    """An RFC 6587 octet-counting receiver that notes when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = int((await reader.readuntil(b" "))[:-1])
                await reader.readexactly(length)
                self.arrivals.append(time.monotonic())
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_delivered_rate_never_exceeds_the_limit_at_the_peer(engine: Engine) -> None:
    """Measured at the receiver, no window of the run carries more than burst + rate x window."""
    events = stored(engine, 1500, seed=35)
    peer = TimingSyslogPeer()
    await peer.start()
    rate, burst = 1000.0, 100
    add(
        engine,
        events[0].tenant_id,
        delivery_type=DeliveryType.SYSLOG_TCP,
        endpoint=f"tcp://127.0.0.1:{peer.port}",
        rate_limit=RateLimit(rate, burst),
    )
    running, task = serve(engine)
    try:
        await until(lambda: len(peer.arrivals) >= len(events), 60, "all events at the peer")
    finally:
        await finish(running, task)
        await peer.stop()
    arrivals = peer.arrivals
    # Arrival times include network jitter: a batch sent late can arrive together with the
    # next; allow one extra burst for that, never more.
    for i, first in enumerate(arrivals):
        for j in range(i + 1, len(arrivals), 50):
            window = arrivals[j] - first
            assert j - i + 1 <= 2 * burst + rate * window + 1


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    tenants=st.integers(min_value=2, max_value=4),
)
async def test_no_event_reaches_another_tenants_destination(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, tenants: int
) -> None:
    """Over random tenants and filters, each destination receives exactly its own tenant's
    matching events, and nothing of any other tenant."""
    seed = data.draw(st.integers(min_value=0, max_value=10**6))
    # Fresh tenant ids for every example: examples share the store.
    drawn = list(generate_events(150, tenants, seed=seed))
    fresh = {tenant: uuid4() for tenant in {e.tenant_id for e in drawn}}
    events = [replace(e, tenant_id=fresh[e.tenant_id]) for e in drawn]
    with engine.begin() as conn:
        append_events(conn, events)
    directory = tmp_path_factory.mktemp("iso")
    runs = []
    for index, tenant in enumerate(sorted({e.tenant_id for e in events}, key=str)):
        filters = EventFilter(
            categories=frozenset(data.draw(st.sets(st.sampled_from(EventCategory), max_size=3))),
            min_severity=data.draw(st.integers(min_value=0, max_value=6)),
        )
        out = directory / f"{index}.jsonl"
        add(engine, tenant, endpoint=f"file://{out}", filters=filters)
        runs.append((tenant, filters, out))
    await drain(engine, 30)
    for tenant, filters, out in runs:
        got = [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
        assert all(item["tenant_id"] == str(tenant) for item in got)
        assert [item["event_id"] for item in got] == [
            str(e.event_id) for e in events if e.tenant_id == tenant and filters.matches(e)
        ]


async def test_a_syslog_batch_that_cannot_be_confirmed_counts_as_possibly_lost(
    engine: Engine,
) -> None:
    """A receiver that goes away right after reading the last batch, before anything
    confirmed it: at shutdown the worker cannot send that batch again, and health counts it
    as possibly lost."""
    events = stored(engine, 40, seed=37)
    with ResettingCollector(every=len(events) + 1) as collector:  # reads, never resets
        destination = add(
            engine,
            events[0].tenant_id,
            delivery_type=DeliveryType.SYSLOG_TCP,
            format=ExportFormat.SYSLOG,
            endpoint=f"tcp://127.0.0.1:{collector.port}",
        )
        running, task = serve(engine)
        await until(lambda: len(collector.messages) == len(events), 30, "the batch to be read")
    await asyncio.sleep(0.2)  # the collector is gone: nothing listens on its port
    await finish(running, task)
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert health is not None
    assert len(collector.messages) == len(events)
    assert health.possibly_lost == len(events)
    assert health.successes == len(events)
