"""Destinations over HTTP: create, read, update, delete, enable, test; bad input changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import trustme
from sqlalchemy import select

from store_roles import owner_connection
from xavyo_siem.store.tables import destinations

from conftest import HEC_TOKEN, KEYS, WEBHOOK_SECRET, Api
from peers.hec_server import HecServer
from peers.rsyslog import RelpTlsFiles, start_rsyslog


def hec_body(url: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "splunk",
        "delivery_type": "splunk_hec",
        "format": "json",
        "endpoint": url,
        "options": {"index": "main", "batch_max_events": 50},
        "filters": {"categories": ["authentication"], "min_severity": 2},
        "rate_limit": {"events_per_s": 100, "burst": 200},
        "secret": HEC_TOKEN,
    }
    body.update(changes)
    return body


async def test_create_then_read_back_without_the_credential(api: Api) -> None:
    """A created destination reads back with every setting, `has_secret`, and no secret field."""
    created = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json=hec_body("https://127.0.0.1:8088"),
    )
    assert created.status_code == 201, created.text
    data = created.json()
    assert "secret" not in data
    assert data["has_secret"] is True
    assert data["options"] == {"index": "main", "batch_max_events": 50}
    assert data["filters"] == {
        "categories": ["authentication"], "event_types": [], "min_severity": 2
    }  # fmt: skip
    assert data["rate_limit"] == {"events_per_s": 100.0, "burst": 200}
    fetched = await api.client.get(
        api.path(f"/destinations/{data['id']}"), headers=api.as_("viewer")
    )
    listed = await api.client.get(api.path("/destinations"), headers=api.as_("viewer"))
    assert fetched.json() == data
    assert listed.json() == [data]
    with owner_connection(api.engine) as conn:
        sealed = conn.execute(select(destinations.c.secret)).scalar_one()
    assert HEC_TOKEN not in sealed
    assert sealed.startswith(f"v2.{KEYS.primary}.")


@pytest.mark.parametrize(
    ("changes", "loc", "rule"),
    [
        ({"color": "blue"}, ["body", "color"], "Extra inputs"),
        ({"name": ""}, ["body", "name"], "at least 1"),
        ({"delivery_type": "carrier_pigeon"}, ["body", "delivery_type"], "Input should be"),
        ({"endpoint": "http://127.0.0.1:8088"}, ["body", "endpoint"], "https://"),
        ({"endpoint": "https://user:pw@127.0.0.1"}, ["body", "endpoint"], "credentials"),
        ({"options": {"tls_verify": False}}, ["body", "options", "tls_verify"], "development"),
        ({"options": {"framing": "lf"}}, ["body", "options", "framing"], "unknown option"),
        ({"options": {"batch_max_events": 0}}, ["body", "options", "batch_max_events"], "1 to"),
        ({"secret": None}, ["body", "secret"], "needs its token"),
        (
            {"rate_limit": {"events_per_s": 0, "burst": 1}},
            ["body", "rate_limit", "events_per_s"],
            "",
        ),
        ({"filters": {"categories": ["nope"]}}, ["body", "filters", "categories", 0], ""),
        ({"format": "csv"}, ["body", "format"], "file destinations"),
    ],
)
async def test_invalid_destinations_are_422_naming_the_field_and_store_nothing(
    api: Api, changes: dict[str, Any], loc: list[Any], rule: str
) -> None:
    """Each broken rule is a 422 with the field's location and the rule; nothing is stored."""
    response = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json=hec_body("https://127.0.0.1:8088", **changes),
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == loc
    assert rule in problem["msg"]
    assert HEC_TOKEN not in response.text
    listed = await api.client.get(api.path("/destinations"), headers=api.as_("admin"))
    assert listed.json() == []


async def test_a_malformed_webhook_secret_is_refused_without_being_quoted(api: Api) -> None:
    """A webhook secret of the wrong form is a 422 on `secret` that never repeats the secret."""
    bad = WEBHOOK_SECRET.replace("whsec_", "wh_")
    response = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json={
            "name": "hook",
            "delivery_type": "webhook",
            "format": "json",
            "endpoint": "https://127.0.0.1/hook",
            "secret": bad,
        },
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "secret"]
    assert bad not in response.text


