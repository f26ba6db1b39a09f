"""A tenant's audit events: ingest a batch (idempotent, never refused for content); list a
time range.

Ingest reads the body itself with the parser of `xavyo-siem ingest` (`xavyo_siem.ingest`:
orjson and `AuditEvent.from_dict`, several times the speed of a Pydantic model per event); the
OpenAPI document still describes the body (`EventBatch`). Every event is normalised (what it
cannot carry is repaired and named in its `normalized`); an item that is no event at all
(no usable id or time, not an object, another tenant's) is kept in the tenant's quarantine,
and the batch is appended in one transaction. The answer is 200 with the counts and the
first reasons, also when items were quarantined. With `?strict=true` the batch is all or
nothing: one item that is no event stores nothing and the 422 names it,
`loc: ["body", "events", 17, "timestamp"]`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from xavyo_siem.api.deps import AdminDep, ApiContext, ContextDep, TenantDep
from xavyo_siem.api.errors import ApiError, error_responses
from xavyo_siem.api.schemas import EventPage, IngestResult
from xavyo_siem.errors import InvalidEvent
from xavyo_siem.ingest import decode_json, events_of_batch, store_events
from xavyo_siem.model import AuditEvent, EventCategory, EventFilter
from xavyo_siem.store import TimeKey, read_events_in_range
from xavyo_siem.store.quarantine import QuarantineEntry

__all__ = ["parse_batch", "router"]

router = APIRouter(prefix="/v1/tenants/{tenant_id}/events", tags=["events"])

_KEY_LIMIT: Final = 1 << 62
_BATCH_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}},
    }
}


def parse_batch(
    raw: bytes,
    *,
    tenant_id: UUID,
    max_events: int,
    set_aside: list[QuarantineEntry] | None = None,
) -> list[AuditEvent]:
    """The events of a request body `{"events": [...]}`, every one normalised.

    An event without `tenant_id` belongs to `tenant_id`. An item that is no event (or names
    another tenant) raises `InvalidEvent` naming `events.<index>.<field>`, or given
    `set_aside` is added to it. Raises `ApiError` for a body that is not a batch at all
    (422) or holds more than `max_events` events (413).
    """
    try:
        data = decode_json(raw)
    except InvalidEvent:
        raise ApiError(422, ["body"], "is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, ["body"], 'must be an object {"events": [...]}')
    for key in data:
        if key != "events":
            raise ApiError(422, ["body", str(key)[:60]], "is not a field of an event batch")
    items = data.get("events")
    if not isinstance(items, list):
        raise ApiError(422, ["body", "events"], "is required: a list of audit events")
    if len(items) > max_events:
        raise ApiError(
            413, ["body", "events"], f"a batch holds at most {max_events} events, got {len(items)}"
        )
    return events_of_batch(items, tenant_id=tenant_id, set_aside=set_aside)


def _ingest(context: ApiContext, tenant_id: UUID, raw: bytes, strict: bool) -> dict[str, Any]:
    set_aside: list[QuarantineEntry] | None = None if strict else []
    events = parse_batch(
        raw, tenant_id=tenant_id, max_events=context.limits.max_batch_events, set_aside=set_aside
    )
    result = store_events(context.engine, events, tenant_id=tenant_id, set_aside=set_aside)
    return result.to_dict()


@router.post(
    "",
    response_model=IngestResult,
    responses=error_responses(401, 403, 404, 413, 422),
    openapi_extra=_BATCH_BODY,
)
async def ingest_events(
    tenant_id: AdminDep,
    request: Request,
    context: ContextDep,
    strict: Annotated[
        bool, Query(description="All or nothing: refuse the batch if an item is no event.")
    ] = False,
) -> Any:
    """Store a batch of audit events, each normalised, never refused for its content.

    An item that is no event at all (no usable id or time) is kept in the tenant's
    quarantine and counted; the rest is stored (200 either way; `quarantined` and `errors`
    say what was set aside). Events already stored with the same content are counted as
    duplicates, so sending a batch again is harmless; an id stored with different content
    is a conflict, kept in the quarantine.
    """
    raw = await request.body()
    return await run_in_threadpool(_ingest, context, tenant_id, raw, strict)


def _time_key(after: str | None) -> TimeKey | None:
    if after is None:
        return None
    ts, _, seq = after.partition(".")
    try:
        key = TimeKey(int(ts), int(seq))
    except ValueError:
        key = None
    if key is None or not (-_KEY_LIMIT < key.ts_us < _KEY_LIMIT and 0 <= key.seq < _KEY_LIMIT):
        raise ApiError(422, ["query", "after"], "must be the `next` value of a previous page")
    return key


@router.get("", response_model=EventPage, responses=error_responses(401, 404, 422))
def list_events(
    tenant_id: TenantDep,
    context: ContextDep,
    start: Annotated[AwareDatetime | None, Query(description="From this time (inclusive).")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Up to this time (exclusive).")] = None,
    after: Annotated[
        str | None, Query(max_length=60, description="The `next` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    category: Annotated[list[EventCategory] | None, Query(max_length=20)] = None,
    event_type: Annotated[list[str] | None, Query(max_length=100)] = None,
    min_severity: Annotated[int, Query(ge=0, le=10)] = 0,
) -> dict[str, Any]:
    """The tenant's events with `start <= timestamp < end`, in time order, a page at a time."""
    key = _time_key(after)
    filter = EventFilter(frozenset(category or ()), frozenset(event_type or ()), min_severity)
    with context.engine.connect() as conn:
        events, last = read_events_in_range(
            conn, tenant_id=tenant_id, start=start, end=end, after=key, limit=limit, filter=filter
        )
    more = last is not None and len(events) == limit
    return {
        "events": [event.to_dict() for event in events],
        "next": f"{last.ts_us}.{last.seq}" if more and last is not None else None,
    }
