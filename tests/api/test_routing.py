"""Answers the router gives for every route of the app: 405 with a complete `Allow`, and 413
for a body over the limit, declared or chunked, on every operation that takes a body."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final
from uuid import uuid4

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.routing import Mount

from xavyo_siem.api import ApiLimits, create_app
from xavyo_siem.settings import Settings

from conftest import KEYS, LOOPBACK, make_tokens

LIMIT: Final = 64 * 1024
METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.fixture
async def app(engine: Engine, tmp_path: Path) -> FastAPI:
    """The API in development mode (so /docs is routed too), with a 64 KiB body limit."""
    return create_app(
        Settings(env="development", egress_allow=LOOPBACK),
        engine,
        keyring=KEYS,
        limits=ApiLimits(max_body_bytes=LIMIT),
        export_dir=tmp_path / "exports",
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` in the test's own event loop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def every_route(app: FastAPI) -> list[Any]:
    """The app's routes, those of included routers too (recent FastAPI keeps them apart)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)
    return list(flatten(app.routes))


def concrete(path: str) -> str:
    """`path` with each `{parameter}` replaced by a fresh UUID."""
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid4()), path)


async def test_a_wrong_method_gets_405_naming_every_method_of_its_path(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """For every route path of the app, each method it does not serve answers 405 whose
    `Allow` lists exactly the methods of all the routes at that path."""
    served: dict[str, set[str]] = defaultdict(set)
    for route in every_route(app):
        if isinstance(getattr(route, "original_route", route), Mount):
            continue  # the reference page's static files: a file server, not a route
        served[route.path] |= route.methods or set()
    assert set(app.openapi()["paths"]) < set(served)  # /openapi.json and /docs besides
    assert any(len(methods) > 1 for methods in served.values())  # shared paths exist
    checked = 0
    for path, methods in served.items():
        for method in METHODS:
            if method in methods:
                continue
            answer = await client.request(method, concrete(path))
            assert answer.status_code == 405, (method, path, answer.text)
            allow = set(answer.headers["allow"].split(", "))
            assert allow == methods, (method, path)
            checked += 1
    assert checked >= 5 * len(served)


async def test_every_operation_taking_a_body_refuses_one_over_the_limit_with_413(
    app: FastAPI, client: httpx.AsyncClient, engine: Engine
) -> None:
    """Every operation with a request body, ingest included, answers 413 to a body over the
    limit, whether its length is declared or it arrives chunked and is counted as read."""
    tokens = make_tokens(engine, uuid4(), uuid4())
    headers = {
        "Authorization": f"Bearer {tokens['platform']}",
        "Content-Type": "application/json",
    }
    body = b'{"events": [' + b" " * LIMIT + b"]}"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    operations: list[tuple[str, str]] = [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert ("POST", "/v1/tenants/{tenant_id}/events") in operations
    for method, path in operations:
        url = concrete(path)
        declared = await client.request(method, url, headers=headers, content=body)
        chunked = await client.request(method, url, headers=headers, content=chunks())
        for answer in (declared, chunked):
            assert answer.status_code == 413, (method, path, answer.text)
            detail: Any = answer.json()["detail"][0]
            assert (detail["loc"], detail["type"]) == (["body"], "too_large")