async def test_a_duplicate_name_is_refused(api: Api) -> None:
    """Names are unique within a tenant; the same name in another tenant is fine."""
    body = hec_body("https://127.0.0.1:8088")
    assert (
        await api.client.post(api.path("/destinations"), headers=api.as_("admin"), json=body)
    ).status_code == 201
    again = await api.client.post(api.path("/destinations"), headers=api.as_("admin"), json=body)
    assert again.status_code == 422
    assert again.json()["detail"][0]["loc"] == ["body", "name"]
    elsewhere = await api.client.post(
        api.path("/destinations", api.other), headers=api.as_("other_admin"), json=body
    )
    assert elsewhere.status_code == 201


async def test_update_merges_options_replaces_the_secret_and_validates_first(api: Api) -> None:
    """PATCH merges options (null removes one), drops the rate limit, and a bad change writes
    nothing."""
    created = (
        await api.client.post(
            api.path("/destinations"),
            headers=api.as_("admin"),
            json=hec_body("https://127.0.0.1:8088"),
        )
    ).json()
    where = api.path(f"/destinations/{created['id']}")
    with owner_connection(api.engine) as conn:
        sealed_before = conn.execute(select(destinations.c.secret)).scalar_one()
    updated = await api.client.patch(
        where,
        headers=api.as_("admin"),
        json={
            "options": {"index": None, "gzip": True},
            "rate_limit": None,
            "name": "splunk-2",
            "secret": "5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c02",  # a new token
        },
    )
    assert updated.status_code == 200, updated.text
    data = updated.json()
    assert data["options"] == {"batch_max_events": 50, "gzip": True}
    assert data["rate_limit"] is None
    assert data["name"] == "splunk-2"
    with owner_connection(api.engine) as conn:
        assert conn.execute(select(destinations.c.secret)).scalar_one() != sealed_before
    refused = await api.client.patch(
        where, headers=api.as_("admin"), json={"name": "x", "endpoint": "https://10.1.2.3:8088"}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "endpoint"]
    assert (await api.client.get(where, headers=api.as_("admin"))).json() == data


async def test_delete_enable_and_disable(api: Api) -> None:
    """Disable and enable flip `enabled`; delete answers 204, then the destination is gone."""
    created = (
        await api.client.post(
            api.path("/destinations"),
            headers=api.as_("admin"),
            json=hec_body("https://127.0.0.1:8088"),
        )
    ).json()
    where = api.path(f"/destinations/{created['id']}")
    off = await api.client.post(f"{where}/disable", headers=api.as_("admin"))
    assert off.json()["enabled"] is False
    on = await api.client.post(f"{where}/enable", headers=api.as_("admin"))
    assert on.json()["enabled"] is True
    gone = await api.client.delete(where, headers=api.as_("admin"))
    assert gone.status_code == 204
    assert gone.content == b""
    assert (await api.client.get(where, headers=api.as_("admin"))).status_code == 404
    assert (await api.client.delete(where, headers=api.as_("admin"))).status_code == 404


async def test_tenant_tokens_may_not_name_files_on_the_service_host(api: Api) -> None:
    """File destinations and ca/cert/key file paths are for platform tokens only."""
    file_body = {
        "name": "f",
        "delivery_type": "file",
        "format": "json",
        "endpoint": "file:///tmp/xavyo-api-test.jsonl",
    }
    refused = await api.client.post(
        api.path("/destinations"), headers=api.as_("admin"), json=file_body
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "delivery_type"]
    ca = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json=hec_body("https://127.0.0.1:8088", options={"ca_file": "/etc/ssl/certs/ca.pem"}),
    )
    assert ca.json()["detail"][0]["loc"] == ["body", "options", "ca_file"]
    allowed = await api.client.post(
        api.path("/destinations"), headers=api.as_("platform"), json=file_body
    )
    assert allowed.status_code == 201
    patched = await api.client.patch(
        api.path(f"/destinations/{allowed.json()['id']}"),
        headers=api.as_("admin"),
        json={"endpoint": "file:///etc/cron.d/evil"},
    )
    assert patched.status_code == 422


