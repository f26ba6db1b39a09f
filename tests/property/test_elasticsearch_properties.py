"""Any event written as `_bulk` lines and read back by a strict parser (the stdlib, repeated
keys refused) is one action line and one document carrying the event unchanged; no text
adds a line, an operation or a document. The encoder's and the answer reader's short cuts
give what their general paths give."""

from __future__ import annotations

import json
from datetime import UTC
from unittest.mock import patch

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from format_parsers import parse_json_line
from xavyo_siem.delivery import elasticsearch_bulk
from xavyo_siem.delivery.base import Record
from xavyo_siem.delivery.elasticsearch_bulk import (
    BulkEncoder,
    UnsendableRecord,
    bulk_lines,
    classify_bulk_response,
)
from xavyo_siem.format import JSON_OBJECT_FORMATS, make_formatter, to_json
from xavyo_siem.model import AuditEvent

from strategies import audit_events, audit_text

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


# --- the short cuts write what the general path writes ------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | audit_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(audit_text, inner, max_size=3),
    max_leaves=8,
)
# keys that put `@timestamp` (or a look-alike) first, inside, nested or nowhere
member_names = st.sampled_from(["@timestamp", "@timestamp ", "timestamp", "a"]) | audit_text


@st.composite
def object_texts(draw: st.DrawFn) -> str:
    """A JSON object as a format might write it: compact or spaced, on one line or not,
    `@timestamp` first, later, nested, in a value or absent."""
    members = draw(st.lists(st.tuples(member_names, json_values), max_size=5))
    if draw(st.booleans()):
        members.insert(0, ("@timestamp", draw(audit_text)))
    value = dict(members)
    indent = draw(st.sampled_from([None, None, 2]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    return json.dumps(value, ensure_ascii=draw(st.booleans()), indent=indent, separators=separators)


@PROPERTY
@given(text=object_texts(), event_id=audit_text, timestamp_us=st.integers(-(10**15), 10**17))
def test_the_encoder_writes_the_general_path_bytes_for_any_object(
    text: str, event_id: str, timestamp_us: int
) -> None:
    """For any JSON object text, `BulkEncoder` (short cuts included) writes exactly the
    bytes of `bulk_lines`, the general path that parses whenever `@timestamp` is named."""
    for op_type in ("create", "index"):
        record = Record(event_id, timestamp_us, text)
        assert BulkEncoder(op_type)(record) == bulk_lines(record, op_type)  # type: ignore[arg-type]


@PROPERTY
@given(event=audit_events(), fmt=st.sampled_from(sorted(JSON_OBJECT_FORMATS)))
def test_the_encoder_writes_the_general_path_bytes_for_every_json_format(
    event: AuditEvent, fmt: str
) -> None:
    """The records of the json, ocsf and ecs formats go through the short cuts and come
    out byte for byte as the general path writes them."""
    record = Record.of(event, make_formatter(fmt)(event))
    assert BulkEncoder("create")(record) == bulk_lines(record, "create")


@PROPERTY
@given(text=st.text(alphabet=st.characters(), max_size=60) | object_texts().map(lambda t: t[:-1]))
def test_any_text_gives_the_general_path_bytes_or_is_left_to_the_cluster(text: str) -> None:
    """Whatever the text (not JSON, cut short, a lone surrogate), the encoder writes the
    general path's bytes or raises its error; the one difference is a line that begins
    with the `@timestamp` member, which is sent unparsed (the cluster judges it)."""
    record = Record("id", 0, text)
    try:
        general: bytes | str = bulk_lines(record, "create")
    except UnsendableRecord as exc:
        general = exc.reason
    try:
        fast: bytes | str = BulkEncoder("create")(record)
    except UnsendableRecord as exc:
        fast = exc.reason
    if fast != general:
        assert text.startswith('{"@timestamp":')
        assert "\n" not in text
        assert "\r" not in text
        assert isinstance(general, str)
        assert fast == b'{"create":{"_id":"id"}}\n' + text.encode() + b"\n"


# --- an all-stored answer is read as the item-by-item loop reads it -----------------------

IDS = [f"id-{n}" for n in range(4)]
item_outcomes = st.fixed_dictionaries(
    {
        "_id": st.sampled_from([*IDS, None, 7, "other"]),
        "status": st.sampled_from([200, 201, 201, 299, 300, 409, 429, 400, 201.0, True, "201"]),
    },
    optional={"error": st.sampled_from([None, {"type": "version_conflict_engine_exception"}])},
)
answer_items = st.one_of(
    st.builds(
        lambda op, outcome: {op: outcome}, st.sampled_from(["create", "index"]), item_outcomes
    ),
    st.builds(lambda outcome: {"create": outcome, "index": outcome}, item_outcomes),
    st.sampled_from([{}, [], "create", None, {"create": []}, {"create": "x"}, {"create": {}}]),
)


def all_stored_items(ids: list[str]) -> list[dict[str, object]]:
    """The items of an answer where each document was created."""
    return [{"create": {"_id": i, "status": 201}} for i in ids]


@PROPERTY
@given(
    size=st.integers(0, 4),
    changes=st.lists(st.tuples(st.integers(0, 3), answer_items), max_size=3),
)
def test_the_all_stored_check_agrees_with_the_item_loop(
    size: int, changes: list[tuple[int, object]]
) -> None:
    """Whatever the items (mostly created, some odd), the answer read with the all-stored
    short cut equals the answer read item by item without it."""
    ids = IDS[:size]
    items: list[object] = list(all_stored_items(ids))
    for position, item in changes:
        if position < size:
            items[position] = item
    body = orjson.dumps({"errors": True, "items": items})
    fast = classify_bulk_response(200, {}, body, ids=ids, op_type="create")
    with patch.object(elasticsearch_bulk, "_all_stored", lambda *_: False):
        loop = classify_bulk_response(200, {}, body, ids=ids, op_type="create")
    assert fast == loop


def test_an_answer_of_created_documents_takes_the_short_cut() -> None:
    """A plain all-created answer is recognised by the all-stored check (the short cut is
    taken, not only correct)."""
    assert elasticsearch_bulk._all_stored(all_stored_items(IDS), IDS, "create")
    assert not elasticsearch_bulk._all_stored(all_stored_items(IDS), IDS, "index")
    assert not elasticsearch_bulk._all_stored(all_stored_items(IDS[::-1]), IDS, "create")
