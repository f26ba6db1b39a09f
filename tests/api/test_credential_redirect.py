"""A credential goes only where it was given for: pointing a destination elsewhere over the
API needs the secret again, and one pointed elsewhere in the store directly, or left
without its credential, is refused by `test` and by the worker, with health saying why.

The attacker's servers are real peers on another loopback port (another origin); each
test asserts they never received a single request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import select, update

from store_roles import owner_connection
from xavyo_siem.delivery import Delivered
from xavyo_siem.runtime import open_destination
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store.destinations import list_destinations
from xavyo_siem.store.tables import destination_state, destinations

from conftest import BEARER, HEC_TOKEN, KEYS, LOOPBACK, WEBHOOK_SECRET, Api, deliver_until
from peers.hec_server import HecServer
from peers.webhook_receiver import WebhookReceiver

SETTINGS = Settings(env="development", egress_allow=LOOPBACK)
WEBHOOK_CREDENTIALS = orjson.dumps(
    {"signing_secrets": [WEBHOOK_SECRET], "bearer_token": BEARER}
).decode()

NEW_TOKEN_1 = "0a1b2c3d-0000-4000-8000-000000000001"
NEW_TOKEN_2 = "0a1b2c3d-0000-4000-8000-000000000002"


async def make_destination(api: Api, kind: str, url: str, secret: str) -> str:
    made = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json={"name": kind, "delivery_type": kind, "format": "json", "endpoint": url,
              "options": {"start": "beginning"}, "secret": secret},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def ingest(api: Api, count: int) -> None:
    events = [e.to_dict() for e in generate_events(count, 1, seed=5)]
    for event in events:
        event["tenant_id"] = str(api.tenant)
    sent = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": events}
    )
    assert sent.status_code in (200, 201, 202), sent.text


def refused(api: Api, ident: str) -> Callable[[], bool]:
    """Whether the worker has recorded a failure for the destination (read from the store)."""

    def check() -> bool:
        with owner_connection(api.engine) as conn:
            failures = conn.execute(
                select(destination_state.c.failures).where(
                    destination_state.c.destination_id == ident
                )
            ).scalar_one()
        return bool(failures)

    return check


async def health_of(api: Api, ident: str) -> dict[str, Any]:
    answer = await api.client.get(
        api.path(f"/destinations/{ident}/health"), headers=api.as_("admin")
    )
    return dict(answer.json())


async def test_redirect_and_test_over_the_api_is_refused_and_reaches_no_one(dev_api: Api) -> None:
    """PATCHing an HEC or webhook endpoint to another origin without the secret is a 422 on
    `endpoint` saying the secret is needed again; the stored endpoint stays, and `test`
    then goes to the real peer only: the attacker's servers receive nothing."""
    api = dev_api
    async with (
        HecServer(token=HEC_TOKEN) as hec,
        WebhookReceiver(secrets=[WEBHOOK_SECRET], bearer=BEARER) as hook,
        HecServer(token="attacker") as evil_hec,
        WebhookReceiver() as evil_hook,
    ):
        hec_id = await make_destination(api, "splunk_hec", hec.url, HEC_TOKEN)
        hook_id = await make_destination(api, "webhook", hook.url, WEBHOOK_CREDENTIALS)
        for ident, evil in ((hec_id, evil_hec.url), (hook_id, evil_hook.url)):
            moved = await api.client.patch(
                api.path(f"/destinations/{ident}"),
                headers=api.as_("admin"),
                json={"endpoint": evil},
            )
            assert moved.status_code == 422, moved.text
            (problem,) = moved.json()["detail"]
            assert problem["loc"] == ["body", "endpoint"]
            assert "needs the secret again" in problem["msg"]
            tested = await api.client.post(
                api.path(f"/destinations/{ident}/test"), headers=api.as_("admin")
            )
            assert tested.json()["ok"] is True, tested.text
        shown = await api.client.get(api.path(f"/destinations/{hec_id}"), headers=api.as_("admin"))
        assert shown.json()["endpoint"] == hec.url
    assert evil_hec.requests == []
    assert (evil_hook.attempts, evil_hook.messages, evil_hook.refusals) == ([], [], [])
    assert len(hec.received) == 1
    assert len(hook.messages) == 1


async def test_a_path_change_keeps_the_credential(dev_api: Api) -> None:
    """Another path on the same origin is no move: the PATCH passes and the token still
    authenticates there."""
    api = dev_api
    async with HecServer(token=HEC_TOKEN) as hec:
        ident = await make_destination(api, "splunk_hec", hec.url, HEC_TOKEN)
        moved = await api.client.patch(
            api.path(f"/destinations/{ident}"),
            headers=api.as_("admin"),
            json={"endpoint": hec.url + "/services/collector", "options": {"gzip": False}},
        )
        assert moved.status_code == 200, moved.text
        tested = await api.client.post(
            api.path(f"/destinations/{ident}/test"), headers=api.as_("admin")
        )
    assert tested.json()["ok"] is True, tested.text


