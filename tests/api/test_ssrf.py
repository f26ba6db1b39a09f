"""The SSRF guard end to end: hostile endpoints refused when saved, a name that turns
internal refused at connect time (no connection is made), allow-listed loopback peers work.

Names that no resolver here answers as needed (`splunk.corp.example` → 10.0.0.5, a name
whose answer changes) come from a resolver table passed to the guard; `localhost` is
resolved for real.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine

from xavyo_siem import destinations as manage
from xavyo_siem.delivery import Delivered, Misconfigured, Record
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import SiemDestination
from xavyo_siem.pipeline import DestinationComponents, PipelineSettings, RetryPolicy
from xavyo_siem.runtime import Worker, WorkerSettings, open_destination
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store.destinations import get_destination

from conftest import HEC_TOKEN, KEYS, LOOPBACK, Api
from peers.hec_server import HecServer

PUBLIC = "93.184.216.34"


class Dns:
    """A resolver table for chosen names; every other name goes to the system resolver."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, family: int = 0, type: int = 0, **kw: Any) -> Any:
        self.asked.append(host)
        if host not in self.answers:
            return socket.getaddrinfo(host, port, family, type, **kw)
        kind = type or socket.SOCK_STREAM
        return [(socket.AF_INET, kind, 0, "", (address, port)) for address in self.answers[host]]


HOSTILE = [
    ("webhook", "https://127.0.0.1:8443/hook", "a loopback address"),
    ("webhook", "https://[::1]:8443/hook", "a loopback address"),
    ("syslog_tcp", "tcp://10.20.30.40:514", "a private address"),
    ("syslog_tcp", "tcp://172.16.5.4:514", "a private address"),
    ("webhook", "https://169.254.169.254/latest/meta-data", "a cloud metadata address"),
    ("webhook", "https://[::ffff:127.0.0.1]/hook", "a loopback address"),
    ("syslog_udp", "udp://[::ffff:169.254.169.254]:514", "a cloud metadata address"),
    ("syslog_tcp", "tcp://[fd00:ec2::254]:514", "a cloud metadata address"),
    ("syslog_tls", "tls://localhost:6514", "localhost resolves to 127.0.0.1, a loopback"),
    ("splunk_hec", "https://splunk.corp.example:8088", "resolves to 10.0.0.5, a private"),
    ("webhook", "https://0.0.0.0/", "an unspecified address"),
    ("syslog_udp", "udp://224.0.0.251:5353", "a multicast address"),
    ("syslog_relp", "relp://10.1.2.3:2514", "a private address"),
    ("syslog_relp", "relp://localhost", "localhost resolves to 127.0.0.1, a loopback"),
    ("webhook", "https://[fe80::1]/x", "a link-local address"),
    ("webhook", "https://100.64.7.7/x", "carrier-grade NAT"),
]


@pytest.fixture
async def guarded(make_api: Callable[..., Api]) -> Api:
    """The API in production with no allow-list, resolving through the table above."""
    dns = Dns({"splunk.corp.example": ["10.0.0.5"]})
    return make_api(Settings(), egress=EgressGuard(getaddrinfo=dns))


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the guard, not the store
@pytest.mark.parametrize(("kind", "endpoint", "why"), HOSTILE, ids=[e for _, e, _ in HOSTILE])
async def test_hostile_endpoints_are_refused_when_saved(
    guarded: Api, kind: str, endpoint: str, why: str
) -> None:
    """Loopback, private, link-local, metadata, multicast and unspecified endpoints, in every
    spelling and behind a name, are a 422 on `endpoint` that says why; nothing is stored."""
    body = {
        "name": "x",
        "delivery_type": kind,
        "format": "json",
        "endpoint": endpoint,
        **({"secret": HEC_TOKEN} if kind == "splunk_hec" else {}),
    }
    response = await guarded.client.post(
        guarded.path("/destinations"), headers=guarded.as_("admin"), json=body
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "endpoint"]
    assert why in problem["msg"]
    assert "XAVYO_SIEM_EGRESS_ALLOW" in problem["msg"]
    listed = await guarded.client.get(guarded.path("/destinations"), headers=guarded.as_("admin"))
    assert listed.json() == []


async def test_moving_a_destination_to_an_internal_endpoint_is_refused(guarded: Api) -> None:
    """The guard runs on update too: a public destination cannot be re-pointed inside."""
    guarded_dns = Dns({"siem.example": [PUBLIC]})
    engine = guarded.engine
    saved = manage.add_destination(
        engine,
        tenant_id=guarded.tenant,
        spec=manage.DestinationSpec(
            name="pub",
            delivery_type=manage.DeliveryType.SYSLOG_TCP,
            format=manage.ExportFormat.CEF,
            endpoint="tcp://siem.example:514",
            options={},
        ),
        secret=None,
        keyring=KEYS,
        development=False,
        egress=EgressGuard(getaddrinfo=guarded_dns),
    )
    moved = await guarded.client.patch(
        guarded.path(f"/destinations/{saved.id}"),
        headers=guarded.as_("admin"),
        json={"endpoint": "tcp://169.254.169.254:514"},
    )
    assert moved.status_code == 422
    assert moved.json()["detail"][0]["loc"] == ["body", "endpoint"]


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Listener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with Listener() as peer:
        yield peer


