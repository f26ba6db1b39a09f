"""Audit events over HTTP: ingest is idempotent, normalises, quarantines what is no event
(all or nothing with ?strict=true); listing pages a range."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import orjson
import pytest
from sqlalchemy import func, select

from store_roles import owner_connection
from xavyo_siem.api import ApiLimits
from xavyo_siem.model import MAX_EVENT_TYPE_CHARS, MAX_METADATA_ENTRIES, MAX_TEXT_CHARS
from xavyo_siem.sample import generate_events
from xavyo_siem.store.quarantine import CONFLICT, list_quarantined
from xavyo_siem.store.tables import audit_events

from conftest import Api


def batch_of(
    api: Api, count: int, seed: int = 1, *, with_tenant: bool = False
) -> list[dict[str, Any]]:
    """`count` sample events of the API's tenant, with or without their `tenant_id`."""
    events = []
    for event in generate_events(count, 1, seed=seed):
        data = event.to_dict()
        data["tenant_id"] = str(api.tenant)
        if not with_tenant:
            del data["tenant_id"]
        events.append(data)
    return events


def stored_count(api: Api) -> int:
    with owner_connection(api.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def counts(**given: Any) -> dict[str, Any]:
    """The answer of an ingest: zero counts and no errors but for `given`."""
    return {"stored": 0, "duplicates": 0, "conflicts": 0, "quarantined": 0, "errors": [], **given}


async def test_ingest_is_idempotent(api: Api) -> None:
    """Sending the same batch twice stores it once and reports the rest as duplicates."""
    events = batch_of(api, 300)
    first = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": events}
    )
    again = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": events[:200]}
    )
    assert first.json() == counts(stored=300)
    assert again.json() == counts(duplicates=200)
    assert stored_count(api) == 300


async def test_events_without_a_tenant_get_the_paths_and_another_tenants_are_set_aside(
    api: Api,
) -> None:
    """A missing tenant_id is the path's; the path's own is accepted; another's is kept in
    the path tenant's quarantine (a 422 naming it with ?strict=true)."""
    mine = batch_of(api, 2, seed=2, with_tenant=True) + batch_of(api, 2, seed=3)
    ok = await api.client.post(api.path("/events"), headers=api.as_("admin"), json={"events": mine})
    assert ok.json() == counts(stored=4)
    theirs = batch_of(api, 3, seed=4)
    theirs[2]["tenant_id"] = str(api.other)
    refused = await api.client.post(
        api.path("/events") + "?strict=true", headers=api.as_("admin"), json={"events": theirs}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "events", 2, "tenant_id"]
    assert stored_count(api) == 4
    kept = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": theirs}
    )
    assert kept.json() == counts(
        stored=2,
        quarantined=1,
        errors=["events.2.tenant_id: must be the tenant of the path, or left out"],
    )
    assert stored_count(api) == 6
    with api.engine.connect() as conn:
        [entry] = list_quarantined(conn, tenant_id=api.tenant)
        assert list_quarantined(conn, tenant_id=api.other) == []
    assert (entry.source, orjson.loads(entry.raw)) == ("api:events.2", theirs[2])


@pytest.mark.parametrize(
    ("field", "value", "loc_field", "rule"),
    [
        ("timestamp", "2026-01-01T00:00:00", "timestamp", "UTC offset"),
        ("event_id", "not-a-uuid", "event_id", "UUID"),
        ("timestamp", None, "timestamp", "is required"),
    ],
)
async def test_an_item_that_is_no_event_is_quarantined_or_with_strict_stores_nothing(
    api: Api, field: str, value: object, loc_field: str, rule: str
) -> None:
    """An item without a usable id or time is kept in the tenant's quarantine and the rest
    stored (200, counted and named); with ?strict=true it is a 422 naming it, nothing stored."""
    events = batch_of(api, 50, seed=5)
    events[37][field] = value
    strict = await api.client.post(
        api.path("/events") + "?strict=true", headers=api.as_("admin"), json={"events": events}
    )
    assert strict.status_code == 422
    (problem,) = strict.json()["detail"]
    assert problem["loc"] == ["body", "events", 37, *loc_field.split(".")]
    assert rule in problem["msg"]
    assert stored_count(api) == 0
    response = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": events}
    )
    assert response.status_code == 200
    answer = response.json()
    assert (answer["stored"], answer["quarantined"]) == (49, 1)
    assert answer["errors"][0].startswith(f"events.37.{loc_field}: ")
    assert stored_count(api) == 49


