"""A destination's dead letters: list them, queue them for replay, purge them.

Replay only marks them: the destination's delivery loop sends them before new events,
through the same rate limit, and removes each one the destination accepts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from xavyo_siem import destinations as manage
from xavyo_siem.api.deps import ActorDep, AdminDestinationDep, ContextDep, DestinationDep
from xavyo_siem.api.errors import error_responses
from xavyo_siem.api.schemas import DeadLetterPage, DeadLetterSelection, PurgeResult, ReplayResult
from xavyo_siem.store import dead_letters as rows

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/destinations/{destination_id}/dead-letters",
    tags=["dead letters"],
)
_WRITE = error_responses(401, 403, 404, 413, 422)


@router.get("", response_model=DeadLetterPage, responses=error_responses(401, 404, 422))
def list_dead_letters(
    destination: DestinationDep,
    context: ContextDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=0, lt=1 << 62)] = 0,
) -> dict[str, Any]:
    """The events the destination refused for good, with the reason, oldest first."""
    with context.engine.connect() as conn:
        letters = rows.list_dead_letters(
            conn,
            tenant_id=destination.tenant_id,
            destination_id=destination.id,
            limit=limit,
            after_id=after_id,
        )
    return {
        "items": [letter.to_dict() for letter in letters],
        "next_after_id": letters[-1].id if len(letters) == limit else None,
    }


@router.post("/replay", response_model=ReplayResult, responses=_WRITE)
def replay_dead_letters(
    destination: AdminDestinationDep,
    context: ContextDep,
    actor: ActorDep,
    body: DeadLetterSelection | None = None,
) -> dict[str, int]:
    """Queue dead letters (the listed `ids`, or all) to be sent again by the worker."""
    queued = manage.replay_dead_letters(
        context.engine,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        ids=None if body is None else body.ids,
        actor=actor,
    )
    return {"queued": queued}


@router.post("/purge", response_model=PurgeResult, responses=_WRITE)
def purge_dead_letters(
    destination: AdminDestinationDep,
    context: ContextDep,
    actor: ActorDep,
    body: DeadLetterSelection | None = None,
) -> dict[str, int]:
    """Delete dead letters (the listed `ids`, or all) for good; the events stay stored."""
    purged = manage.purge_dead_letters(
        context.engine,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        ids=None if body is None else body.ids,
        actor=actor,
    )
    return {"purged": purged}
