"""Hostile destination input over HTTP: an endpoint two URL parsers read differently is a 422
on create (and a destination stored with one before is reported, never a 500, by `test`); an
HEC token that is not a GUID, or holds spaces or control characters, is a 422 on `secret`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.store import writing
from xavyo_siem.store.destinations import insert_destination
from xavyo_siem.store.events import START

from conftest import HEC_TOKEN, Api

MALFORMED = [
    "https://a[2606:4700::1111]/x",
    "https://a\\b.example/x",
    "https://[2606:4700::1111]x/",
    "https://[fe80::1%25eth0]:8088/",
    "https://siem.example:+8088/",
]


def hec_body(endpoint: str, secret: Any = HEC_TOKEN) -> dict[str, Any]:
    return {
        "name": f"splunk-{uuid4().hex[:6]}",
        "delivery_type": "splunk_hec",
        "format": "json",
        "endpoint": endpoint,
        "secret": secret,
    }


@pytest.mark.parametrize("endpoint", MALFORMED)
async def test_a_malformed_endpoint_is_a_422_on_create(api: Api, endpoint: str) -> None:
    """An endpoint urllib and aiohttp would read differently is refused on `endpoint` with
    the rule it broke, and nothing is stored."""
    response = await api.client.post(
        api.path("/destinations"), headers=api.as_("admin"), json=hec_body(endpoint)
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "endpoint"]
    assert problem["msg"]
    listed = await api.client.get(api.path("/destinations"), headers=api.as_("admin"))
    assert listed.json() == []


async def test_testing_a_destination_stored_with_a_malformed_endpoint_is_not_a_500(
    api: Api,
) -> None:
    """A webhook to `https://a[2606:4700::1111]/x` stored before the endpoint rules (as an
    older version saved it): `test` answers 200, its configuration step failing on the
    endpoint; no connection is tried."""
    now = datetime.now(UTC)
    with writing(api.engine) as conn:
        stored = insert_destination(
            conn,
            destination=SiemDestination(
                id=uuid4(),
                tenant_id=api.tenant,
                name="legacy",
                delivery_type=DeliveryType.WEBHOOK,
                format=ExportFormat.JSON,
                endpoint="https://a[2606:4700::1111]/x",
                created_at=now,
                updated_at=now,
            ),
            sealed_secret=None,
            cursor=START,
        )
    response = await api.client.post(
        api.path(f"/destinations/{stored.id}/test"), headers=api.as_("admin")
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is False
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [("configuration", False)]
    assert "endpoint" in report["steps"][0]["detail"]


BAD_TOKENS = [
    ("5e1f0c2a-7d3b-4c8e-9f10 8ec5ec2e7c01", "spaces"),
    ("5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c01\n", "line breaks"),
    ("5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c01\r\nX-Injected: 1", "line breaks"),
    ("5e1f0c2a-7d3b-4c8e-9f10-\x008ec5ec2e7c01", "control characters"),
    ("5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c0\u200b", "control characters"),
    ("hec-token-0001", "a GUID"),
    ("5e1f0c2a7d3b4c8e9f108ec5ec2e7c01", "a GUID"),
    ("{5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c01}", "a GUID"),
    ("5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c0g", "a GUID"),
]


@pytest.mark.parametrize(("token", "rule"), BAD_TOKENS)
async def test_an_hec_token_of_the_wrong_shape_is_refused_on_create_and_update(
    api: Api, token: str, rule: str
) -> None:
    """A token with spaces, line breaks or control characters, or not a GUID, is a 422 on
    `secret` naming the rule, on create and on update; the message never quotes it and
    the stored destination keeps its token."""
    created = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json=hec_body("https://127.0.0.1:8088", secret=token),
    )
    assert created.status_code == 422, created.text
    (problem,) = created.json()["detail"]
    assert problem["loc"] == ["body", "secret"]
    assert rule in problem["msg"]
    good = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json=hec_body("https://127.0.0.1:8088", secret=HEC_TOKEN.upper()),
    )
    assert good.status_code == 201, good.text
    updated = await api.client.patch(
        api.path(f"/destinations/{good.json()['id']}"),
        headers=api.as_("admin"),
        json={"secret": token},
    )
    assert updated.status_code == 422, updated.text
    (problem,) = updated.json()["detail"]
    assert problem["loc"] == ["body", "secret"]
    assert token not in created.text + updated.text