@pytest.mark.parametrize(
    ("field", "value", "normalized"),
    [
        ("category", "gossip", ["category"]),
        ("severity", 11, ["severity"]),
        ("source_ip", "999.1.1.1", ["source_address", "source_ip"]),
        ("source_ip", "", ["source_ip"]),
        ("shoe_size", "44", ["metadata"]),
        ("metadata", {"k": 1, "": "v"}, ["metadata"]),
        ("actor_email", "a\x00b", ["actor_email"]),
        ("timestamp", "2016-12-31T23:59:60Z", ["timestamp"]),
    ],
)
async def test_an_event_is_stored_normalised_never_refused_for_its_content(
    api: Api, field: str, value: object, normalized: list[str]
) -> None:
    """A value the event cannot carry is normalised, the event stored with `normalized`
    naming the changed fields, and the batch is a plain 200."""
    events = batch_of(api, 3, seed=6)
    events[1][field] = value
    response = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": events}
    )
    assert response.json() == counts(stored=3)
    listed = (await api.client.get(api.path("/events"), headers=api.as_("viewer"))).json()
    [changed] = [event for event in listed["events"] if "normalized" in event]
    assert changed["event_id"] == events[1]["event_id"]
    assert changed["normalized"] == normalized


async def test_the_same_id_with_other_content_is_a_conflict_kept_in_the_quarantine(
    api: Api,
) -> None:
    """An event sent again with different content is counted and kept as a conflict in the
    tenant's quarantine, the stored event unchanged; the same content is a duplicate."""
    events = batch_of(api, 3, seed=8)
    await api.client.post(api.path("/events"), headers=api.as_("admin"), json={"events": events})
    edited = [events[0], {**events[1], "reason": "edited"}]
    response = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": edited}
    )
    assert response.json() == counts(duplicates=1, conflicts=1, quarantined=1, errors=[CONFLICT])
    with api.engine.connect() as conn:
        [entry] = list_quarantined(conn, tenant_id=api.tenant)
    assert str(entry.event_id) == events[1]["event_id"]
    assert orjson.loads(entry.raw)["reason"] == "edited"
    listed = (await api.client.get(api.path("/events"), headers=api.as_("viewer"))).json()
    kept = next(e for e in listed["events"] if e["event_id"] == events[1]["event_id"])
    assert kept.get("reason") == events[1].get("reason")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b"{not json", ["body"]),
        (b"[1, 2]", ["body"]),
        (b'{"events": {}}', ["body", "events"]),
        (b'{"events": [], "extra": 1}', ["body", "extra"]),
        (b"{}", ["body", "events"]),
    ],
)
async def test_a_body_that_is_not_a_batch_is_422(api: Api, body: bytes, loc: list[str]) -> None:
    """Invalid JSON, a bare list, a non-list and unknown keys are refused naming the place."""
    response = await api.client.post(
        api.path("/events"),
        headers={**api.as_("admin"), "Content-Type": "application/json"},
        content=body,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


async def test_batches_and_bodies_over_the_limits_are_413(make_api: Any) -> None:
    """More events than the batch limit, or more bytes than the body limit (chunked too): 413."""
    api: Api = make_api(limits=ApiLimits(max_body_bytes=64 * 1024, max_batch_events=20))
    too_many = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": batch_of(api, 21)}
    )
    assert too_many.status_code == 413
    assert too_many.json()["detail"][0]["loc"] == ["body", "events"]
    body = orjson.dumps({"events": batch_of(api, 20)}) + b" " * 64 * 1024
    too_big = await api.client.post(
        api.path("/events"),
        headers={**api.as_("admin"), "Content-Type": "application/json"},
        content=body,
    )
    assert too_big.status_code == 413
    assert too_big.json()["detail"][0]["msg"].endswith("65536 bytes")

    async def chunks() -> Any:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    chunked = await api.client.post(
        api.path("/events"),
        headers={**api.as_("admin"), "Content-Type": "application/json"},
        content=chunks(),
    )
    assert chunked.status_code == 413
    assert stored_count(api) == 0


