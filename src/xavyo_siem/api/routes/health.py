"""Health: of one destination, of a tenant's delivery, and of the service (`/healthz`);
Prometheus metrics (`/metrics`, platform tokens only: they name every tenant): the
process's own, and the fleet's delivery health read from the store (`fleet_metrics.py`)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from xavyo_siem import delivery_health
from xavyo_siem.api.deps import ContextDep, DestinationDep, PlatformDep, TenantDep
from xavyo_siem.api.errors import ApiError, error_responses
from xavyo_siem.api.schemas import DestinationHealth, ServiceHealth, TenantHealth
from xavyo_siem.fleet_metrics import FleetCollector

__all__ = ["router", "service_router"]

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["health"])
service_router = APIRouter(tags=["service"])

_READ = error_responses(401, 404, 422)


@router.get("/health", response_model=TenantHealth, responses=_READ)
def tenant_health(tenant_id: TenantDep, context: ContextDep) -> dict[str, Any]:
    """Every destination's health; `failing` when an enabled destination is failing."""
    with context.engine.connect() as conn:
        reports = delivery_health.list_health(conn, tenant_id=tenant_id)
    return {
        "tenant_id": str(tenant_id),
        "status": "failing" if delivery_health.any_failing(reports) else "ok",
        "destinations": [r.to_dict() for r in reports],
    }


@router.get(
    "/destinations/{destination_id}/health", response_model=DestinationHealth, responses=_READ
)
def destination_health(destination: DestinationDep, context: ContextDep) -> dict[str, Any]:
    """Successes, failures, circuit state and reason, lag (measured now), dead letters."""
    with context.engine.connect() as conn:
        return delivery_health.destination_health(conn, destination).to_dict()


@service_router.get("/healthz", response_model=ServiceHealth, responses=error_responses(503))
def healthz(context: ContextDep) -> dict[str, str]:
    """Liveness: the service answers and its store is reachable (no token needed)."""
    try:
        with context.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        raise ApiError(503, [], "the store is unreachable") from None
    return {"status": "ok"}


@service_router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        **error_responses(401, 403, 422),
    },
)
def metrics(
    principal: PlatformDep,
    context: ContextDep,
    tenant: Annotated[
        UUID | None,
        Query(description="Only this tenant's fleet families (and not the process's own)."),
    ] = None,
) -> Response:
    """Prometheus metrics (platform tokens): the process's own, and the delivery health of
    every destination in the store (`xavyo_siem_fleet_*`, labelled by tenant and
    destination id), read at most a few seconds ago. `?tenant=` narrows it to the fleet
    families of one tenant."""
    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(FleetCollector(context.fleet.snapshot(tenant_id=tenant)))
    own = b"" if tenant is not None else generate_latest(REGISTRY)
    return Response(own + generate_latest(fleet), media_type=CONTENT_TYPE_LATEST)
