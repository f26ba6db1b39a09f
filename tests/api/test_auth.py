"""Who may do what: every route against every kind of token, and the tokens themselves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, select

from xavyo_siem import destinations as manage
from xavyo_siem.batch import ExportRequest, create_export_job
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.store import append_events
from xavyo_siem.store.tables import api_tokens
from xavyo_siem.store.tokens import (
    TOKEN_PREFIX,
    Role,
    authenticate_token,
    hash_token,
    issue_token,
    list_tokens,
    revoke_token,
)

from conftest import KEYS, LOOPBACK, Api

READ, WRITE = "read", "write"


def new_destination_body() -> dict[str, Any]:
    return {
        "name": f"udp-{uuid4().hex[:8]}",
        "delivery_type": "syslog_udp",
        "format": "cef",
        "endpoint": "udp://127.0.0.1:9",
    }


def one_event() -> dict[str, Any]:
    return {
        "events": [
            {
                "event_id": str(uuid4()),
                "timestamp": "2026-03-01T12:00:00Z",
                "event_type": "USER_LOGIN",
                "category": "authentication",
            }
        ]
    }


# (method, path under the tenant, body factory, read or write, success status)
ROUTES: list[tuple[str, str, Callable[[], Any] | None, str, int]] = [
    ("GET", "/destinations", None, READ, 200),
    ("POST", "/destinations", new_destination_body, WRITE, 201),
    ("GET", "/destinations/{d}", None, READ, 200),
    (
        "PATCH",
        "/destinations/{d}",
        lambda: {"rate_limit": {"events_per_s": 5, "burst": 5}},
        WRITE,
        200,
    ),
    ("DELETE", "/destinations/{d}", None, WRITE, 204),
    ("POST", "/destinations/{d}/enable", None, WRITE, 200),
    ("POST", "/destinations/{d}/disable", None, WRITE, 200),
    ("POST", "/destinations/{d}/test", None, WRITE, 200),
    ("GET", "/destinations/{d}/health", None, READ, 200),
    ("GET", "/health", None, READ, 200),
    ("GET", "/destinations/{d}/dead-letters", None, READ, 200),
    ("POST", "/destinations/{d}/dead-letters/replay", dict, WRITE, 200),
    ("POST", "/destinations/{d}/dead-letters/purge", lambda: {"ids": [1, 2]}, WRITE, 200),
    ("POST", "/events", one_event, WRITE, 200),
    ("GET", "/events", None, READ, 200),
    ("GET", "/exports", None, READ, 200),
    (
        "POST",
        "/exports",
        lambda: {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
        WRITE,
        201,
    ),
    ("GET", "/exports/{j}", None, READ, 200),
    ("POST", "/exports/{j}/cancel", None, WRITE, 200),
]


def expected_status(who: str | None, kind: str, success: int) -> int:
    """No token 401; another tenant's token 404; read-only tokens 403 on writes."""
    if who in (None, "bogus", "revoked"):
        return 401
    if who == "other_admin":
        return 404
    if kind == WRITE and who in ("viewer", "platform_viewer"):
        return 403
    return success


def add_udp(engine: Engine, tenant: UUID) -> SiemDestination:
    return manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=DestinationSpec(
            name=f"udp-{uuid4().hex[:8]}",
            delivery_type=DeliveryType.SYSLOG_UDP,
            format=ExportFormat.CEF,
            endpoint="udp://127.0.0.1:9",
            options={},
        ),
        secret=None,
        keyring=KEYS,
        development=False,
        egress=EgressGuard(allow=LOOPBACK),
    )


