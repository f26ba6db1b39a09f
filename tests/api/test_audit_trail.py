"""The audit trail of management changes made over the API, on both store backends.

Each change an admin makes (destinations, dead letters, exports, tests) is an
`administrative` event of that tenant, stored with its events: who (the token), what, from
where (the client's address), how it ended; never a credential. Another tenant's store
never holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Engine, select

from xavyo_siem.store.tables import audit_events
from xavyo_siem.store.tokens import authenticate_token

from conftest import BEARER, KNOWN_SECRETS, WEBHOOK_SECRET, Api

WEBHOOK = {
    "name": "hook",
    "delivery_type": "webhook",
    "format": "json",
    "endpoint": "https://127.0.0.1:9/hook",  # nothing listens: `test` fails at connect
    "secret": WEBHOOK_SECRET,
}


def token_id(api: Api, who: str) -> UUID:
    """The id of the token `who` holds."""
    with api.engine.connect() as conn:
        token = authenticate_token(conn, token=api.tokens[who])
    assert token is not None
    return token.id


async def trail(api: Api, tenant: UUID | None = None, as_: str = "viewer") -> list[dict[str, Any]]:
    """The tenant's administrative events, listed over the API, oldest first."""
    listed = await api.client.get(
        api.path("/events", tenant),
        params={"category": "administrative", "limit": 1000},
        headers=api.as_(as_),
    )
    assert listed.status_code == 200, listed.text
    events: list[dict[str, Any]] = listed.json()["events"]
    return events


def stored_text(engine: Engine) -> str:
    """Every stored event row of every tenant, as one text."""
    with engine.connect() as conn:
        return "\n".join(repr(tuple(row)) for row in conn.execute(select(audit_events)))


async def test_every_api_change_is_an_event_of_its_tenant_naming_who_what_and_where(
    api: Api,
) -> None:
    """Create, update (with a new secret), disable, enable, test, replay, purge, export,
    cancel and delete over the API each add one event to the tenant's store with the token,
    its role, the client address, the action, the object and the outcome."""
    admin = api.as_("admin")
    created = await api.client.post(api.path("/destinations"), headers=admin, json=WEBHOOK)
    assert created.status_code == 201, created.text
    destination = created.json()["id"]
    one = f"/destinations/{destination}"
    secret = orjson.dumps({"bearer_token": BEARER}).decode()
    calls = [
        ("PATCH", one, {"secret": secret, "options": {"timeout_s": 5}}),
        ("POST", f"{one}/disable", None),
        ("POST", f"{one}/enable", None),
        ("POST", f"{one}/test", None),
        ("POST", f"{one}/dead-letters/replay", None),
        ("POST", f"{one}/dead-letters/purge", {"ids": [1, 2]}),
    ]
    for method, path, body in calls:
        answer = await api.client.request(method, api.path(path), headers=admin, json=body)
        assert answer.status_code == 200, (path, answer.text)
    now, hour = datetime.now(UTC), timedelta(hours=1)  # the range holds the trail so far
    export = await api.client.post(
        api.path("/exports"),
        headers=admin,
        json={"start": (now - hour).isoformat(), "end": (now + hour).isoformat()},
    )
    assert export.status_code == 201, export.text
    job = export.json()["id"]
    cancel = await api.client.post(api.path(f"/exports/{job}/cancel"), headers=admin)
    assert cancel.status_code == 200, cancel.text
    deleted = await api.client.delete(api.path(one), headers=admin)
    assert deleted.status_code == 204

    events = await trail(api)
    assert [e["event_type"] for e in events] == [
        "SIEM_DESTINATION_CREATED",
        "SIEM_DESTINATION_UPDATED",
        "SIEM_DESTINATION_DISABLED",
        "SIEM_DESTINATION_ENABLED",
        "SIEM_DESTINATION_TESTED",
        "SIEM_DEAD_LETTERS_REPLAYED",
        "SIEM_DEAD_LETTERS_PURGED",
        "SIEM_EXPORT_CREATED",
        "SIEM_EXPORT_CANCELLED",
        "SIEM_DESTINATION_DELETED",
    ]
    admin_id = f"token:{token_id(api, 'admin')}"
    for event in events:
        assert event["tenant_id"] == str(api.tenant)
        assert event["category"] == "administrative"
        assert event["actor_id"] == admin_id
        assert event["source_ip"] == "127.0.0.1"  # httpx's ASGI transport's client
        assert event["metadata"]["via"] == "api"
        assert event["metadata"]["actor_role"] == "admin"
    by_type = {e["event_type"]: e for e in events}
    made = by_type["SIEM_DESTINATION_CREATED"]
    assert made["action"] == "destination.created"
    assert made["outcome"] == "success"
    assert made["target_resource"] == f"destination:{destination}"
    assert made["metadata"]["target_name"] == "hook"
    assert "secret" in made["metadata"]["fields"].split(",")
    assert by_type["SIEM_DESTINATION_UPDATED"]["metadata"]["fields"] == "options.timeout_s,secret"
    tested = by_type["SIEM_DESTINATION_TESTED"]
    assert (tested["outcome"], tested["reason"]) == ("failure", "step connect failed")
    assert by_type["SIEM_DEAD_LETTERS_PURGED"]["metadata"]["dead_letters"] == "1,2"
    assert by_type["SIEM_EXPORT_CANCELLED"]["target_resource"] == f"export_job:{job}"
    stored = stored_text(api.engine)
    assert [s for s in (*KNOWN_SECRETS, secret) if s in stored] == []
    assert await trail(api, api.other, as_="other_admin") == []


