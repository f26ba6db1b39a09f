"""The sentinel request body over any event: each record's element parses back, with a strict
JSON parser, to the record's object plus `TimeGenerated`; no text adds an element or a key;
and `TimeGenerated` is the event's time, computed here independently."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from format_parsers import ParseError, parse_json_line
from xavyo_siem.delivery.base import Record
from xavyo_siem.delivery.sentinel_protocol import array_body, ingestion_item, time_generated
from xavyo_siem.format import to_json
from xavyo_siem.model import AuditEvent

from strategies import audit_events

PROPERTY = settings(max_examples=300, deadline=None)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def strict_array(body: bytes) -> list[dict[str, Any]]:
    """The body parsed with the stdlib: one JSON array of objects, no repeated key."""
    value = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ParseError("the body must be a JSON array of objects")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ParseError(f"a key is repeated: {keys}")
    return dict(pairs)


def iso_of(timestamp_us: int) -> str:
    """Epoch µs as ISO 8601 with six fraction digits, via datetime.isoformat."""
    moment = EPOCH + timedelta(microseconds=timestamp_us)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@PROPERTY
@given(st.lists(audit_events(), min_size=1, max_size=5))
def test_every_element_is_its_record_plus_time_generated(events: list[AuditEvent]) -> None:
    """Any events (hostile text included) make one array with one object per event, each the
    record's own object with `TimeGenerated` first, and nothing else."""
    records = [Record.of(event, to_json(event)) for event in events]
    body = array_body([ingestion_item(r.text, r.timestamp_us) for r in records])
    parsed = strict_array(body)
    assert len(parsed) == len(records)
    for element, record in zip(parsed, records, strict=True):
        own = parse_json_line(record.text)
        assert next(iter(element)) == "TimeGenerated"
        assert element == {"TimeGenerated": iso_of(record.timestamp_us), **own}


@PROPERTY
@given(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999))
def test_time_generated_is_the_instant_in_six_digit_iso(timestamp_us: int) -> None:
    """Every instant from year 1 to 9999 is written as datetime writes it, with `Z`."""
    assert time_generated(timestamp_us) == iso_of(timestamp_us)