async def test_the_test_route_reports_every_step_against_a_real_hec(dev_api: Api) -> None:
    """Against a live HEC every step passes; with a wrong token the authenticate step fails."""
    async with HecServer(token=HEC_TOKEN) as hec:
        body = hec_body(hec.url, filters={}, rate_limit=None, options={})
        created = await dev_api.client.post(
            dev_api.path("/destinations"), headers=dev_api.as_("admin"), json=body
        )
        where = dev_api.path(f"/destinations/{created.json()['id']}/test")
        report = (await dev_api.client.post(where, headers=dev_api.as_("admin"))).json()
        assert report["ok"] is True, report
        assert [s["step"] for s in report["steps"]] == [
            "configuration", "resolve", "connect", "authenticate", "deliver"
        ]  # fmt: skip
        assert report["steps"][1]["detail"] == "127.0.0.1: 127.0.0.1"
        assert [e["event"]["event_type"] for e in hec.received] == ["XAVYO_SIEM_TEST"]
        await dev_api.client.patch(
            dev_api.path(f"/destinations/{created.json()['id']}"),
            headers=dev_api.as_("admin"),
            json={"secret": "00000000-0000-4000-8000-00000000dead"},
        )
        failed = (await dev_api.client.post(where, headers=dev_api.as_("admin"))).json()
    assert failed["ok"] is False
    assert failed["steps"][-1]["step"] == "authenticate"
    assert not failed["steps"][-1]["ok"]
    assert [s["ok"] for s in failed["steps"]].count(False) == 1


async def test_the_test_route_reports_a_closed_port_as_a_connect_failure(dev_api: Api) -> None:
    """Nobody listening: configuration and resolve pass, connect fails with the reason."""
    server = HecServer(token=HEC_TOKEN)
    await server.start()
    url = server.url
    await server.stop()
    created = await dev_api.client.post(
        dev_api.path("/destinations"),
        headers=dev_api.as_("admin"),
        json=hec_body(url, name=f"down-{uuid4().hex[:6]}", options={"timeout_s": 2}),
    )
    report = (
        await dev_api.client.post(
            dev_api.path(f"/destinations/{created.json()['id']}/test"), headers=dev_api.as_("admin")
        )
    ).json()
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [
        ("configuration", True), ("resolve", True), ("connect", False)
    ]  # fmt: skip
    assert "cannot connect" in report["steps"][-1]["detail"]


async def test_a_new_destination_gets_the_default_rate_limit_unless_it_asks_for_none(
    api: Api,
) -> None:
    """Without `rate_limit` a destination is limited to 1000 events/s (burst 2000); an explicit
    `null` asks for no limit; health shows which limit applies."""
    default = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json={k: v for k, v in hec_body("https://127.0.0.1:8088").items() if k != "rate_limit"},
    )
    assert default.status_code == 201, default.text
    assert default.json()["rate_limit"] == {"events_per_s": 1000.0, "burst": 2000}
    unlimited = await api.client.post(
        api.path("/destinations"),
        headers=api.as_("admin"),
        json=hec_body("https://127.0.0.1:8088", name="unlimited", rate_limit=None),
    )
    assert unlimited.status_code == 201, unlimited.text
    assert unlimited.json()["rate_limit"] is None
    health = await api.client.get(api.path("/health"), headers=api.as_("viewer"))
    assert health.status_code == 200, health.text
    limits = {entry["name"]: entry["rate_limit"] for entry in health.json()["destinations"]}
    assert limits == {"splunk": {"events_per_s": 1000.0, "burst": 2000}, "unlimited": None}


@pytest.mark.peer
async def test_the_test_route_checks_relp_over_tls_step_by_step(
    dev_api: Api, tmp_path: Path
) -> None:
    """A RELP destination over TLS against rsyslog imrelp (files on the host: a platform
    token): configuration, resolve, connect, tls (chain and host name verified) and deliver
    all pass, and the event arrives."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    client = ca.issue_cert("client.example").private_key_and_cert_chain_pem
    client.write_to_path(str(tmp_path / "client.pem"))
    files = RelpTlsFiles(tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    with start_rsyslog(tmp_path / "rsyslog", relp_tls=files) as peer:
        body = {
            "name": "relp",
            "delivery_type": "syslog_relp",
            "format": "cef",
            "endpoint": f"relp://localhost:{peer.relp_tls_port}",
            "options": {
                "tls": True,
                "ca_file": str(tmp_path / "ca.pem"),
                "cert_file": str(tmp_path / "client.pem"),
            },
        }
        created = await dev_api.client.post(
            dev_api.path("/destinations"), headers=dev_api.as_("platform"), json=body
        )
        assert created.status_code == 201, created.json()
        where = dev_api.path(f"/destinations/{created.json()['id']}/test")
        report = (await dev_api.client.post(where, headers=dev_api.as_("platform"))).json()
        assert report["ok"] is True, report
        assert [s["step"] for s in report["steps"]] == [
            "configuration", "resolve", "connect", "tls", "deliver"
        ]  # fmt: skip
        assert "XAVYO_SIEM_TEST" in peer.wait_for(1)[0]
