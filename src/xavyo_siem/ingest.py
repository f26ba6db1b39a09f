"""What comes in: audit events parsed from JSON, validated, and appended to the store.

One parser serves both ways in. `xavyo-siem ingest` reads a file of JSON lines
(`events_of_lines`); the API's `POST /v1/tenants/{tenant_id}/events` reads a batch
`{"events": [...]}` and hands its list to `events_of_batch`. Both decode with orjson
(`decode_json`) and validate with `AuditEvent.from_dict`, and an error says where the bad
event is, then the field and the rule: `line 3: timestamp: must carry a UTC offset` for a
file, field `events.17.timestamp` for a batch. `store_events` appends them in one
transaction, so one bad event stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final
from uuid import UUID

import orjson
from sqlalchemy import Engine

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.model import AuditEvent
from xavyo_siem.store import AppendResult, append_events, writing
from xavyo_siem.store.changes import announce_new_events

__all__ = ["PROGRESS_EVERY", "decode_json", "events_of_batch", "events_of_lines", "store_events"]

# `events_of_lines` reports its progress every this many lines.
PROGRESS_EVERY: Final = 2048


def decode_json(raw: bytes) -> Any:
    """The JSON value `raw` holds; `InvalidEvent` on field `event` when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _not_json(exc) from None


def _not_json(exc: orjson.JSONDecodeError) -> InvalidEvent:
    return InvalidEvent("event", f"is not valid JSON ({exc})")


def events_of_lines(
    lines: Iterable[bytes], *, on_progress: Callable[[int], None] | None = None
) -> Iterator[AuditEvent]:
    """The events of JSON lines, one per line, each validated as it is read.

    Lazy, so memory stays bounded whatever the input's size; on PostgreSQL the store reads
    it from a helper thread. Blank lines are skipped but counted. A bad line raises
    `InvalidEvent` located at its (1-based) line. `on_progress(line_number)` is called
    every `PROGRESS_EVERY` lines.
    """
    loads, from_dict = orjson.loads, AuditEvent.from_dict  # decode_json, inlined: runs per line
    for number, line in enumerate(lines, start=1):
        if on_progress is not None and number % PROGRESS_EVERY == 0:
            on_progress(number)
        if line.isspace():  # stops at the first other byte: no copy of the line, as strip() made
            continue
        try:
            yield from_dict(loads(line))
        except orjson.JSONDecodeError as exc:
            raise _not_json(exc).at_line(number) from None
        except InvalidEvent as exc:
            raise exc.at_line(number) from None


def events_of_batch(items: Iterable[Any], *, tenant_id: UUID) -> list[AuditEvent]:
    """The events of a batch sent for `tenant_id` (the API's path), each validated.

    `items` is the batch's decoded JSON list. An event without `tenant_id` belongs to
    `tenant_id`; one naming another tenant is refused. A bad event raises `InvalidEvent`
    naming `events.<index>.<field>`.
    """
    from_dict = AuditEvent.from_dict
    tenant = str(tenant_id)
    events: list[AuditEvent] = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            given = item.get("tenant_id")
            if given is None:
                item["tenant_id"] = tenant
            elif given != tenant and not _same_uuid(given, tenant_id):
                raise InvalidEvent(
                    f"events.{index}.tenant_id", "must be the tenant of the path, or left out"
                )
        try:
            events.append(from_dict(item))
        except InvalidEvent as exc:
            raise InvalidEvent(f"events.{index}.{exc.field}", exc.reason) from None
    return events


def _same_uuid(value: object, tenant_id: UUID) -> bool:
    try:
        return isinstance(value, str) and UUID(value) == tenant_id
    except ValueError:
        return False


def store_events(
    engine: Engine, events: Iterable[AuditEvent], *, tenant_id: UUID | None = None
) -> AppendResult:
    """Append `events` in one transaction, each `(tenant_id, event_id)` once.

    Events already stored are counted as duplicates and left as they are. An error raised
    while `events` is read (a bad line) rolls back everything, so it stores nothing. Once
    committed, the workers are told (`announce_new_events`). `tenant_id`, when given, is
    the one tenant the events belong to (see `append_events`).
    """
    with writing(engine) as conn:
        result = append_events(conn, events, tenant_id=tenant_id)
    if result.stored:
        announce_new_events(engine)
    return result
