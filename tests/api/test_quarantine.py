"""The tenant's quarantine over HTTP: listed and shown to the tenant's tokens, never to another
tenant's."""

from __future__ import annotations

from xavyo_siem.sample import generate_events

from conftest import Api


async def test_the_tenant_lists_and_shows_its_quarantine_and_no_other_tenant_does(
    api: Api,
) -> None:
    """A line ingest set aside is listed (without its raw text) and shown (with it) to the
    tenant's viewer; another tenant's token gets 404 for the list and the entry."""
    events = [event.to_dict() for event in generate_events(3, 1, seed=9)]
    for event in events:
        del event["tenant_id"]  # the path's tenant
    del events[1]["event_id"]
    ingested = await api.client.post(
        api.path("/events"), headers=api.as_("admin"), json={"events": events}
    )
    assert ingested.json()["quarantined"] == 1
    listed = await api.client.get(api.path("/quarantine"), headers=api.as_("viewer"))
    assert listed.status_code == 200, listed.text
    page = listed.json()
    (item,) = page["items"]
    assert page["next_after_id"] is None
    assert item["tenant_id"] == str(api.tenant)
    assert item["source"] == "api:events.1"
    assert "event_id" in item["reason"]
    assert item.get("raw") is None
    shown = await api.client.get(api.path(f"/quarantine/{item['id']}"), headers=api.as_("viewer"))
    assert shown.status_code == 200, shown.text
    assert '"timestamp"' in shown.json()["raw"]
    for path in ("/quarantine", f"/quarantine/{item['id']}"):
        other = await api.client.get(api.path(path), headers=api.as_("other_admin"))
        assert other.status_code == 404
    missing = await api.client.get(api.path("/quarantine/999999"), headers=api.as_("viewer"))
    assert missing.status_code == 404
