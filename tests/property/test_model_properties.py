"""Any valid event survives its JSON form unchanged."""

from __future__ import annotations

import orjson
from hypothesis import given, settings

from xavyo_siem.model import AuditEvent

from strategies import audit_events


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