async def test_moving_with_the_secret_again_binds_it_to_the_new_origin(dev_api: Api) -> None:
    """With the secret in the same PATCH the move passes, and the new peer gets the new
    secret only."""
    api = dev_api
    async with (
        HecServer(token=HEC_TOKEN) as old,
        HecServer(token=NEW_TOKEN_1) as new,
    ):
        ident = await make_destination(api, "splunk_hec", old.url, HEC_TOKEN)
        moved = await api.client.patch(
            api.path(f"/destinations/{ident}"),
            headers=api.as_("admin"),
            json={"endpoint": new.url, "secret": NEW_TOKEN_1},
        )
        assert moved.status_code == 200, moved.text
        tested = await api.client.post(
            api.path(f"/destinations/{ident}/test"), headers=api.as_("admin")
        )
    assert tested.json()["ok"] is True, tested.text
    assert old.requests == []
    assert len(new.received) == 1


async def test_an_endpoint_changed_in_the_store_is_refused_by_test_and_worker(
    dev_api: Api,
) -> None:
    """A direct SQL update of the endpoint leaves a credential that does not open there:
    `test` stops at `configuration`, the worker sends nothing, and health says why."""
    api = dev_api
    async with HecServer(token=HEC_TOKEN) as hec, HecServer(token="attacker") as evil:
        ident = await make_destination(api, "splunk_hec", hec.url, HEC_TOKEN)
        with owner_connection(api.engine) as conn:
            conn.execute(
                update(destinations).where(destinations.c.id == ident).values(endpoint=evil.url)
            )
        tested = await api.client.post(
            api.path(f"/destinations/{ident}/test"), headers=api.as_("admin")
        )
        (step,) = tested.json()["steps"]
        assert (step["step"], step["ok"]) == ("configuration", False)
        assert f"given for splunk_hec {hec.url}" in step["detail"]
        assert f"now sends to splunk_hec {evil.url}" in step["detail"]
        await ingest(api, 10)
        await deliver_until(api, SETTINGS, refused(api, ident))
        health = await health_of(api, ident)
    assert evil.requests == []
    assert hec.requests == []
    assert health["status"] == "failing"
    assert "credential: refused, nothing is sent" in health["last_error"]
    assert "the destination now sends to" in health["last_error"]
    assert HEC_TOKEN not in str(health)


async def test_a_hec_destination_without_its_credential_is_refused(dev_api: Api) -> None:
    """A NULL credential on an HEC destination is never sent without: nothing reaches the
    peer and health says the credential is missing."""
    api = dev_api
    async with HecServer(token=HEC_TOKEN) as hec:
        ident = await make_destination(api, "splunk_hec", hec.url, HEC_TOKEN)
        with owner_connection(api.engine) as conn:
            conn.execute(update(destinations).where(destinations.c.id == ident).values(secret=None))
        await ingest(api, 10)
        await deliver_until(api, SETTINGS, refused(api, ident))
        health = await health_of(api, ident)
    assert hec.requests == []
    assert health["status"] == "failing"
    assert "no stored credential" in health["last_error"]


async def test_a_worker_holding_the_old_settings_opens_the_new_ones_with_the_new_secret(
    dev_api: Api,
) -> None:
    """Opening reads the settings and the secret together: a destination moved over the API
    (with its secret) opens at its new endpoint even from the settings a worker loaded
    before the move, and the old peer is never sent the new secret."""
    api = dev_api
    async with (
        HecServer(token=HEC_TOKEN) as old,
        HecServer(token=NEW_TOKEN_2) as new,
    ):
        ident = await make_destination(api, "splunk_hec", old.url, HEC_TOKEN)
        with owner_connection(api.engine) as conn:
            (loaded,) = list_destinations(conn, tenant_id=api.tenant)
        moved = await api.client.patch(
            api.path(f"/destinations/{ident}"),
            headers=api.as_("admin"),
            json={"endpoint": new.url, "secret": NEW_TOKEN_2},
        )
        assert moved.status_code == 200, moved.text
        opened = await open_destination(api.engine, loaded, settings=SETTINGS, keyring=KEYS)
        try:
            probe = await opened.transport.check()
        finally:
            await opened.transport.aclose()
    assert isinstance(probe, Delivered), probe
    assert old.requests == []
    assert new.requests