@pytest.mark.parametrize(
    ("kind", "endpoint"),
    [
        ("webhook", "http://rebind.example:{port}/hook"),
        ("syslog_tcp", "tcp://rebind.example:{port}"),
    ],
)
async def test_a_name_that_turns_internal_after_saving_is_refused_at_connect_time(
    make_api: Callable[..., Api], listener: Listener, kind: str, endpoint: str
) -> None:
    """DNS rebinding: saved while the name is public, refused once it answers 127.0.0.1, by
    the test route and by the delivering transport; the internal peer never sees a connection."""
    dns = Dns({"rebind.example": [PUBLIC]})
    guard = EgressGuard(getaddrinfo=dns)
    settings = Settings(env="development")
    api = make_api(settings, egress=guard)
    created = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json={
            "name": "rebind",
            "delivery_type": kind,
            "format": "json",
            "endpoint": endpoint.format(port=listener.port),
            "options": {"timeout_s": 2},
        },
    )
    assert created.status_code == 201, created.text
    dns.answers["rebind.example"] = ["127.0.0.1"]
    report = (
        await api.client.post(
            api.path(f"/destinations/{created.json()['id']}/test"), headers=api.as_("admin")
        )
    ).json()
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [
        ("configuration", True), ("resolve", False)
    ]  # fmt: skip
    assert (
        "rebind.example resolves to 127.0.0.1, a loopback address" in report["steps"][1]["detail"]
    )
    destination = stored(api.engine, api.tenant, UUID(created.json()["id"]))
    opened = await open_destination(
        api.engine, destination, settings=settings, keyring=KEYS, egress=guard
    )
    transport, formatter = opened.transport, opened.formatter
    try:
        event = next(iter(generate_events(1, 1, seed=1)))
        result = await transport.send([Record(str(event.event_id), 0, formatter(event))])
    finally:
        await transport.aclose()
    assert isinstance(result, Misconfigured), result
    assert "resolves to 127.0.0.1, a loopback address" in result.reason
    assert listener.accepted == 0
    assert dns.asked.count("rebind.example") >= 3  # saved, tested, and again to deliver


def stored(engine: Engine, tenant: UUID, destination_id: UUID) -> Any:
    with engine.connect() as conn:
        return get_destination(conn, tenant_id=tenant, destination_id=destination_id)


async def test_an_ip_literal_allowed_when_saved_is_refused_once_the_allow_list_shrinks(
    engine: Engine, listener: Listener
) -> None:
    """A destination saved under an allow-list cannot be opened by a process without it."""
    tenant = UUID(int=7)
    destination = manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=manage.DestinationSpec(
            name="loop",
            delivery_type=manage.DeliveryType.SYSLOG_TCP,
            format=manage.ExportFormat.CEF,
            endpoint=f"tcp://127.0.0.1:{listener.port}",
            options={},
        ),
        secret=None,
        keyring=KEYS,
        development=False,
        egress=EgressGuard(allow=LOOPBACK),
    )
    with pytest.raises(InvalidDestination, match=r"127\.0\.0\.1 is a loopback address"):
        await open_destination(engine, destination, settings=Settings(), keyring=KEYS)
    assert listener.accepted == 0


async def test_allow_listed_loopback_peers_receive_what_the_api_ingested(dev_api: Api) -> None:
    """With loopback allowed, a HEC destination made over the API gets every ingested event,
    after the audit event of its own creation (the tenant's SIEM sees its set-up)."""
    async with HecServer(token=HEC_TOKEN) as hec:
        created = await dev_api.client.post(
            dev_api.path("/destinations"),
            headers=dev_api.as_("admin"),
            json={
                "name": "hec",
                "delivery_type": "splunk_hec",
                "format": "json",
                "endpoint": hec.url,
                "options": {"start": "beginning"},
                "secret": HEC_TOKEN,
            },
        )
        assert created.status_code == 201, created.text
        events = [e.to_dict() for e in generate_events(120, 1, seed=11)]
        for event in events:
            event.pop("tenant_id")
        ingested = await dev_api.client.post(
            dev_api.path("/events"), headers=dev_api.as_("admin"), json={"events": events}
        )
        assert (ingested.json()["stored"], ingested.json()["duplicates"]) == (120, 0)
        destination = stored(dev_api.engine, dev_api.tenant, UUID(created.json()["id"]))
        settings = Settings(env="development", egress_allow=LOOPBACK)
        components = await open_destination(
            dev_api.engine, destination, settings=settings, keyring=KEYS
        )
        assert isinstance(await components.transport.check(), Delivered)
        await components.transport.aclose()

        async def open_components(opened: SiemDestination) -> DestinationComponents:
            return await open_destination(dev_api.engine, opened, settings=settings, keyring=KEYS)

        worker = Worker(
            engine=dev_api.engine,
            open_components=open_components,
            settings=WorkerSettings(
                lease_ttl_s=5, scan_interval_s=0.1, listen_poll_s=0.05,
                pipeline=PipelineSettings(
                    poll_interval_s=0.05, retry=RetryPolicy(base_s=0.01, cap_s=0.1)
                ),
            ),
        )  # fmt: skip
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 30
        while len(hec.received) < 121 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        worker.stop()
        await asyncio.wait_for(task, 30)
    first, *rest = (e["event"] for e in hec.received)
    assert first["event_type"] == "SIEM_DESTINATION_CREATED"
    assert HEC_TOKEN not in str(first)
    assert sorted(e["event_id"] for e in rest) == sorted(e["event_id"] for e in events)
