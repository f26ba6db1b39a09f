"""JSON lines: the to_dict form, one line, orjson output, hostile text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import orjson

from format_events import make_event
from format_parsers import parse_json_line
from xavyo_siem.format import make_formatter, to_json
from xavyo_siem.model import AuditEvent, ExportFormat
from xavyo_siem.sample import generate_events


def test_golden_line() -> None:
    """The documented line: to_dict field names and order, compact, µs timestamp with Z."""
    line = to_json(make_event(outcome="success", source_ip="203.0.113.7", metadata={"geo": "FR"}))
    assert line == (
        '{"event_id":"7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37",'
        '"tenant_id":"0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",'
        '"timestamp":"2024-05-01T12:34:56.789000Z","event_type":"USER_LOGIN",'
        '"category":"authentication","severity":3,"outcome":"success",'
        '"source_ip":"203.0.113.7","metadata":{"geo":"FR"}}'
    )


def test_same_bytes_as_to_dict_for_sample_events() -> None:
    """For realistic events the line is byte-identical to orjson.dumps(event.to_dict())."""
    for event in generate_events(500, tenants=3, seed=7):
        assert to_json(event) == orjson.dumps(event.to_dict()).decode()


def test_whole_second_timestamp_keeps_six_digits() -> None:
    """A time on a whole second is still written with `.000000Z`, as to_dict does."""
    line = to_json(make_event(timestamp=datetime(2024, 1, 1, tzinfo=UTC)))
    assert parse_json_line(line)["timestamp"] == "2024-01-01T00:00:00.000000Z"


def test_non_utc_timestamp_is_written_in_utc() -> None:
    """An event built from a +02:00 time is written in UTC with Z."""
    moment = datetime(2024, 1, 1, 2, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    assert parse_json_line(to_json(make_event(timestamp=moment)))["timestamp"] == (
        "2024-01-01T00:00:00.000001Z"
    )


def test_hostile_text_is_one_line_and_round_trips() -> None:
    """CR, LF, quotes, backslashes, controls, emoji and 100 KB values survive in one line
    (whole: ingest would cut them, the format does not)."""
    text = 'a\r\nb"c\\d\te\x01\x1b\x7f\x85\u2028😀' + "x" * 100_000
    event = make_event(reason=text, metadata={"k=v with space": text, "=cmd": "@SUM(1+1)"})
    line = to_json(event)
    assert "\n" not in line
    assert "\r" not in line
    assert json.loads(line) == event.to_dict()
    short = make_event(reason=text[:1000], metadata={"k=v with space": text[:1000]})
    assert AuditEvent.from_dict(json.loads(to_json(short))) == short


def test_absent_and_empty_are_distinct() -> None:
    """An absent field is left out; an empty string is written as ""."""
    obj = parse_json_line(to_json(make_event(reason="")))
    assert obj["reason"] == ""
    assert "action" not in obj
    assert "metadata" not in obj


def test_make_formatter_json_is_to_json() -> None:
    """make_formatter('json') returns to_json itself."""
    assert make_formatter(ExportFormat.JSON) is to_json