@pytest.mark.parametrize(
    ("method", "rest", "body", "kind", "success"),
    ROUTES,
    ids=[f"{m} {r}" for m, r, *_ in ROUTES],
)
async def test_every_route_answers_every_kind_of_token_as_its_role_and_tenant_allow(
    api: Api,
    tmp_path: Path,
    method: str,
    rest: str,
    body: Callable[[], Any] | None,
    kind: str,
    success: int,
) -> None:
    """Admins and platform tokens may do it, viewers only read, another tenant sees 404,
    and a missing, unknown or revoked token gets 401 with a Bearer challenge."""
    with api.engine.begin() as conn:
        record, revoked = issue_token(
            conn, tenant_id=api.tenant, role=Role.ADMIN, name="gone", now=datetime.now(UTC)
        )
        revoke_token(conn, token_id=record.id, now=datetime.now(UTC))
    api.tokens["revoked"] = revoked
    api.tokens["bogus"] = TOKEN_PREFIX + "x" * 43
    with api.engine.begin() as conn:
        append_events(conn, [replace(e, tenant_id=api.tenant) for e in generate_events(5, 1)])
    for who in (
        None,
        "bogus",
        "revoked",
        "other_admin",
        "viewer",
        "platform_viewer",
        "admin",
        "platform",
    ):
        destination = add_udp(api.engine, api.tenant)
        job = create_export_job(
            api.engine,
            ExportRequest(
                tenant_id=api.tenant, start=DEFAULT_START, end=DEFAULT_START + timedelta(days=9),
                output=tmp_path / f"{uuid4().hex}.csv",
            ),
        )  # fmt: skip
        headers = {} if who is None else api.as_(who)
        response = await api.client.request(
            method,
            api.path(rest.format(d=destination.id, j=job.id)),
            headers=headers,
            json=None if body is None else body(),
        )
        want = expected_status(who, kind, success)
        assert response.status_code == want, (who, response.text)
        if want == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
        if want >= 400:
            (problem,) = response.json()["detail"]
            assert problem["loc"]
            assert problem["msg"]


async def test_a_tenant_token_cannot_reach_another_tenants_destination_through_its_own_tenant(
    api: Api,
) -> None:
    """Under one's own tenant path, another tenant's destination id is simply not found."""
    theirs = add_udp(api.engine, api.other)
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test")):
        response = await api.client.request(
            method,
            api.path(f"/destinations/{theirs.id}{suffix}"),
            headers=api.as_("admin"),
            json={"enabled": False} if method == "PATCH" else None,
        )
        assert response.status_code == 404, response.text
        assert response.json()["detail"][0]["loc"] == ["path", "destination_id"]
    other_view = await api.client.get(
        api.path(f"/destinations/{theirs.id}", tenant=api.other), headers=api.as_("other_admin")
    )
    assert other_view.status_code == 200
    assert other_view.json()["enabled"] is True


async def test_platform_tokens_act_on_any_tenant_and_read_metrics(api: Api) -> None:
    """A platform token works under every tenant; only platform tokens read /metrics."""
    for tenant in (api.tenant, api.other, uuid4()):
        listed = await api.client.get(
            api.path("/destinations", tenant), headers=api.as_("platform")
        )
        assert listed.status_code == 200
    assert (await api.client.get("/metrics")).status_code == 401
    assert (await api.client.get("/metrics", headers=api.as_("admin"))).status_code == 403
    scraped = await api.client.get("/metrics", headers=api.as_("platform_viewer"))
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")


async def test_malformed_authorization_headers_are_401(api: Api) -> None:
    """Basic auth, an empty bearer, a token without the prefix and an overlong one are refused."""
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer abc", "Bearer " + "xsk_" + "a" * 5000):
        response = await api.client.get(api.path("/destinations"), headers={"Authorization": value})
        assert response.status_code == 401, value


def test_tokens_are_stored_only_as_hashes_and_revocation_is_final(engine: Engine) -> None:
    """The store keeps a SHA-256 of each token; a revoked token never authenticates again."""
    tenant = uuid4()
    with engine.begin() as conn:
        record, token = issue_token(
            conn, tenant_id=tenant, role=Role.VIEWER, name="siem-team", now=datetime.now(UTC)
        )
    assert token.startswith(TOKEN_PREFIX)
    assert len(token) > 40
    with engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash, api_tokens.c.name)).all()
        assert stored == [(hash_token(token), "siem-team")]
        assert authenticate_token(conn, token=token) == record
        assert authenticate_token(conn, token=token[:-1]) is None
        assert [t.id for t in list_tokens(conn, tenant_id=tenant)] == [record.id]
    with engine.begin() as conn:
        assert revoke_token(conn, token_id=record.id, now=datetime.now(UTC))
        assert not revoke_token(conn, token_id=record.id, now=datetime.now(UTC))
    with engine.connect() as conn:
        assert authenticate_token(conn, token=token) is None
        assert list_tokens(conn)[0].revoked_at is not None
