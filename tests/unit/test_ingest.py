"""The one event parser of `xavyo-siem ingest` (JSON lines) and the API's batch ingest."""

from __future__ import annotations

import uuid

import orjson
import pytest

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.ingest import events_of_batch, events_of_lines
from xavyo_siem.sample import generate_events

EVENTS = [event.to_dict() for event in generate_events(3, 1, seed=11)]
TENANT = uuid.UUID(EVENTS[0]["tenant_id"])


def test_a_bad_event_names_the_same_field_and_rule_as_a_line_and_in_a_batch() -> None:
    """The same bad event is reported with the same field and rule by both readers, located
    at its line in a file and at its index in a batch."""
    bad = {**EVENTS[1], "timestamp": "2026-01-01T00:00:00"}
    with pytest.raises(InvalidEvent) as in_lines:
        list(events_of_lines([orjson.dumps(EVENTS[0]), orjson.dumps(bad)]))
    with pytest.raises(InvalidEvent) as in_batch:
        events_of_batch([EVENTS[0], bad], tenant_id=TENANT)
    assert str(in_lines.value).startswith("line 2: timestamp: must carry a UTC offset")
    assert in_batch.value.field == "events.1.timestamp"
    assert in_batch.value.reason == in_lines.value.reason


def test_lines_are_read_lazily_so_good_events_come_before_a_later_error() -> None:
    """Events are parsed one line at a time: those before a bad line are yielded before the
    error, so memory never holds the whole input."""
    reader = events_of_lines([orjson.dumps(EVENTS[0]), b"{not json"])
    assert next(reader).event_id == uuid.UUID(EVENTS[0]["event_id"])
    with pytest.raises(InvalidEvent, match="line 2: event: is not valid JSON"):
        next(reader)


def test_progress_is_reported_by_line_number_blank_lines_included() -> None:
    """`on_progress` gets the line number every 2,048 lines, blank lines counted."""
    seen: list[int] = []
    lines = [orjson.dumps(EVENTS[0])] + [b"\n"] * 4_999
    assert len(list(events_of_lines(lines, on_progress=seen.append))) == 1
    assert seen == [2048, 4096]


def test_a_batch_event_without_tenant_is_the_batch_tenants_and_another_tenant_is_refused() -> None:
    """An event without `tenant_id` belongs to the batch's tenant; one naming another
    tenant is refused on `events.<index>.tenant_id`."""
    missing = {key: value for key, value in EVENTS[0].items() if key != "tenant_id"}
    [event] = events_of_batch([missing], tenant_id=TENANT)
    assert event.tenant_id == TENANT
    other = {**EVENTS[0], "tenant_id": str(uuid.uuid4())}
    with pytest.raises(InvalidEvent) as refused:
        events_of_batch([EVENTS[0], other], tenant_id=TENANT)
    assert refused.value.field == "events.1.tenant_id"
