"""Health over HTTP: per destination, per tenant, the service's own `/healthz`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
from test_auth import add_udp

from xavyo_siem.api import create_app
from xavyo_siem.model import CircuitState
from xavyo_siem.settings import Settings
from xavyo_siem.store import make_engine
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.leases import acquire_leases
from xavyo_siem.store.state import Progress, record_progress

from conftest import KEYS, Api


async def test_destination_and_tenant_health_show_a_failing_destination(api: Api) -> None:
    """A recorded failure shows on the destination and makes the tenant `failing`; a disabled
    failing destination does not."""
    good, bad = add_udp(api.engine, api.tenant), add_udp(api.engine, api.tenant)
    now = datetime.now(UTC)
    with api.engine.begin() as conn:
        epoch = acquire_leases(conn, owner="w", limit=2, ttl=timedelta(minutes=1), now=now)[bad.id]
        record_progress(
            conn, owner="w", now=now,
            progress=[Progress(
                tenant_id=api.tenant, destination_id=bad.id, epoch=epoch, failures=1,
                consecutive_failures=1, circuit_state=CircuitState.OPEN,
                circuit_reason="HEC code 4 (Invalid token)", last_failure=now,
                last_error="HEC code 4 (Invalid token)",
            )],
        )  # fmt: skip
        add_dead_letters(
            conn, tenant_id=api.tenant, destination_id=bad.id,
            entries=[(uuid4(), "refused"), (uuid4(), "refused")], now=now,
        )  # fmt: skip
    one = await api.client.get(
        api.path(f"/destinations/{bad.id}/health"), headers=api.as_("viewer")
    )
    assert one.status_code == 200
    data = one.json()
    assert (data["status"], data["circuit_state"], data["dead_letters"]) == ("failing", "open", 2)
    assert data["last_error"] == "HEC code 4 (Invalid token)"
    tenant = (await api.client.get(api.path("/health"), headers=api.as_("viewer"))).json()
    assert tenant["status"] == "failing"
    assert {d["destination_id"]: d["status"] for d in tenant["destinations"]} == {
        str(good.id): "ok", str(bad.id): "failing"
    }  # fmt: skip
    await api.client.post(api.path(f"/destinations/{bad.id}/disable"), headers=api.as_("admin"))
    calm = (await api.client.get(api.path("/health"), headers=api.as_("viewer"))).json()
    assert calm["status"] == "ok"


async def test_a_tenant_without_destinations_is_ok_and_others_see_nothing(api: Api) -> None:
    """An empty tenant is `ok` with no destinations; another tenant's health is not found."""
    add_udp(api.engine, api.other)
    mine = (await api.client.get(api.path("/health"), headers=api.as_("admin"))).json()
    assert mine == {"tenant_id": str(api.tenant), "status": "ok", "destinations": []}
    theirs = await api.client.get(api.path("/health", api.other), headers=api.as_("admin"))
    assert theirs.status_code == 404


async def test_healthz_needs_no_token_and_checks_the_store(api: Api) -> None:
    """`/healthz` answers ok while the store is reachable, 503 when it is not."""
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    for url in ("postgresql://postgres@127.0.0.1:1/none", "sqlite:////nonexistent-dir/x.db"):
        broken = make_engine(url)
        app = create_app(Settings(), broken, keyring=KEYS)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test"
        ) as client:
            down = await client.get("/healthz")
        broken.dispose()
        assert down.status_code == 503
        assert down.json()["detail"][0]["type"] == "unavailable"
