"""Credentials never leave: not in a response, not in an error, not in a log line.

One flow per backend with known secrets (a HEC token, webhook signing secret and bearer
token): create, read, update, refuse malformed ones, test against live peers (one that
refuses the token), deliver through the pipeline, and fail delivery. Every response and
every log record at DEBUG is searched for the secrets. (`conftest.secret_watch` also
searches everything the rest of the run produces.)
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import orjson
import pytest
from sqlalchemy import select

from store_roles import owner_connection
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store.tables import destinations

from conftest import (
    BEARER,
    HEC_TOKEN,
    KNOWN_SECRETS,
    LOOPBACK,
    WEBHOOK_SECRET,
    Api,
    deliver_until,
)
from peers.hec_server import HecServer
from peers.webhook_receiver import WebhookReceiver

WEBHOOK_CREDENTIALS = orjson.dumps(
    {"signing_secrets": [WEBHOOK_SECRET], "bearer_token": BEARER}
).decode()


async def test_known_secrets_never_appear_in_responses_or_logs(
    dev_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Through every API and delivery path that touches a credential, no response body and
    no log record (DEBUG and up) contains one."""
    caplog.set_level(logging.DEBUG)
    api = dev_api
    admin = api.as_("admin")
    bodies: list[str] = []

    async def call(method: str, path: str, **kwargs: Any) -> Any:
        response = await api.client.request(method, api.path(path), headers=admin, **kwargs)
        bodies.append(response.text)
        return response

    settings = Settings(env="development", egress_allow=LOOPBACK)
    events = [e.to_dict() for e in generate_events(40, 1, seed=21)]
    for event in events:
        event["tenant_id"] = str(api.tenant)
    async with (
        HecServer(token=HEC_TOKEN) as hec,
        WebhookReceiver(secrets=[WEBHOOK_SECRET], bearer=BEARER) as hook,
    ):
        made_hec = await call(
            "POST", "/destinations",
            json={"name": "hec", "delivery_type": "splunk_hec", "format": "json",
                  "endpoint": hec.url, "options": {"start": "beginning"}, "secret": HEC_TOKEN},
        )  # fmt: skip
        made_hook = await call(
            "POST", "/destinations",
            json={"name": "hook", "delivery_type": "webhook", "format": "json",
                  "endpoint": hook.url, "options": {"start": "beginning"},
                  "secret": WEBHOOK_CREDENTIALS},
        )  # fmt: skip
        assert (made_hec.status_code, made_hook.status_code) == (201, 201), made_hook.text
        hec_id, hook_id = made_hec.json()["id"], made_hook.json()["id"]
        await call("GET", "/destinations")
        await call("GET", f"/destinations/{hec_id}")
        await call("PATCH", f"/destinations/{hec_id}", json={"secret": HEC_TOKEN})
        for bad in (
            {"secret": HEC_TOKEN * 1000},
            {"secret": 12345},
            {"secret": WEBHOOK_CREDENTIALS.replace("bearer_token", "bearer")},
            {"secret": "{" + WEBHOOK_CREDENTIALS},
            {"secret": WEBHOOK_SECRET[:10]},
            {"nonsense": HEC_TOKEN},
        ):
            refused = await call("PATCH", f"/destinations/{hook_id}", json=bad)
            assert refused.status_code == 422, bad
        ok = await call("POST", f"/destinations/{hook_id}/test")
        assert ok.json()["ok"] is True, ok.text
        assert ok.json()["steps"][-2]["step"] == "authenticate"
        await call("POST", "/events", json={"events": events})
        await deliver_until(api, settings, lambda: len(hec.received) >= 40)
        await deliver_until(api, settings, lambda: len(hook.events()) >= 40)
        assert len(hec.received) >= 40
        assert len(hook.events()) >= 40
        assert not hook.refusals
        hec.token = "00000000-0000-4000-8000-000000000000"  # the server no longer knows ours
        failed = await call("POST", f"/destinations/{hec_id}/test")
        assert failed.json()["steps"][-1]["step"] == "authenticate"
        await call("POST", "/events", json={"events": [
            {**e, "event_id": str(UUID(int=i + 1))} for i, e in enumerate(events[:5])
        ]})  # fmt: skip
        asked = len(hec.requests)
        await deliver_until(api, settings, lambda: len(hec.requests) >= asked + 3)
        health = await call("GET", f"/destinations/{hec_id}/health")
        assert health.json()["status"] == "failing"
        assert "token" in health.json()["last_error"].lower()
        await call("GET", f"/destinations/{hec_id}/health")
        await call("GET", "/health")
    with owner_connection(api.engine) as conn:
        sealed = [row for (row,) in conn.execute(select(destinations.c.secret))]
    assert len(sealed) == 2
    seen = [*bodies, *(r.getMessage() for r in caplog.records), caplog.text, *sealed]
    leaks = [(s, text[:120]) for text in seen for s in KNOWN_SECRETS if s in text]
    assert not leaks
