"""Any event written as `_bulk` lines and read back by a strict parser (the stdlib, repeated
keys refused) is one action line and one document carrying the event unchanged; no text
adds a line, an operation or a document."""

from __future__ import annotations

import json
from datetime import UTC

from hypothesis import given, settings
from hypothesis import strategies as st

from format_parsers import parse_json_line
from xavyo_siem.delivery.base import Record
from xavyo_siem.delivery.elasticsearch_bulk import BulkEncoder
from xavyo_siem.format import to_json
from xavyo_siem.model import AuditEvent

from strategies import audit_events

PROPERTY = settings(max_examples=150, deadline=None)


def bulk_pairs(body: bytes) -> list[tuple[dict[str, object], dict[str, object]]]:
    """The (action, document) pairs of a `_bulk` body, read strictly: UTF-8, LF-terminated
    lines, each one JSON object, actions of exactly one operation."""
    text = body.decode("utf-8")
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert len(lines) % 2 == 0
    pairs = []
    for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
        action = parse_json_line(action_line)
        assert len(action) == 1
        pairs.append((action, parse_json_line(source_line)))
    return pairs


def rfc3339_us(event: AuditEvent) -> str:
    """The event's time as the document's `@timestamp` should read."""
    return event.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@PROPERTY
@given(event=audit_events(), op_type=st.sampled_from(["create", "index"]))
def test_an_event_is_one_action_and_one_document(event: AuditEvent, op_type: str) -> None:
    """The action names the operation and the event id; the document is the JSON event
    with `@timestamp` from the event's time, nothing more."""
    text = to_json(event)
    body = BulkEncoder(op_type)(Record.of(event, text))  # type: ignore[arg-type]
    ((action, document),) = bulk_pairs(body)
    assert action == {op_type: {"_id": str(event.event_id)}}
    assert document.pop("@timestamp") == rfc3339_us(event)
    assert document == json.loads(text)


@PROPERTY
@given(events=st.lists(audit_events(), min_size=1, max_size=8))
def test_no_event_adds_a_document(events: list[AuditEvent]) -> None:
    """A body of N events reads back as exactly N pairs, in order."""
    encode = BulkEncoder("create")
    body = b"".join(encode(Record.of(event, to_json(event))) for event in events)
    pairs = bulk_pairs(body)
    assert [action["create"] for action, _ in pairs] == [
        {"_id": str(event.event_id)} for event in events
    ]


@PROPERTY
@given(
    event_id=st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    key=st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
)
def test_any_id_and_any_nested_timestamp_text_stay_in_their_place(event_id: str, key: str) -> None:
    """Whatever the id, and whatever text a record holds (a `@timestamp` look-alike
    included), the action keeps the id and the document gets exactly one `@timestamp`."""
    source = json.dumps({"metadata": {key: '"@timestamp"', "@timestamp": key}})
    ((action, document),) = bulk_pairs(BulkEncoder("create")(Record(event_id, 0, source)))
    assert action == {"create": {"_id": event_id}}
    assert document["@timestamp"] == "1970-01-01T00:00:00.000000Z"
    assert document["metadata"] == json.loads(source)["metadata"]
