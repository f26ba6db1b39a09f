"""The worker delivering to S3 (moto, signatures checked) while the server misbehaves: it
goes away mid-stream and comes back, it stores an object but the answer is lost, it is
slow to answer. Each test asserts what the bucket holds and where the cursor is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import Engine
from yarl import URL

from s3_archive import DEV, KEYS, add_s3, archived_ids, stored, worker
from xavyo_siem import destinations as manage
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import AuditEvent, SiemDestination
from xavyo_siem.runtime import Worker
from xavyo_siem.sample import generate_events
from xavyo_siem.store import append_events
from xavyo_siem.store.state import read_health, read_state

from peers.s3_server import MotoS3


@pytest.fixture
def moto() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server


class LosingProxy:
    """Forwards every request to moto unchanged; the first `lose` PUTs of an object are
    answered 503 after moto stored the object, as when an answer is lost on the way back."""

    def __init__(self, target: str, *, lose: int) -> None:
        self.target = target
        self.lose = lose
        self.puts = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        body = await request.read()
        url = URL(self.target + request.raw_path, encoded=True)
        async with self._client.request(
            request.method, url, headers=request.headers, data=body or None
        ) as answer:
            payload = await answer.read()
            status = answer.status
        if request.method == "PUT":
            self.puts += 1
            if status == 200 and self.lose > 0:
                self.lose -= 1
                return web.Response(status=503, body=b"<Error><Code>SlowDown</Code></Error>")
        return web.Response(status=status, body=payload)

    async def __aenter__(self) -> LosingProxy:
        self._client = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        assert self._client is not None
        await self._runner.cleanup()
        await self._client.close()


async def until(condition: Any, timeout: float, what: str) -> None:
    """Wait for `condition()` (checked off the event loop: it may read the bucket)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def running(engine: Engine) -> AsyncIterator[Worker]:
    """A worker serving the store until the test ends."""
    serving = worker(engine)
    task = asyncio.create_task(serving.run())
    yield serving
    serving.stop()
    await asyncio.wait_for(task, 30)


def cursor_of(engine: Engine, destination: SiemDestination) -> str:
    with engine.connect() as conn:
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert state is not None
    return state.cursor.encode()


def failures_of(engine: Engine, destination: SiemDestination) -> int:
    with engine.connect() as conn:
        health = read_health(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    return 0 if health is None else health.failures


async def test_server_stopped_mid_stream_then_restarted_loses_nothing(
    engine: Engine, moto: MotoS3
) -> None:
    """While the server is down the cursor stays where the last object ended; once it is
    back every event is archived exactly once."""
    events = stored(engine, 3000, seed=41)
    destination = add_s3(engine, events[0].tenant_id, moto, batch_max_events="100")
    serving = worker(engine)
    task = asyncio.create_task(serving.run())
    try:
        await until(lambda: len(moto.object_keys()) >= 2, 60, "the first objects")
        await asyncio.to_thread(moto.stop)
        await until(lambda: failures_of(engine, destination) > 0, 30, "a failed PUT")
        down_at = cursor_of(engine, destination)
        await until(lambda: failures_of(engine, destination) > 2, 30, "failed retries")
        assert cursor_of(engine, destination) == down_at
        await asyncio.to_thread(moto.start)
        await until(lambda: len(archived_ids(moto)) >= len(events), 120, "every event")
    finally:
        serving.stop()
        await asyncio.wait_for(task, 30)
    archived = archived_ids(moto)
    assert sorted(archived) == sorted(str(e.event_id) for e in events)
    assert len(set(archived)) == len(archived)
    assert any(key.endswith(f"-{down_at}.ndjson.gz") for key in moto.object_keys())


async def test_an_object_stored_but_its_answer_lost_is_overwritten_not_duplicated(
    engine: Engine, moto: MotoS3
) -> None:
    """The server stores objects but their answers are lost (503): the batches are sent
    again under the same keys, so the bucket holds every event exactly once."""
    events = stored(engine, 1200, seed=42)
    async with LosingProxy(moto.url, lose=4) as proxy:
        tenant = events[0].tenant_id
        destination = add_s3(engine, tenant, moto, batch_max_events="300")
        destination = manage.update_destination(
            engine,
            tenant_id=tenant,
            destination_id=destination.id,
            changes={"options": {"endpoint_url": proxy.url}},
            secret=moto.key.secret() if moto.key else None,
            keyring=KEYS,
            development=True,
            egress=EgressGuard.from_settings(DEV),
        )
        serving = worker(engine)
        task = asyncio.create_task(serving.run())
        try:
            await until(lambda: len(archived_ids(moto)) >= len(events), 120, "every event")
            await until(lambda: cursor_of(engine, destination) != "0.0", 30, "the cursor")
        finally:
            serving.stop()
            await asyncio.wait_for(task, 30)
    archived = archived_ids(moto)
    assert sorted(archived) == sorted(str(e.event_id) for e in events)
    assert proxy.lose == 0
    assert proxy.puts >= len(moto.object_keys()) + 4  # each lost answer cost one more PUT
    assert failures_of(engine, destination) == 4


async def test_a_full_batch_is_written_without_waiting_for_the_age_cap(
    engine: Engine, moto: MotoS3, running: Worker
) -> None:
    """With a long age cap, events arriving in several transactions are held until the
    batch is full, then written as one object at once."""
    tenant = uuid4()
    destination = add_s3(
        engine, tenant, moto, batch_max_events="30", object_max_age_s="600", start="now"
    )

    def following() -> bool:
        lanes = {} if running.scheduler is None else running.scheduler.lanes
        return destination.id in lanes and lanes[destination.id].following

    await until(following, 30, "the lane to follow the feed")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events: list[AuditEvent] = []
    for seed in (51, 52, 53):
        batch = [
            replace(e, tenant_id=tenant, timestamp=hour + timedelta(seconds=n))
            for n, e in enumerate(generate_events(10, 1, seed=seed))
        ]
        with engine.begin() as conn:
            append_events(conn, batch)
        events += batch
    await until(lambda: len(moto.object_keys()) == 1, 60, "one object")
    (key,) = moto.object_keys()
    assert sorted(archived_ids(moto)) == sorted(str(e.event_id) for e in events)
    assert key.startswith(f"audit/tenant={tenant}/")
