"""Elasticsearch destinations over HTTP: created with a sealed API key, refused with a text
format or a malformed secret (422 naming the field, nothing stored), and tested step by step
against the contract peer."""

from __future__ import annotations

from typing import Any

import pytest

from bulk_records import API_KEY, KEY, KEY_ID, STREAM

from conftest import Api
from peers.elasticsearch_peer import ElasticsearchPeer


def es_body(url: str, **changes: Any) -> dict[str, Any]:
    """A request body for an elasticsearch destination."""
    body: dict[str, Any] = {
        "name": "elastic",
        "delivery_type": "elasticsearch",
        "format": "json",
        "endpoint": url,
        "options": {"index": "logs-xavyo.audit-acme"},
        "rate_limit": None,
        "secret": API_KEY,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "loc", "rule"),
    [
        ({"format": "cef"}, ["body", "format"], "JSON documents"),
        ({"secret": "user:password"}, ["body", "secret"], "encoded value"),
        ({"options": {"index": "Audit"}}, ["body", "options", "index"], "lower-case"),
        ({"options": {"op_type": "update"}}, ["body", "options", "op_type"], "create, index"),
    ],
)
async def test_refusals_are_422_naming_the_field_and_store_nothing(
    api: Api, changes: dict[str, Any], loc: list[str], rule: str
) -> None:
    """Each refusal names its field and rule, never quotes the secret, and stores nothing."""
    response = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json=es_body("https://127.0.0.1:9200", **changes),
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == loc
    assert rule in problem["msg"]
    assert "user:password" not in response.text
    listed = await api.client.get(api.path("/destinations"), headers=api.as_("admin"))
    assert listed.json() == []


async def test_the_test_route_walks_every_step_against_the_peer(dev_api: Api) -> None:
    """Created over HTTP, the destination's test passes every step and stores the test
    event; the created destination reads back without its credential."""
    async with ElasticsearchPeer(api_keys={KEY_ID: KEY}) as peer:
        created = await dev_api.client.post(
            dev_api.path("/destinations"),
            headers=dev_api.as_("admin"),
            json=es_body(peer.url, options={}),
        )
        assert created.status_code == 201, created.text
        assert created.json()["has_secret"] is True
        assert API_KEY not in created.text
        where = dev_api.path(f"/destinations/{created.json()['id']}/test")
        report = (await dev_api.client.post(where, headers=dev_api.as_("admin"))).json()
    assert report["ok"] is True, report
    assert [s["step"] for s in report["steps"]] == [
        "configuration", "resolve", "connect", "authenticate", "deliver"
    ]  # fmt: skip
    (document,) = peer.documents(STREAM).values()
    assert document["event_type"] == "XAVYO_SIEM_TEST"
