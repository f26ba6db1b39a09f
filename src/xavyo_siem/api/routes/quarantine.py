"""A tenant's quarantine: the input lines ingest could not take as events, and the events
that came again with different content (conflicts), with the reason; read-only here.

Retrying and purging stay with the command line (`xavyo-siem quarantine retry|purge`), which
an operator runs with the platform's view.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from xavyo_siem.api.deps import ContextDep, TenantDep
from xavyo_siem.api.errors import ApiError, error_responses
from xavyo_siem.api.schemas import QuarantinedPublic, QuarantinePage
from xavyo_siem.store.quarantine import get_quarantined, list_quarantined

__all__ = ["router"]

router = APIRouter(prefix="/v1/tenants/{tenant_id}/quarantine", tags=["quarantine"])
_READ = error_responses(401, 404, 422)


@router.get("", response_model=QuarantinePage, responses=_READ)
def list_quarantine(
    tenant_id: TenantDep,
    context: ContextDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=0, lt=1 << 62)] = 0,
) -> dict[str, Any]:
    """What ingest kept aside for this tenant, oldest first, without the raw lines."""
    with context.engine.connect() as conn:
        entries = list_quarantined(conn, tenant_id=tenant_id, after=after_id, limit=limit)
    return {
        "items": [entry.to_dict(raw=False) for entry in entries],
        "next_after_id": entries[-1].id if len(entries) == limit else None,
    }


@router.get("/{entry_id}", response_model=QuarantinedPublic, responses=_READ)
def show_quarantined(
    tenant_id: TenantDep,
    context: ContextDep,
    entry_id: Annotated[int, Path(ge=1, lt=1 << 62)],
) -> dict[str, Any]:
    """One quarantined entry of this tenant, with its raw line (as kept, capped)."""
    with context.engine.connect() as conn:
        entry = get_quarantined(conn, tenant_id=tenant_id, entry_id=entry_id)
    if entry is None:
        raise ApiError(404, ["path", "entry_id"], "not found")
    return entry.to_dict(raw=True)
