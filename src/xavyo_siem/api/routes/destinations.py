"""Destinations of a tenant: create, list, get, update, delete, enable, disable, test.

Each route calls one function of `xavyo_siem.destinations`, which validates everything
(settings, SSRF guard, TLS rules) before it writes anything. What the API adds is who may
ask: admins change, viewers read, and only a platform token may set what names a file on
the service's own host (`file` destinations, `ca_file`, `cert_file`, `key_file`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import APIRouter, Response

from xavyo_siem import destinations as manage
from xavyo_siem.api.deps import (
    ActorDep,
    AdminDep,
    AdminDestinationDep,
    ContextDep,
    DestinationDep,
    PrincipalDep,
    TenantDep,
)
from xavyo_siem.api.errors import error_responses
from xavyo_siem.api.schemas import (
    DestinationCreate,
    DestinationPublic,
    DestinationUpdate,
    RateLimitSchema,
    TestReport,
)
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.errors import InvalidDestination, InvalidFilter
from xavyo_siem.model import DEFAULT_RATE_LIMIT, DeliveryType, EventFilter, RateLimit
from xavyo_siem.runtime import test_destination
from xavyo_siem.store.destinations import list_destinations
from xavyo_siem.store.tokens import ApiToken

__all__ = ["router"]

router = APIRouter(prefix="/v1/tenants/{tenant_id}/destinations", tags=["destinations"])

_READ = error_responses(401, 404, 422)
_WRITE = error_responses(401, 403, 404, 413, 422)
_HOST_FILE_OPTIONS: Final = ("ca_file", "cert_file", "key_file")


def _check_may_configure(
    principal: ApiToken, delivery_type: DeliveryType, options: Mapping[str, Any]
) -> None:
    """Tenants may not make the service read or write files on its own host."""
    if principal.platform:
        return
    if delivery_type is DeliveryType.FILE:
        raise InvalidDestination(
            "delivery_type", "file destinations write on the service's host: platform tokens only"
        )
    for name in _HOST_FILE_OPTIONS:
        if options.get(name) is not None:
            raise InvalidDestination(
                f"options.{name}",
                "names a file on the service's host: platform tokens only"
                " (pin the peer's certificate with options.fingerprint instead)",
            )


def _rate_limit(schema: RateLimitSchema | None) -> RateLimit | None:
    return None if schema is None else RateLimit(schema.events_per_s, schema.burst)


def _filters(data: Mapping[str, Any]) -> EventFilter:
    try:
        return EventFilter.from_dict(data)
    except InvalidFilter as exc:
        raise InvalidDestination(exc.field, exc.reason) from None


@router.post("", status_code=201, response_model=DestinationPublic, responses=_WRITE)
def create_destination(
    tenant_id: AdminDep,
    body: DestinationCreate,
    context: ContextDep,
    principal: PrincipalDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Create a destination; its endpoint must resolve to addresses the service may reach."""
    _check_may_configure(principal, body.delivery_type, body.options)
    spec = DestinationSpec(
        name=body.name,
        delivery_type=body.delivery_type,
        format=body.format,
        endpoint=body.endpoint,
        options=body.options,
        filters=_filters(body.filters.model_dump(mode="json")),
        rate_limit=(
            _rate_limit(body.rate_limit)
            if "rate_limit" in body.model_fields_set
            else DEFAULT_RATE_LIMIT
        ),
        enabled=body.enabled,
    )
    created = manage.add_destination(
        context.engine,
        tenant_id=tenant_id,
        spec=spec,
        secret=None if body.secret is None else body.secret.get_secret_value(),
        keyring=context.keyring,
        development=context.settings.development,
        egress=context.egress,
        actor=actor,
    )
    return created.to_dict()


@router.get("", response_model=list[DestinationPublic], responses=_READ)
def list_tenant_destinations(tenant_id: TenantDep, context: ContextDep) -> list[dict[str, Any]]:
    """The tenant's destinations, by name."""
    with context.engine.connect() as conn:
        return [d.to_dict() for d in list_destinations(conn, tenant_id=tenant_id)]


@router.get("/{destination_id}", response_model=DestinationPublic, responses=_READ)
def get_destination(destination: DestinationDep) -> dict[str, Any]:
    """One destination's settings (never its credential, only whether it has one)."""
    return destination.to_dict()


@router.patch("/{destination_id}", response_model=DestinationPublic, responses=_WRITE)
def update_destination(
    destination: AdminDestinationDep,
    body: DestinationUpdate,
    context: ContextDep,
    principal: PrincipalDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Change some settings; options are merged (null removes one), a secret replaces the old.
    Moving a stored secret to another endpoint origin needs the secret again (422)."""
    given = body.model_dump(mode="json", exclude_unset=True, exclude={"secret"})
    changes = {key: value for key, value in given.items() if value is not None}
    if "rate_limit" in given:
        changes["rate_limit"] = _rate_limit(body.rate_limit)
    _check_may_configure(principal, destination.delivery_type, changes.get("options") or {})
    updated = manage.update_destination(
        context.engine,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        changes=changes,
        secret=None if body.secret is None else body.secret.get_secret_value(),
        keyring=context.keyring,
        development=context.settings.development,
        egress=context.egress,
        actor=actor,
    )
    return updated.to_dict()


@router.delete("/{destination_id}", status_code=204, responses=_WRITE)
def delete_destination(
    destination: AdminDestinationDep, context: ContextDep, actor: ActorDep
) -> Response:
    """Delete a destination with its cursor, health and dead letters."""
    manage.remove_destination(
        context.engine, tenant_id=destination.tenant_id, destination_id=destination.id, actor=actor
    )
    return Response(status_code=204)


@router.post("/{destination_id}/enable", response_model=DestinationPublic, responses=_WRITE)
def enable_destination(
    destination: AdminDestinationDep, context: ContextDep, actor: ActorDep
) -> dict[str, Any]:
    """Resume delivery from where it stopped."""
    return manage.set_enabled(
        context.engine,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        enabled=True,
        actor=actor,
    ).to_dict()


@router.post("/{destination_id}/disable", response_model=DestinationPublic, responses=_WRITE)
def disable_destination(
    destination: AdminDestinationDep, context: ContextDep, actor: ActorDep
) -> dict[str, Any]:
    """Pause delivery; the cursor is kept, so nothing is skipped."""
    return manage.set_enabled(
        context.engine,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        enabled=False,
        actor=actor,
    ).to_dict()


@router.post("/{destination_id}/test", response_model=TestReport, responses=_WRITE)
async def run_destination_test(
    destination: AdminDestinationDep, context: ContextDep, actor: ActorDep
) -> TestReport:
    """Resolve, connect, verify TLS, authenticate and send one test event (XAVYO_SIEM_TEST),
    reporting each step; stops at the first step that fails."""
    steps = await test_destination(
        context.engine,
        destination,
        settings=context.settings,
        keyring=context.keyring,
        egress=context.egress,
        actor=actor,
    )
    return TestReport.model_validate(
        {
            "ok": all(step.ok for step in steps),
            "steps": [{"step": s.step, "ok": s.ok, "detail": s.detail} for s in steps],
        }
    )
