"""Peers that echo our request headers in their error answers never get the destination's
credential kept, logged or shown.

A Splunk HEC that quotes `Authorization: Splunk <token>` in every error reply, and a webhook
receiver that quotes every header, the custom auth header `X-Feed-Key` included (a header
with no known credential shape, so only the transport's own secret removes it). After
rejected records (dead letters), failed batches (stored last error and circuit reason) and
a destination test, the credentials are in no stored row, no API answer and no log record.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Final
from uuid import UUID

import orjson
import pytest
from sqlalchemy import select

from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store.tables import dead_letters, destination_state

from conftest import HEC_TOKEN, LOOPBACK, Api, deliver_until
from peers.hec_server import HecFaults, HecServer
from peers.webhook_receiver import WebhookReceiver

FEED_KEY: Final = "fk-7d41c0aa93be5f12"
WEBHOOK_CREDENTIALS: Final = orjson.dumps({"headers": {"X-Feed-Key": FEED_KEY}}).decode()
CREDENTIALS: Final = (HEC_TOKEN, FEED_KEY)


def stored_reasons(api: Api) -> tuple[list[str], list[str]]:
    """Every dead-letter reason, and every stored last error and circuit reason."""
    with api.engine.connect() as conn:
        letters = [r for (r,) in conn.execute(select(dead_letters.c.reason)) if r]
        states = conn.execute(
            select(destination_state.c.last_error, destination_state.c.circuit_reason)
        ).all()
    return letters, [text for row in states for text in row if text]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the peers, not the store
async def test_echoed_credentials_are_never_kept_logged_or_shown(
    dev_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """After dead letters, failed batches and a destination test against peers that echo
    our headers, neither the HEC token nor the webhook's custom header value is in a dead
    letter, the stored health, an API answer or a log record; the echo did reach us (the
    reasons carry `[redacted]` where the credential was)."""
    caplog.set_level(logging.DEBUG)
    api = dev_api
    admin = api.as_("admin")
    answers: list[str] = []

    async def call(method: str, path: str, **kwargs: Any) -> Any:
        response = await api.client.request(method, api.path(path), headers=admin, **kwargs)
        answers.append(response.text)
        return response

    settings = Settings(env="development", egress_allow=LOOPBACK)
    events = [e.to_dict() for e in generate_events(6, 1, seed=5)]
    for event in events:
        event["tenant_id"] = str(api.tenant)
    faults = HecFaults(echo_headers=True, invalid_event_at=0, invalid_event_times=1_000_000)
    async with (
        HecServer(token=HEC_TOKEN, faults=faults) as hec,
        WebhookReceiver(
            auth_header=("X-Feed-Key", FEED_KEY), echo_headers=True, script=deque([413] * 100)
        ) as hook,
    ):
        made = []
        for name, kind, url, secret in (
            ("hec", "splunk_hec", hec.url, HEC_TOKEN),
            ("hook", "webhook", hook.url, WEBHOOK_CREDENTIALS),
        ):
            options = {"start": "beginning", "batch_max_events": 3}
            body = {"name": name, "delivery_type": kind, "format": "json", "endpoint": url}
            made.append(
                await call(
                    "POST", "/destinations", json={**body, "options": options, "secret": secret}
                )
            )
        assert [m.status_code for m in made] == [201, 201], made[-1].text
        ids = [UUID(m.json()["id"]) for m in made]
        await call("POST", "/events", json={"events": events[:3]})
        await deliver_until(api, settings, lambda: len(stored_reasons(api)[0]) >= 6)
        faults.invalid_event_times = 0
        faults.internal_error = 1_000_000
        hook.script = deque([400] * 100)
        await call("POST", "/events", json={"events": events[3:]})
        await deliver_until(api, settings, lambda: len(stored_reasons(api)[1]) >= 3)
        faults.unhealthy = True
        tests = [await call("POST", f"/destinations/{i}/test") for i in ids]
        for i in ids:
            await call("GET", f"/destinations/{i}/health")
            await call("GET", f"/destinations/{i}/dead-letters")
        await call("GET", "/health")
    letters, health = stored_reasons(api)
    assert len(letters) >= 6
    assert any("[redacted]" in text for text in letters)
    assert any("[redacted]" in text for text in health)
    assert [t.status_code for t in tests] == [200, 200]
    assert not tests[0].json()["ok"]
    assert "[redacted]" in tests[0].text
    seen = [*letters, *health, *answers, caplog.text, *(r.getMessage() for r in caplog.records)]
    leaks = [(secret, text[:160]) for text in seen for secret in CREDENTIALS if secret in text]
    assert not leaks
