"""Ingest never refuses an event for its content: hostile values in every field are
normalised, the event says which fields changed, and it survives every format and the store."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from format_parsers import parse_cef, parse_csv, parse_json_line, parse_syslog
from xavyo_siem.errors import InvalidEvent
from xavyo_siem.format import csv_header, to_cef, to_csv, to_json, to_syslog
from xavyo_siem.model import FIELD_NAMES, AuditEvent
from xavyo_siem.model.event import _normalised  # the field-by-field reference
from xavyo_siem.model.validation import (
    MAX_METADATA_CHARS,
    MAX_METADATA_ENTRIES,
    repair_metadata,
)

from strategies import audit_events, hostile_event_dicts, hostile_json


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_event_dicts())
def test_an_event_with_hostile_fields_is_normalised_never_refused(data: dict[str, Any]) -> None:
    """Whatever the other fields hold, an event with an id, a tenant and a time is built;
    `normalized` is sorted field names; a field left as it was given is not named; and the
    event round-trips through its JSON form unchanged."""
    event = AuditEvent.from_dict(data)
    assert list(event.normalized) == sorted(set(event.normalized))
    assert set(event.normalized) <= set(FIELD_NAMES)
    kept = event.to_dict()
    for name in ("event_type", "event_name", "actor_email", "reason", "request_id"):
        if name in data and name not in event.normalized:
            assert kept.get(name) == data[name]
    assert AuditEvent.from_dict(orjson.loads(orjson.dumps(kept))) == event


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_event_dicts())
def test_a_normalised_event_is_one_record_in_every_format(data: dict[str, Any]) -> None:
    """A normalised event is one record in each format, read back by the strict parsers,
    and each format carries its `normalized` field."""
    event = AuditEvent.from_dict(data)
    names = ",".join(event.normalized)
    cef = parse_cef(to_cef(event)).extension
    assert cef.get("flexString1", "") == names
    sd = parse_syslog(to_syslog(event)).sd["xavyo@32473"]
    assert sd.get("normalized", [""]) == [names]
    assert parse_json_line(to_json(event)).get("normalized", []) == list(event.normalized)
    _header, row = parse_csv(csv_header() + "\r\n" + to_csv(event) + "\r\n")
    assert row[-1].value == names
    assert json.loads(to_json(event))["event_id"] == str(event.event_id)


@st.composite
def partly_hostile_event_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """The JSON form of a valid event with hostile values in a few fields (any field but the
    id and tenant), maybe a leap second, maybe keys that are no field."""
    data: dict[str, Any] = draw(audit_events()).to_dict()
    for name in draw(st.sets(st.sampled_from(FIELD_NAMES[3:]), max_size=4)):
        data[name] = draw(hostile_json | st.just("") | st.just("gateway.internal"))
    if draw(st.booleans()):
        data["timestamp"] = draw(
            st.sampled_from(["2016-12-31T23:59:60Z", "2024-06-30 23:59:60.5+02:00", "x:60"])
        )
    for key in draw(st.sets(st.sampled_from(["shoe_size", "", "\ud800"]), max_size=2)):
        data[key] = draw(hostile_json)
    return data


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(partly_hostile_event_dicts() | hostile_event_dicts())
def test_from_dict_builds_the_event_the_field_by_field_normalisation_builds(
    data: dict[str, Any],
) -> None:
    """`from_dict`, which repairs what is commonly wrong on its quick path, builds the very
    event (every field, `normalized` included) that the field-by-field normalisation builds,
    or refuses the same inputs with the same error."""
    try:
        expected = _normalised(data)
    except InvalidEvent as exc:
        error = str(exc)
        with pytest.raises(InvalidEvent) as refused:
            AuditEvent.from_dict(data)
        assert str(refused.value) == error
        return
    event = AuditEvent.from_dict(data)
    assert event == expected
    assert event.to_dict() == expected.to_dict()
    assert [type(value) for value in _fields_of(event)] == [
        type(value) for value in _fields_of(expected)
    ]


def _fields_of(event: AuditEvent) -> list[Any]:
    return [getattr(event, name) for name in FIELD_NAMES]


@st.composite
def plain_metadata_near_its_limits_with_unknown_keys(draw: st.DrawFn) -> dict[str, Any]:
    """The JSON form of a valid event whose metadata is plain (ASCII keys and values) and at
    or near its limit of entries or of characters, beside keys that are no field."""
    data: dict[str, Any] = draw(audit_events()).to_dict()
    entries = draw(st.sampled_from([0, 1, MAX_METADATA_ENTRIES - 1, MAX_METADATA_ENTRIES]))
    room = draw(st.sampled_from([MAX_METADATA_CHARS, MAX_METADATA_CHARS - 3, 40_000]))
    keys = [f"k{index}" for index in range(entries)] + draw(
        st.lists(st.sampled_from(["_", "k0", "shoe"]), max_size=2, unique=True)
    )
    metadata = dict.fromkeys(keys, "v")
    if metadata:  # the last value fills what is left of `room`
        used = sum(map(len, metadata)) + len(metadata) - 1
        metadata[keys[-1]] = "v" * max(1, room - used)
    data["metadata"] = metadata
    for key in draw(
        st.sets(st.sampled_from(["shoe", "k0", "", "_", "\ud800", "size"]), min_size=1)
    ):
        data[key] = draw(hostile_json | st.just("x" * 10))
    return data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_metadata_near_its_limits_with_unknown_keys())
def test_unknown_keys_beside_plain_metadata_near_its_limits_join_it_as_the_rule_says(
    data: dict[str, Any],
) -> None:
    """Keys that are no field, added to plain metadata, make the metadata the rule makes:
    `repair_metadata` of the given entries followed by the unknown keys (given ones win),
    whatever is left of the limits (an entry past them dropped, a value at the edge cut)."""
    joined = dict(data["metadata"])
    for key in data:
        if key not in FIELD_NAMES:
            joined.setdefault(key, data[key])
    assert AuditEvent.from_dict(data).metadata == repair_metadata(joined)