async def test_a_refused_change_is_recorded_as_a_failure_without_the_secret(api: Api) -> None:
    """A create and an update the service refuses are recorded with outcome failure and the
    reason naming the field; the refused credential appears in no stored event."""
    admin = api.as_("admin")
    refused = await api.client.post(
        api.path("/destinations"),
        headers=admin,
        json={**WEBHOOK, "options": {"batch_max_events": -1}},
    )
    assert refused.status_code == 422
    created = await api.client.post(api.path("/destinations"), headers=admin, json=WEBHOOK)
    destination = created.json()["id"]
    bad_secret = orjson.dumps({"bearer_token": BEARER, "unknown": 1}).decode()
    patched = await api.client.patch(
        api.path(f"/destinations/{destination}"), headers=admin, json={"secret": bad_secret}
    )
    assert patched.status_code == 422
    events = await trail(api)
    assert [(e["event_type"], e["outcome"]) for e in events] == [
        ("SIEM_DESTINATION_CREATED", "failure"),
        ("SIEM_DESTINATION_CREATED", "success"),
        ("SIEM_DESTINATION_UPDATED", "failure"),
    ]
    assert events[0]["reason"].startswith("options.batch_max_events:")
    assert events[2]["reason"].startswith("secret:")
    assert events[2]["target_resource"] == f"destination:{destination}"
    stored = stored_text(api.engine)
    assert [s for s in (*KNOWN_SECRETS, bad_secret) if s in stored] == []


async def test_a_platform_token_is_recorded_in_the_tenant_it_acts_on_and_nowhere_else(
    api: Api,
) -> None:
    """A platform admin's change lands in the store of the tenant it changed, with the role
    `platform admin`; each tenant's admin changes stay in that tenant's store."""
    for who, tenant in (("platform", api.tenant), ("other_admin", api.other)):
        answer = await api.client.post(
            api.path("/destinations", tenant),
            headers=api.as_(who),
            json={**WEBHOOK, "name": f"by-{who}"},
        )
        assert answer.status_code == 201, answer.text
    mine, theirs = await trail(api), await trail(api, api.other, as_="other_admin")
    assert [(e["metadata"]["target_name"], e["metadata"]["actor_role"]) for e in mine] == [
        ("by-platform", "platform admin")
    ]
    assert mine[0]["actor_id"] == f"token:{token_id(api, 'platform')}"
    assert [(e["metadata"]["target_name"], e["tenant_id"]) for e in theirs] == [
        ("by-other_admin", str(api.other))
    ]


async def test_reads_and_refused_roles_leave_no_trace(api: Api) -> None:
    """Listing and reading change nothing and record nothing; a viewer's refused change
    (403) never reaches the change functions, so it is not a change either."""
    created = await api.client.post(
        api.path("/destinations"), headers=api.as_("admin"), json=WEBHOOK
    )
    destination = created.json()["id"]
    for path in ("/destinations", f"/destinations/{destination}", "/health", "/exports"):
        assert (await api.client.get(api.path(path), headers=api.as_("viewer"))).status_code == 200
    refused = await api.client.post(
        api.path(f"/destinations/{destination}/disable"), headers=api.as_("viewer")
    )
    assert refused.status_code == 403
    assert [e["event_type"] for e in await trail(api)] == ["SIEM_DESTINATION_CREATED"]
