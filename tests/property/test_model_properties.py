"""Any valid event survives its JSON form unchanged; over-long text and metadata are cut."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from xavyo_siem.model import (
    MAX_EVENT_TYPE_CHARS,
    MAX_METADATA_CHARS,
    MAX_METADATA_ENTRIES,
    MAX_TEXT_CHARS,
    TEXT_FIELDS,
    AuditEvent,
)

from strategies import audit_events, audit_text


@settings(max_examples=300, deadline=None)
@given(audit_events())
def test_any_event_round_trips_through_json(event: AuditEvent) -> None:
    """to_dict, serialised as JSON and parsed back through from_dict, gives an equal event."""
    assert AuditEvent.from_dict(orjson.loads(orjson.dumps(event.to_dict()))) == event


@settings(max_examples=200, deadline=None)
@given(audit_events())
def test_to_dict_is_json_safe_and_stable(event: AuditEvent) -> None:
    """to_dict holds only JSON types, and encoding it twice gives the same bytes."""
    first = orjson.dumps(event.to_dict())
    assert orjson.dumps(AuditEvent.from_dict(orjson.loads(first)).to_dict()) == first


@st.composite
def long_texts(draw: st.DrawFn) -> str:
    """Text made long by repeating a drawn piece: around and well over the text limits."""
    piece = draw(audit_text.filter(bool))
    length = draw(st.sampled_from([199, 200, 201, MAX_TEXT_CHARS - 1, MAX_TEXT_CHARS + 1]))
    length = draw(st.one_of(st.just(length), st.integers(0, 3 * MAX_TEXT_CHARS)))
    return (piece * (length // len(piece) + 1))[:length]


@st.composite
def oversized_events(draw: st.DrawFn) -> dict[str, Any]:
    """The JSON form of a valid event whose text fields and metadata may pass every limit."""
    data = draw(audit_events()).to_dict()
    for name in ("event_type", *TEXT_FIELDS):
        if draw(st.booleans()):
            data[name] = "X" + draw(long_texts())  # not blank: event_type must not be
    entries = draw(st.sampled_from([0, 3, MAX_METADATA_ENTRIES, MAX_METADATA_ENTRIES + 1, 2000]))
    value = draw(long_texts()) if draw(st.booleans()) else "v"
    data["metadata"] = {f"k{n}": value for n in range(entries)}
    return data


@settings(max_examples=60, deadline=None)
@given(oversized_events())
def test_text_and_metadata_over_their_limits_are_cut_never_refused(data: dict[str, Any]) -> None:
    """An event with over-long text or metadata is accepted with each text cut to its limit
    and metadata cut to its first entries within its limits, and the result is stable."""
    event = AuditEvent.from_dict(orjson.loads(orjson.dumps(data)))
    assert event.event_type == data["event_type"][:MAX_EVENT_TYPE_CHARS]
    for name in TEXT_FIELDS:
        given_text = data.get(name)
        assert getattr(event, name) == (None if given_text is None else given_text[:MAX_TEXT_CHARS])
    kept = list(event.metadata.items())
    given_entries = list(data["metadata"].items())
    used = sum(len(key) + len(value) for key, value in kept)
    assert len(kept) <= MAX_METADATA_ENTRIES
    assert used <= MAX_METADATA_CHARS
    assert kept[:-1] == given_entries[: len(kept) - 1]
    if kept:  # the last entry kept is whole, or its value was cut to fill the budget
        key, value = kept[-1]
        given_key, given_value = given_entries[len(kept) - 1]
        assert key == given_key
        assert given_value.startswith(value)
        assert value == given_value or used == MAX_METADATA_CHARS
    if len(given_entries) > len(kept):  # the rest was dropped for a limit
        next_key = given_entries[len(kept)][0]
        assert len(kept) == MAX_METADATA_ENTRIES or used + len(next_key) > MAX_METADATA_CHARS
    assert AuditEvent.from_dict(event.to_dict()) == event
