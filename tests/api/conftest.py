"""The API under test on each store backend, with tokens of every kind, and a watch on secrets.

`api` is the app over the `engine` fixture (SQLite and PostgreSQL), reached through
httpx's ASGI transport in the test's own event loop, so loopback peers (HEC, webhook)
started by a test answer while a request is in flight. `api.as_("viewer")` and friends
send a token of that kind.

Every API test that stores a credential uses one of `KNOWN_SECRETS`. The session-wide
`secret_watch` records every response body and every log record (DEBUG and up, every
logger) from the first API test to the end of the run, and fails the run if any of the
known secrets appears in one of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import Engine

from xavyo_siem.api import ApiLimits, create_app
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import SiemDestination
from xavyo_siem.pipeline import DestinationComponents, PipelineSettings, RetryPolicy
from xavyo_siem.runtime import Worker, WorkerSettings, open_destination
from xavyo_siem.settings import Settings
from xavyo_siem.store.tokens import Role, issue_token

HEC_TOKEN: Final = "5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c01"  # a GUID, as Splunk makes them
WEBHOOK_SECRET: Final = "whsec_a25vd24tc2VjcmV0LXdlYmhvb2stc2lnbmluZy0x"  # 31 bytes
BEARER: Final = "bearer-known-secret-7Q2x9Lm"
KNOWN_SECRETS: Final = (HEC_TOKEN, WEBHOOK_SECRET, BEARER, "a25vd24tc2VjcmV0LXdlYmhvb2s")
LOOPBACK: Final = ("127.0.0.0/8", "::1/128", "localhost")
KEYS: Final = KeyRing.parse(new_key_text())


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string is not a leak
            text = str(record.msg)
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@dataclass
class SecretWatch:
    """Everything that left the API or reached a log since the watch began."""

    recorder: _Recorder
    responses: list[str] = field(default_factory=list)

    def leaks(self) -> list[str]:
        seen = [*self.recorder.lines, *self.responses]
        return [
            f"{secret!r} in {text[:200]!r}"
            for text in seen
            for secret in KNOWN_SECRETS
            if secret in text
        ]


@pytest.fixture(scope="session", autouse=True)
def secret_watch() -> Iterator[SecretWatch]:
    """From the first API test to the end of the run: no known secret in a response or log."""
    recorder = _Recorder()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    watch = SecretWatch(recorder)
    yield watch
    root.removeHandler(recorder)
    root.setLevel(previous)
    leaks = watch.leaks()
    assert not leaks, f"known secrets left the service: {leaks[:5]}"


@dataclass
class Api:
    """The app, its store, two tenants and a token of every kind."""

    client: httpx.AsyncClient
    engine: Engine
    tenant: UUID
    other: UUID
    tokens: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        """Headers with `who`'s token: admin, viewer, other_admin, platform, platform_viewer."""
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def path(self, rest: str = "", tenant: UUID | None = None) -> str:
        """`/v1/tenants/<tenant>` + rest (the main tenant by default)."""
        return f"/v1/tenants/{tenant or self.tenant}{rest}"


def make_tokens(engine: Engine, tenant: UUID, other: UUID) -> dict[str, str]:
    """One token of each kind."""
    kinds = {
        "admin": (tenant, Role.ADMIN),
        "viewer": (tenant, Role.VIEWER),
        "other_admin": (other, Role.ADMIN),
        "platform": (None, Role.ADMIN),
        "platform_viewer": (None, Role.VIEWER),
    }
    tokens: dict[str, str] = {}
    with engine.begin() as conn:
        for who, (owner, role) in kinds.items():
            _, tokens[who] = issue_token(
                conn, tenant_id=owner, role=role, name=who, now=datetime.now(UTC)
            )
    return tokens


ApiFactory = Callable[..., Any]


@pytest.fixture
async def make_api(
    engine: Engine, secret_watch: SecretWatch, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Build an `Api` with the given settings and limits (production, loopback allowed)."""
    clients: list[httpx.AsyncClient] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        secret_watch.responses.append(response.text)

    def build(
        settings: Settings | None = None,
        limits: ApiLimits | None = None,
        egress: EgressGuard | None = None,
    ) -> Api:
        settings = settings or Settings(egress_allow=LOOPBACK)
        app = create_app(
            settings,
            engine,
            keyring=KEYS,
            egress=egress,
            limits=limits or ApiLimits(),
            export_dir=tmp_path / "exports",
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            event_hooks={"response": [record]},
        )
        clients.append(client)
        tenant, other = uuid4(), uuid4()
        return Api(client, engine, tenant, other, make_tokens(engine, tenant, other))

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
async def api(make_api: Callable[..., Api]) -> Api:
    """The API in production mode with loopback peers allowed."""
    return make_api()


@pytest.fixture
async def dev_api(make_api: Callable[..., Api]) -> Api:
    """The API in development mode (plain http:// peers) with loopback peers allowed."""
    return make_api(Settings(env="development", egress_allow=LOOPBACK))


async def deliver_until(api: Api, settings: Settings, until: Callable[[], bool]) -> None:
    """Run a worker over every destination of the store until `until()` holds (or 60 s
    pass), with fast retries, then stop it."""

    async def open_components(destination: SiemDestination) -> DestinationComponents:
        return await open_destination(api.engine, destination, settings=settings, keyring=KEYS)

    worker = Worker(
        engine=api.engine,
        open_components=open_components,
        settings=WorkerSettings(
            lease_ttl_s=5, scan_interval_s=0.1, listen_poll_s=0.05,
            pipeline=PipelineSettings(
                poll_interval_s=0.05,
                retry=RetryPolicy(base_s=0.01, cap_s=0.05, misconfigured_cap_s=0.05),
            ),
        ),
    )  # fmt: skip
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 60  # a bound for a loaded machine, not a speed check
    while not until() and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(task, 30)