async def test_over_long_text_and_metadata_are_stored_cut_not_refused(api: Api) -> None:
    """An event whose text fields pass their documented lengths and whose metadata holds
    600,000 entries is accepted (200) and stored cut to the limits, on both backends."""
    (event,) = batch_of(api, 1, seed=11)
    event["event_type"] = "T" * 300
    event["reason"] = "r" * (MAX_TEXT_CHARS + 10) + "\x00 past the limit"
    event["metadata"] = {f"k{n}": "v" for n in range(600_000)}
    body = orjson.dumps({"events": [event]})
    answer = await api.client.post(
        api.path("/events"),
        headers={**api.as_("admin"), "Content-Type": "application/json"},
        content=body,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == counts(stored=1)
    (stored,) = (await api.client.get(api.path("/events"), headers=api.as_("viewer"))).json()[
        "events"
    ]
    assert stored["event_type"] == "T" * MAX_EVENT_TYPE_CHARS
    assert stored["reason"] == "r" * MAX_TEXT_CHARS
    assert stored["metadata"] == {f"k{n}": "v" for n in range(MAX_METADATA_ENTRIES)}


async def test_listing_pages_through_a_time_range_in_order(api: Api) -> None:
    """`start`/`end` bound the range, `next` continues it, and every event comes once, in order."""
    events = batch_of(api, 120, seed=6)
    await api.client.post(api.path("/events"), headers=api.as_("admin"), json={"events": events})
    ordered = sorted(events, key=lambda e: e["timestamp"])
    start, end = ordered[10]["timestamp"], ordered[100]["timestamp"]
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"start": start, "end": end, "limit": 25}
        if after:
            params["after"] = after
        page = await api.client.get(api.path("/events"), headers=api.as_("viewer"), params=params)
        assert page.status_code == 200, page.text
        data = page.json()
        seen += [e["event_id"] for e in data["events"]]
        after = data["next"]
        if after is None:
            break
    expected = [e["event_id"] for e in ordered if start <= e["timestamp"] < end]
    assert seen == expected
    assert len(seen) == 90
    other = await api.client.get(api.path("/events", api.other), headers=api.as_("other_admin"))
    assert other.json() == {"events": [], "next": None}


async def test_listing_filters_and_refuses_bad_parameters(api: Api) -> None:
    """Category and severity filters apply; a naive time or a forged `after` is a 422."""
    await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": batch_of(api, 200, seed=7)}
    )
    page = await api.client.get(
        api.path("/events"),
        headers=api.as_("viewer"),
        params={"category": "authentication", "min_severity": 5, "limit": 1000},
    )
    assert page.json()["events"]
    assert {e["category"] for e in page.json()["events"]} == {"authentication"}
    assert all(e["severity"] >= 5 for e in page.json()["events"])
    for params, name in (
        ({"start": "2026-01-01T00:00:00"}, "start"),
        ({"after": "99999999999999999999999.1"}, "after"),
        ({"after": "x"}, "after"),
        ({"limit": 0}, "limit"),
    ):
        bad = await api.client.get(api.path("/events"), headers=api.as_("viewer"), params=params)
        assert bad.status_code == 422, params
        assert bad.json()["detail"][0]["loc"] == ["query", name]


async def test_ingest_needs_the_admin_role_of_that_tenant(api: Api) -> None:
    """Viewers may list but not ingest; another tenant's admin cannot ingest into this tenant."""
    body = {"events": batch_of(api, 1, seed=uuid4().int % 1000)}
    viewer = await api.client.post(api.path("/events"), headers=api.as_("viewer"), json=body)
    stranger = await api.client.post(api.path("/events"), headers=api.as_("other_admin"), json=body)
    assert (viewer.status_code, stranger.status_code) == (403, 404)
    assert stored_count(api) == 0
