"""What routes depend on, as `Annotated` aliases: the store, the caller, the tenant, the role.

* `PrincipalDep`: the caller's API token (`Authorization: Bearer xsk_...`), or 401; 429
  with `Retry-After` once the token spent its request budget (`api/rate_limit.py`).
* `TenantDep`: the `{tenant_id}` of the path, once the token may act on it. A tenant token
  acting on another tenant gets 404, exactly as if the tenant did not exist, so tenants
  cannot even learn which other tenants there are.
* `AdminDep`: the same, and the token has the `admin` role (403 otherwise). Every route
  that changes something (including test and replay) depends on it.
* `DestinationDep` / `AdminDestinationDep`: the tenant's `{destination_id}` of the path
  (404 when the tenant has no such destination), for a viewer / an admin.
* `PlatformDep`: a platform token (for `/metrics`).
* `ActorDep`: who asks, for the audit trail: the token, its role, the client's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from xavyo_siem.api.errors import ApiError
from xavyo_siem.api.limits import ApiLimits
from xavyo_siem.api.rate_limit import RequestRateLimit
from xavyo_siem.crypto import KeyRing
from xavyo_siem.destinations import find_destination
from xavyo_siem.egress import EgressGuard
from xavyo_siem.fleet_metrics import FleetView
from xavyo_siem.model import SiemDestination
from xavyo_siem.settings import Settings
from xavyo_siem.store.tokens import ApiToken, Role, authenticate_token
from xavyo_siem.trail import Actor

__all__ = [
    "ActorDep",
    "AdminDep",
    "AdminDestinationDep",
    "ApiContext",
    "ContextDep",
    "DestinationDep",
    "EngineDep",
    "PlatformDep",
    "PrincipalDep",
    "TenantDep",
    "principal_of",
]


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What `create_app` was given: settings, store, key ring, SSRF guard, limits, the
    directory file exports are written to, each token's request budget, and the fleet's
    health read from the store (shared by `/metrics` and the health page)."""

    settings: Settings
    engine: Engine
    keyring: KeyRing | None
    egress: EgressGuard
    limits: ApiLimits
    export_dir: FilePath
    rate_limit: RequestRateLimit
    fleet: FleetView


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(_context)]


def _engine(context: ContextDep) -> Engine:
    return context.engine


EngineDep = Annotated[Engine, Depends(_engine)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token made with `xavyo-siem tokens create` (`xsk_...`).",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _principal(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    return principal_of(context, None if credentials is None else credentials.credentials)


def principal_of(context: ApiContext, presented: str | None) -> ApiToken:
    """The token `presented` (its text), once known, unrevoked and within its request
    budget; `ApiError` 401 or 429 otherwise."""
    if presented is None:
        raise ApiError(
            401, ["header", "Authorization"], "an API token is required (Bearer)",
            headers=_CHALLENGE,
        )  # fmt: skip
    with context.engine.connect() as conn:
        token = authenticate_token(conn, token=presented)
    if token is None:
        raise ApiError(
            401, ["header", "Authorization"], "the API token is unknown or revoked",
            headers=_CHALLENGE,
        )  # fmt: skip
    wait = context.rate_limit.retry_after(token.id)
    if wait is not None:
        raise ApiError(
            429, ["header", "Authorization"],
            f"this token sent more than {context.rate_limit.burst} requests at once"
            f" ({context.rate_limit.requests_per_s:g}/s); retry after {wait} s",
            headers={"Retry-After": str(wait)},
        )  # fmt: skip
    return token


PrincipalDep = Annotated[ApiToken, Depends(_principal)]


def _actor(principal: PrincipalDep, request: Request) -> Actor:
    return Actor.api_token(
        token_id=principal.id,
        role=principal.role.value,
        platform=principal.platform,
        client=None if request.client is None else request.client.host,
        user_agent=request.headers.get("user-agent"),
    )


ActorDep = Annotated[Actor, Depends(_actor)]

TenantPath = Annotated[UUID, Path(description="The tenant (UUID).")]


def _tenant(tenant_id: TenantPath, principal: PrincipalDep) -> UUID:
    if principal.tenant_id is not None and principal.tenant_id != tenant_id:
        raise ApiError(404, ["path", "tenant_id"], "not found")
    return tenant_id


TenantDep = Annotated[UUID, Depends(_tenant)]


def _admin(tenant_id: TenantDep, principal: PrincipalDep) -> UUID:
    if principal.role is not Role.ADMIN:
        raise ApiError(403, ["header", "Authorization"], "this needs a token with the admin role")
    return tenant_id


AdminDep = Annotated[UUID, Depends(_admin)]


def _platform(principal: PrincipalDep) -> ApiToken:
    if not principal.platform:
        raise ApiError(403, ["header", "Authorization"], "this needs a platform token")
    return principal


PlatformDep = Annotated[ApiToken, Depends(_platform)]


DestinationPath = Annotated[UUID, Path(description="The destination (UUID).")]


def _find_destination(engine: Engine, tenant_id: UUID, destination_id: UUID) -> SiemDestination:
    # None of the tenant: InvalidDestination on `destination`, answered 404 on `destination_id`.
    return find_destination(engine, tenant_id=tenant_id, name_or_id=destination_id)


def _destination(
    tenant_id: TenantDep, destination_id: DestinationPath, engine: EngineDep
) -> SiemDestination:
    return _find_destination(engine, tenant_id, destination_id)


def _admin_destination(
    tenant_id: AdminDep, destination_id: DestinationPath, engine: EngineDep
) -> SiemDestination:
    return _find_destination(engine, tenant_id, destination_id)


DestinationDep = Annotated[SiemDestination, Depends(_destination)]
AdminDestinationDep = Annotated[SiemDestination, Depends(_admin_destination)]
