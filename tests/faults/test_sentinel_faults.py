"""A misbehaving Microsoft Entra ID or Logs Ingestion API: each fault becomes a result with a
clear reason, nothing the stream did not accept is reported delivered, and through the
worker nothing is lost (cursor, dead letters and health afterwards). Contract peers from
tests/peers/azure_peer.py; both store backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from uuid import UUID

import pytest
from sqlalchemy import Engine

from xavyo_siem import destinations as manage
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.delivery import SentinelConfig, SentinelTransport, validate_destination
from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, RetryLater
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.format import to_json
from xavyo_siem.model import (
    DEFAULT_RATE_LIMIT,
    AuditEvent,
    CircuitState,
    DeliveryType,
    ExportFormat,
    RateLimit,
    SiemDestination,
)
from xavyo_siem.pipeline import DestinationComponents, PipelineSettings, RetryPolicy
from xavyo_siem.runtime import Worker, WorkerSettings, open_destination
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events
from xavyo_siem.store.dead_letters import list_dead_letters
from xavyo_siem.store.state import read_health, read_state

from peers.azure_peer import AzureFaults, AzurePeer

DEV = Settings(env="development", egress_allow=("127.0.0.0/8",))
KEYS = KeyRing.parse(new_key_text())
QUICK = WorkerSettings(
    lease_ttl_s=5,
    scan_interval_s=0.1,
    listen_poll_s=0.05,
    pipeline=PipelineSettings(
        poll_interval_s=0.05,
        retry=RetryPolicy(base_s=0.01, cap_s=0.1, misconfigured_cap_s=0.2),
        lag_refresh_s=0.2,
    ),
)


def records(count: int, seed: int = 3) -> list[Record]:
    """`count` sample events in the `json` format."""
    return [Record.of(e, to_json(e)) for e in generate_events(count, 1, seed=seed)]


def ids(peer: AzurePeer) -> list[str]:
    """The event ids the stream accepted, in arrival order."""
    return [row["event_id"] for row in peer.received]


def transport(peer: AzurePeer, **options: object) -> SentinelTransport:
    """A transport to `peer` over plain HTTP (development mode)."""
    config = validate_destination(
        "sentinel", peer.endpoint, peer.options(**options), development=True
    )
    assert isinstance(config, SentinelConfig)
    return SentinelTransport(config, client_secret=peer.client_secret, development=True)


@pytest.fixture
async def peer() -> AsyncIterator[AzurePeer]:
    """The token and ingestion endpoints, plain HTTP on two loopback ports."""
    async with AzurePeer() as server:
        yield server


@pytest.fixture
async def sender(peer: AzurePeer) -> AsyncIterator[SentinelTransport]:
    """One transport to `peer`, closed after the test."""
    opened = transport(peer)
    yield opened
    await opened.aclose()


# --- The transport ---------------------------------------------------------------------


async def test_token_endpoint_down_is_retry_later_then_recovers(
    peer: AzurePeer, sender: SentinelTransport
) -> None:
    """While the token endpoint refuses connections the batch is RetryLater naming it, and
    nothing is posted; once it is back the same batch is delivered."""
    batch = records(20)
    await peer.stop_token_endpoint()
    result = await sender.send(batch)
    assert isinstance(result, RetryLater)
    assert result.reason.startswith("the token endpoint (Microsoft Entra ID): cannot connect")
    assert peer.requests == []
    await peer.start_token_endpoint()
    assert await sender.send(batch) == Delivered()
    assert ids(peer) == [r.event_id for r in batch]


async def test_token_endpoint_busy_waits_for_its_retry_after(
    peer: AzurePeer, sender: SentinelTransport
) -> None:
    """A 503 from the token endpoint is RetryLater after its Retry-After; then delivered."""
    peer.faults = AzureFaults(token_busy=1, retry_after="9")
    result = await sender.send(records(5))
    assert isinstance(result, RetryLater)
    assert result.after_s == 9.0
    assert await sender.send(records(5)) == Delivered()


async def test_token_endpoint_garbage_is_never_a_token(
    peer: AzurePeer, sender: SentinelTransport
) -> None:
    """An HTML page instead of a token is RetryLater and nothing is posted with it."""
    peer.faults.token_garbage = 1
    result = await sender.send(records(5))
    assert isinstance(result, RetryLater)
    assert "without a bearer token" in result.reason
    assert peer.requests == []


async def test_token_expired_mid_stream_is_renewed_and_nothing_is_lost(
    peer: AzurePeer, sender: SentinelTransport
) -> None:
    """A token the service stops accepting between batches (401) is replaced once and the
    array sent again: every record arrives exactly once."""
    first, second = records(30), records(30, seed=4)
    assert await sender.send(first) == Delivered()
    peer.expire_tokens()
    assert await sender.send(second) == Delivered()
    assert [r.status for r in peer.requests] == [204, 401, 204]
    assert len(peer.token_requests) == 2
    assert ids(peer) == [r.event_id for r in first + second]


async def test_throttled_is_retry_later_after_retry_after(
    peer: AzurePeer, sender: SentinelTransport
) -> None:
    """429 with Retry-After is RetryLater after that many seconds; the rows are not counted
    as accepted, and the next send delivers them."""
    peer.faults = AzureFaults(throttle=1, retry_after="7")
    batch = records(10)
    result = await sender.send(batch)
    assert isinstance(result, RetryLater)
    assert (result.after_s, "HTTP 429 (TooManyRequests" in result.reason) == (7.0, True)
    assert peer.received == []
    assert await sender.send(batch) == Delivered()
    assert ids(peer) == [r.event_id for r in batch]


async def test_too_large_is_split_until_accepted_in_order(peer: AzurePeer) -> None:
    """413 halves the array until each part fits; every record arrives once, in order (one
    array in flight at a time)."""
    peer.faults.max_records_per_request = 7
    batch = records(50)
    sender = transport(peer, max_requests_in_flight=1)
    try:
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert ids(peer) == [r.event_id for r in batch]
    assert any(r.status == 413 for r in peer.requests)


@pytest.mark.parametrize("fault", ["garbage", "drop", "server_error"])
async def test_a_garbled_dropped_or_failing_answer_is_retry_later(
    peer: AzurePeer, sender: SentinelTransport, fault: str
) -> None:
    """A proxy's HTML 502, a connection closed without an answer and a 503 are RetryLater
    with a reason naming what happened; none is reported delivered."""
    setattr(peer.faults, fault, 1)
    result = await sender.send(records(5))
    assert isinstance(result, RetryLater)
    assert result.reason
    assert peer.received == []


async def test_a_failure_after_an_accepted_array_resends_the_batch_at_least_once(
    peer: AzurePeer,
) -> None:
    """When the second array of a batch fails, the batch is RetryLater; sent again, every
    record is in the stream (the first array twice: at least once, never less). One array
    in flight at a time, so the first array is the only one accepted before the failure."""
    sender = transport(peer, batch_max_bytes=20_000, max_requests_in_flight=1)
    batch = records(80)
    peer.faults = AzureFaults(server_error=1, server_error_after=1, retry_after="0")
    try:
        result = await sender.send(batch)
        assert isinstance(result, RetryLater)
        first_array = peer.requests[0].records or []
        assert 0 < len(first_array) < len(batch)
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert ids(peer) == [r.event_id for r in batch[: len(first_array)] + batch]


# --- Through the worker ----------------------------------------------------------------


def stored(engine: Engine, count: int, seed: int) -> list[AuditEvent]:
    events = list(generate_events(count, 1, seed=seed))
    with engine.begin() as conn:
        append_events(conn, events)
    return events


def add_sentinel(
    engine: Engine,
    tenant: UUID,
    peer: AzurePeer,
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
    **options: object,
) -> SiemDestination:
    return manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=DestinationSpec(
            name=f"sentinel-{time.monotonic_ns()}",
            delivery_type=DeliveryType.SENTINEL,
            format=ExportFormat.JSON,
            endpoint=peer.endpoint,
            options=peer.options(start="beginning", **options),
            rate_limit=rate_limit,
        ),
        secret=peer.client_secret,
        keyring=KEYS,
        development=True,
        egress=EgressGuard.from_settings(DEV),
    )


def serve(engine: Engine) -> tuple[Worker, asyncio.Task[list[str]]]:
    async def open_components(destination: SiemDestination) -> DestinationComponents:
        return await open_destination(engine, destination, settings=DEV, keyring=KEYS)

    running = Worker(engine=engine, open_components=open_components, settings=QUICK)
    return running, asyncio.create_task(running.run())


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def finish(running: Worker, task: asyncio.Task[list[str]]) -> None:
    running.stop()
    await asyncio.wait_for(task, 30)


async def test_worker_rides_out_throttling_and_an_expired_token_losing_nothing(
    engine: Engine, peer: AzurePeer
) -> None:
    """Throttling (429) and a token that expires mid-stream delay delivery but lose nothing:
    every event arrives, in store order, the cursor at the end and the circuit closed."""
    events = stored(engine, 500, seed=41)
    peer.faults = AzureFaults(throttle=3, retry_after="0")
    # 100 events/s: the token expires with most of the events still to send, however fast
    # the worker reads.
    slow = RateLimit(events_per_s=100.0, burst=100)
    destination = add_sentinel(
        engine, events[0].tenant_id, peer, rate_limit=slow, batch_max_events="100"
    )
    running, task = serve(engine)
    try:
        await until(lambda: len(peer.received) >= 200, 60, "the first batches")
        peer.expire_tokens()
        await until(lambda: len(set(ids(peer))) >= len(events), 60, "every event")
    finally:
        await finish(running, task)
    assert list(dict.fromkeys(ids(peer))) == [str(e.event_id) for e in events]
    assert len(peer.token_requests) >= 2
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert health is not None
    assert health.circuit_state is CircuitState.CLOSED
    assert health.successes >= len(events)


async def test_worker_dead_letters_the_record_the_api_refuses_and_delivers_the_rest(
    engine: Engine, peer: AzurePeer
) -> None:
    """A record the Logs Ingestion API refuses (400) goes to dead letters with the answer;
    every other event is delivered and the cursor moves past it."""
    events = stored(engine, 120, seed=42)
    peer.faults.bad_event_ids = {str(events[50].event_id)}
    destination = add_sentinel(engine, events[0].tenant_id, peer)
    running, task = serve(engine)
    try:
        await until(lambda: len(peer.received) >= len(events) - 1, 60, "the good events")

        def lettered() -> bool:
            with engine.connect() as conn:
                return bool(
                    list_dead_letters(
                        conn, tenant_id=destination.tenant_id, destination_id=destination.id
                    )
                )

        await until(lettered, 30, "the dead letter")
    finally:
        await finish(running, task)
    assert sorted(ids(peer)) == sorted(str(e.event_id) for e in events if e is not events[50])
    with engine.connect() as conn:
        [letter] = list_dead_letters(
            conn, tenant_id=destination.tenant_id, destination_id=destination.id
        )
    assert str(letter.event_id) == str(events[50].event_id)
    assert "InvalidPayload" in letter.reason


async def test_worker_stops_on_a_refused_secret_and_resumes_when_fixed(
    engine: Engine, peer: AzurePeer
) -> None:
    """A client secret the directory refuses opens the circuit with Entra's error and keeps
    the cursor; once the directory accepts it again every event arrives, nothing lost."""
    events = stored(engine, 150, seed=43)
    destination = add_sentinel(engine, events[0].tenant_id, peer)
    peer.client_secret, valid = "rotated-elsewhere", peer.client_secret
    running, task = serve(engine)
    try:

        def open_circuit() -> bool:
            with engine.connect() as conn:
                health = read_health(
                    conn, tenant_id=destination.tenant_id, destination_id=destination.id
                )
            return health is not None and health.circuit_state is CircuitState.OPEN

        await until(open_circuit, 30, "the circuit to open")
        with engine.connect() as conn:
            state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
            health = read_health(
                conn, tenant_id=destination.tenant_id, destination_id=destination.id
            )
        peer.client_secret = valid
        await until(lambda: len(peer.received) >= len(events), 60, "delivery after the fix")
    finally:
        await finish(running, task)
    assert state is not None
    assert state.cursor.seq == 0
    assert health is not None
    assert "AADSTS7000215" in (health.circuit_reason or "")
    assert valid not in (health.circuit_reason or "")
    assert ids(peer) == [str(e.event_id) for e in events]


async def test_answers_that_echo_the_request_never_show_the_secret_or_a_token(
    peer: AzurePeer,
) -> None:
    """A token endpoint that quotes the form (client secret) and an ingestion endpoint that
    quotes the headers (bearer token) in their refusals: the reasons keep the error, never
    the secret or any token the transport was issued."""
    peer.faults = AzureFaults(forbid=2, echo=True)
    sender = transport(peer)
    try:
        forbidden = await sender.send(records(3))
        peer.client_secret, secret = "rotated", peer.client_secret
        config = validate_destination("sentinel", peer.endpoint, peer.options(), development=True)
        assert isinstance(config, SentinelConfig)
        sender_with_old = SentinelTransport(config, client_secret=secret, development=True)
        try:
            refused = await sender_with_old.send(records(3))
        finally:
            await sender_with_old.aclose()
    finally:
        await sender.aclose()
    tokens = list(peer.tokens)
    assert len(tokens) == 2
    assert isinstance(forbidden, Misconfigured)
    assert "OperationFailed" in forbidden.reason
    assert isinstance(refused, Misconfigured)
    assert "invalid_client" in refused.reason
    for reason in (forbidden.reason, refused.reason):
        assert secret not in reason
        assert not any(token in reason for token in tokens)
        assert not any(token.split(".", 1)[1] in reason for token in tokens)
