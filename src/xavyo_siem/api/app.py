"""The HTTP API application: `create_app(settings, engine)` builds it; nothing is global.

`xavyo-siem serve` runs it under uvicorn, and `xavyo-siem run --api` beside the delivery
workers. docs/api.md is generated from its OpenAPI document (`scripts/gen_api_docs.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from sqlalchemy import Engine

from xavyo_siem import __version__
from xavyo_siem.api.deps import ApiContext
from xavyo_siem.api.errors import install_error_handlers
from xavyo_siem.api.limits import DEFAULT_LIMITS, ApiLimits, BodyLimit
from xavyo_siem.api.rate_limit import RequestRateLimit
from xavyo_siem.api.routes import (
    dead_letters,
    destinations,
    events,
    exports,
    health,
    health_page,
    quarantine,
)
from xavyo_siem.api.schemas import EventBatch
from xavyo_siem.api.swagger import install_swagger_ui
from xavyo_siem.crypto import KeyRing, load_key_ring
from xavyo_siem.egress import EgressGuard
from xavyo_siem.fleet_metrics import FleetView
from xavyo_siem.settings import Settings

__all__ = ["DEFAULT_EXPORT_DIR", "DESCRIPTION", "create_app"]

DEFAULT_EXPORT_DIR: Final = Path("exports")

DESCRIPTION: Final = """\
Manage a tenant's SIEM destinations, read delivery health, replay dead letters and ingest
audit events. Every route under `/v1/tenants/{tenant_id}/` needs an API token
(`Authorization: Bearer xsk_...`, made with `xavyo-siem tokens create`). A tenant token
sees only its own tenant: any other tenant's resources answer 404. Routes that change
something need the `admin` role. Errors are `{"detail": [{"loc", "msg", "type"}]}`, where
`loc` names the field and `msg` the rule. Credentials are write-only.
"""


def _route_name(route: APIRoute) -> str:
    return route.name


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    keyring: KeyRing | None = None,
    egress: EgressGuard | None = None,
    limits: ApiLimits = DEFAULT_LIMITS,
    export_dir: Path = DEFAULT_EXPORT_DIR,
) -> FastAPI:
    """The API over `engine`.

    `keyring` seals and opens credentials; without one it is loaded from `settings`, which
    in production raises `CryptoError` when no key is configured (the service refuses to
    start rather than run unable to store credentials). `egress` is the SSRF guard
    (default: the allow-list of `settings`). File exports requested over the API are
    written under `export_dir/<tenant>/` (made on first use, mode 0700).
    """
    context = ApiContext(
        settings=settings,
        engine=engine,
        keyring=load_key_ring(settings) if keyring is None else keyring,
        egress=EgressGuard.from_settings(settings) if egress is None else egress,
        limits=limits,
        export_dir=export_dir.resolve(),
        rate_limit=RequestRateLimit(*settings.api_rate_limit),
        fleet=FleetView(engine),
    )
    app = FastAPI(
        title="xavyo-siem",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # served from the installed package below, never from a CDN
        redoc_url=None,
        generate_unique_id_function=_route_name,
    )
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_body_bytes=limits.max_body_bytes)
    app.include_router(health.service_router)
    app.include_router(health_page.router)
    for module in (destinations, health, dead_letters, events, exports, quarantine):
        app.include_router(module.router)
    app.openapi = _openapi(app, limits)  # type: ignore[method-assign]
    if settings.serve_api_docs:
        install_swagger_ui(app)
    return app


def _openapi(app: FastAPI, limits: ApiLimits) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, with the schema of the ingest body that the route reads itself."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        batch = EventBatch.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(batch.pop("$defs", {}))
        batch["properties"]["events"]["maxItems"] = limits.max_batch_events
        schemas["EventBatch"] = batch
        app.openapi_schema = document
        return document

    return build
