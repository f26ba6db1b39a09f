"""The one event parser of `xavyo-siem ingest` (JSON lines) and the API's batch ingest."""

from __future__ import annotations

import json
import re
import uuid
from typing import Final

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.ingest import (
    decode_json,
    events_of_batch,
    events_of_lines,
    lone_surrogate_escape_in,
)
from xavyo_siem.sample import generate_events
from xavyo_siem.store.quarantine import RAW_MAX_CHARS, QuarantineEntry

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


def test_lines_that_are_no_event_are_set_aside_capped_and_the_rest_read() -> None:
    """Given a list to set aside into, a line that is no event goes there (its reason, its
    source line, its tenant when it names one, its text cut to the quarantine's cap with the
    whole length kept) and reading goes on."""
    set_aside: list[QuarantineEntry] = []
    huge = b'{"tenant_id": "%s", "x": "' % TENANT.hex.encode() + b"y" * 100_000 + b'"}'
    lines = [b"{not json\n", orjson.dumps(EVENTS[0]), huge]
    events = list(events_of_lines(lines, set_aside=set_aside, source="f.jsonl"))
    assert [event.event_id for event in events] == [uuid.UUID(EVENTS[0]["event_id"])]
    first, second = set_aside
    assert (first.source, first.raw, first.tenant_id) == ("f.jsonl:1", "{not json", None)
    assert first.reason.startswith("line 1: event: is not valid JSON")
    assert (second.source, second.tenant_id) == ("f.jsonl:3", TENANT)
    assert second.reason == "line 3: event_id: is required"
    assert (len(second.raw), second.raw_bytes) == (RAW_MAX_CHARS, len(huge))


def test_a_batch_item_that_is_no_event_is_set_aside_as_the_paths_tenants() -> None:
    """Given a list to set aside into, a batch item without an id, or naming another tenant,
    goes there as the path tenant's, named by index, and the other items are read."""
    set_aside: list[QuarantineEntry] = []
    other = {**EVENTS[1], "tenant_id": str(uuid.uuid4())}
    no_id = {key: value for key, value in EVENTS[2].items() if key != "event_id"}
    events = events_of_batch([EVENTS[0], other, no_id], tenant_id=TENANT, set_aside=set_aside)
    assert len(events) == 1
    assert [(e.source, e.tenant_id) for e in set_aside] == [
        ("api:events.1", TENANT),
        ("api:events.2", TENANT),
    ]
    assert set_aside[1].reason == "events.2.event_id: is required"


def nested(depth: int) -> bytes:
    """JSON lists nested `depth` deep (orjson reads up to 1,024)."""
    return b"[" * depth + b"]" * depth


def test_a_line_nested_too_deeply_to_be_written_is_set_aside_and_the_rest_read() -> None:
    """A line whose metadata holds a value nested too deeply to be written as JSON text again
    (but not too deeply for orjson to read) is set aside with its reason instead of ending
    the ingest, and the line after it is read."""
    deep = orjson.dumps(EVENTS[0])[:-1] + b',"metadata":{"k":' + nested(1020) + b"}}"
    set_aside: list[QuarantineEntry] = []
    events = list(events_of_lines([deep, orjson.dumps(EVENTS[1])], set_aside=set_aside))
    assert [event.event_id for event in events] == [uuid.UUID(EVENTS[1]["event_id"])]
    [entry] = set_aside
    assert entry.reason == "line 1: event: holds a value nested too deeply to be written"
    assert entry.tenant_id == TENANT


def test_batch_items_nested_too_deeply_are_set_aside_with_what_can_be_written_of_them() -> None:
    """Batch items nested deeply are set aside, never an error that fails the batch: one that
    orjson cannot write again (over 255 levels) is kept as the standard library writes it,
    and one that neither can write is kept as a note of what it was."""
    no_id = {key: value for key, value in EVENTS[1].items() if key != "event_id"}
    middling = {**no_id, "metadata": {"k": orjson.loads(nested(300))}}
    too_deep = {**EVENTS[2], "metadata": {"k": orjson.loads(nested(1020))}}
    set_aside: list[QuarantineEntry] = []
    events = events_of_batch([EVENTS[0], middling, too_deep], tenant_id=TENANT, set_aside=set_aside)
    assert [event.event_id for event in events] == [uuid.UUID(EVENTS[0]["event_id"])]
    first, second = set_aside
    assert first.reason == "events.1.event_id: is required"
    assert json.loads(first.raw) == middling
    assert second.reason == "events.2.event: holds a value nested too deeply to be written"
    assert second.raw == "(a dict nested too deeply to be written as JSON)"


def test_a_batch_item_with_a_lone_surrogate_is_set_aside_as_text_the_store_can_hold() -> None:
    """A batch item that is no event and holds a lone surrogate (which orjson cannot write)
    is set aside as JSON text that UTF-8 can carry, the surrogate as its escape, and reads
    back as the item; before, storing it failed the whole batch."""
    item = {key: value for key, value in EVENTS[1].items() if key != "event_id"}
    item["actor_id"] = "\ud800 \u00e9"
    set_aside: list[QuarantineEntry] = []
    events_of_batch([EVENTS[0], item], tenant_id=TENANT, set_aside=set_aside)
    [entry] = set_aside
    entry.raw.encode("utf-8")  # strict: no lone surrogate
    assert json.loads(entry.raw) == item


def orjson_refuses(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return True
    return False


_ESCAPE: Final = re.compile(rb"\\u([0-9a-f]{4})")
# Characters drawn one by one, half of them from the tricky few (as one alphabet, they would
# be drowned among all the others).
_TRICKY: Final = st.lists(
    st.sampled_from(["\\", "u", "d", "8", "c", "\ud800", "\udbff", "\udc00", "\U0001f600"])
    | st.characters(codec=None),
    max_size=12,
).map("".join)


@given(st.lists(_TRICKY, max_size=4), st.booleans())
@example(["\\ud800 as text"], False)  # an escaped backslash, then text
@example(["\\\ud800"], False)  # an escaped backslash, then an escape
@example(["\U0001f600\udc00", "\ud800\\udc00"], True)
def test_a_lone_surrogates_escape_is_found_exactly_where_orjson_refuses_the_line(
    texts: list[str], upper: bool
) -> None:
    """`lone_surrogate_escape_in` says yes for a JSON line exactly when it escapes a lone
    surrogate (orjson refuses it, the standard library reads it), whatever backslashes, pairs
    or upper-case hex digits surround it; and the line is read as the standard library reads
    it either way."""
    line = json.dumps({"texts": texts}).encode()  # every non-ASCII character escaped
    if upper:
        line = _ESCAPE.sub(lambda found: b"\\u" + found[1].upper(), line)
    assert lone_surrogate_escape_in(line) is orjson_refuses(line)
    assert decode_json(line) == json.loads(line)


# Texts of which each holds at least one lone surrogate, among other tricky characters.
_WITH_LONE_SURROGATE: Final = st.builds(
    lambda before, lone, after: f"{before} {lone} {after}",  # spaced: no pair is made
    st.lists(
        st.sampled_from(["\\", "u", "d", "8", "\U0001f600", "\ud83d"]) | st.characters(), max_size=4
    ).map("".join),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    st.lists(st.sampled_from(["\\", "\udc00", "\ude00"]) | st.characters(), max_size=4).map(
        "".join
    ),
)
# What may stand before a line: JSON's white space, a byte order mark, and characters that
# are white space elsewhere but not in JSON.
_LEAD: Final = st.lists(
    st.sampled_from([" ", "\t", "\r", "\n", "\ufeff", "\x0b", "\xa0", "\u2028"]), max_size=3
).map("".join)
_JSON_WHITE_SPACE: Final = st.text(alphabet=" \t\r\n", max_size=3)


@given(
    st.lists(_WITH_LONE_SURROGATE, min_size=1, max_size=3),
    _LEAD,
    _JSON_WHITE_SPACE,
    st.sampled_from([b"", b"x", b",", b"}", b"\x0b", b"\xff", "\u00a0".encode()]),
)
@example(["\ud800"], " \t", "\r\n", b"")  # JSON white space on both sides
@example(["\ud800"], "\ufeff ", "", b"")  # a byte order mark first, then white space
@example(["\ud800"], " \ufeff", "", b"")  # a byte order mark after white space
@example(["\ud800"], "", "", b"\x0b")  # white space that JSON's is not
def test_a_line_with_a_lone_surrogates_escape_is_read_or_refused_as_the_standard_library_does(
    texts: list[str], before: str, after: str, tail: bytes
) -> None:
    """Whatever stands before a line that escapes a lone surrogate (white space, a byte order
    mark) and whatever follows it, the line is read as the standard library's `json.loads`
    reads it, or refused as not JSON where that parser refuses it."""
    line = before.encode() + json.dumps({"texts": texts}).encode() + after.encode() + tail
    assert lone_surrogate_escape_in(line)
    try:
        expected = json.loads(line)
    except ValueError:
        with pytest.raises(InvalidEvent, match="event: is not valid JSON"):
            decode_json(line)
    else:
        assert decode_json(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b'{"a": "b"}',  # orjson reads it once the mark is passed over
        b'{"a": "\xed\xa0\x80"}',  # orjson refuses a surrogate in UTF-8; the other parser not
        b'{"a": "\\ud800"}',  # a lone surrogate's escape
    ],
)
def test_a_byte_order_mark_before_a_line_is_passed_over_whichever_parser_reads_it(
    line: bytes,
) -> None:
    """A line that starts with a UTF-8 byte order mark is read as without it, as `json.loads`
    reads it, whether orjson or the standard library's parser reads the rest."""
    assert decode_json(b"\xef\xbb\xbf" + line) == json.loads(line)


# Ways to write the same line: as it is, with an escape beside it, and with a lone
# surrogate's escape beside it (then the standard library's parser reads the line first).
_BESIDE: Final = [b"", b', "e": "\\u00e9"', b', "e": "\\ud800"']


def _line(body: bytes, beside: bytes) -> bytes:
    return b'{"v": ' + body + beside + b"}"


def _read_or_refused(line: bytes) -> str:
    """The `repr` of what `decode_json` makes of `line` without its `e` (the escape beside
    it), or "refused": `repr` tells an integer from a double, and 0.0 from -0.0."""
    try:
        value = decode_json(line)
    except InvalidEvent:
        return "refused"
    value.pop("e", None)
    return repr(value)


@pytest.mark.parametrize(
    ("body", "read"),
    [
        (b"NaN", "refused"),  # no JSON, for either parser
        (b"-Infinity", "refused"),
        (b"1e400", "refused"),  # past a double's range
        (b"1" + b"0" * 5000, "refused"),  # an integer past it too, and past int()'s digits
        (b"1" + b"0" * 300, repr({"v": 1e300})),  # an integer past 64 bits: the nearest double
        (b"18446744073709551615", repr({"v": 2**64 - 1})),  # within 64 bits, unsigned: exact
        (b"-9223372036854775808", repr({"v": -(2**63)})),  # within 64 bits, signed: exact
        (b"-9223372036854775809", repr({"v": -9.223372036854776e18})),  # below: a double
        (b"-0.0", repr({"v": -0.0})),
        (b'"\xed\xa0\x80"', repr({"v": "\ud800"})),  # a surrogate encoded in UTF-8
    ],
)
def test_a_line_is_read_or_refused_alike_whatever_escape_stands_beside_it(
    body: bytes, read: str
) -> None:
    """A line is read to the same value, or refused, whether it holds no escape, an escape,
    or a lone surrogate's escape (which sends it to the standard library's parser first):
    `NaN` and numbers past a double's range are refused, integers are exact within 64 bits
    and doubles beyond, and a surrogate encoded in the UTF-8 is read."""
    for beside in _BESIDE:
        assert _read_or_refused(_line(body, beside)) == read, beside


def test_a_line_in_utf_16_is_refused_whatever_escape_it_holds() -> None:
    """Only UTF-8 is read: a line in UTF-16 is refused, with or without an escape in it."""
    for beside in _BESIDE:
        line = _line(b'"x"', beside).decode().encode("utf-16")
        assert _read_or_refused(line) == "refused", beside


# JSON numbers as they may be written: any sign, digits, fraction and exponent.
_NUMBER_TEXT: Final = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?\Z"
)
_JSON_TEXT: Final = st.recursive(
    st.sampled_from(["null", "true", "false"])
    | _NUMBER_TEXT
    | st.integers(min_value=-(2**70), max_value=2**70).map(str)  # near and past 64 bits
    | st.text().map(lambda text: json.dumps(text, ensure_ascii=False)),
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        | st.lists(st.tuples(st.text(max_size=5), children), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"
        )
    ),
    max_leaves=12,
)


@given(_JSON_TEXT)
@example("1e309")  # past a double's range
@example("-0")
def test_any_json_value_reads_the_same_whichever_parser_reads_its_line(text: str) -> None:
    """Whatever JSON text a line holds (numbers written any way, integers near and past 64
    bits, text with any character unescaped), orjson and the standard library's parser
    (which reads a line that escapes a lone surrogate first) read it to the same value, or
    both refuse it."""
    body = text.encode()
    assert _read_or_refused(_line(body, _BESIDE[2])) == _read_or_refused(_line(body, b""))


@pytest.mark.parametrize(
    ("line", "lone"),
    [
        (rb'{"a": "\uD83D\ude00"}', False),  # a pair, its halves in two cases
        (rb'{"a": "\ud83d\uDE00 \ud55c"}', False),  # a pair, then Hangul (\ud000-\ud7ff)
        (rb'{"a": "\\ud800"}', False),  # an escaped backslash, then text
        (rb'{"a": "\\\ud800"}', True),  # an escaped backslash, then a lone high half
        (rb'{"a": "\ud83d\\ude00"}', True),  # a high half, then an escaped backslash
        (rb'{"a": "\ude00\ud83d"}', True),  # the halves in the wrong order
        (rb'{"a": "\ud83d\ude00\udc00"}', True),  # a pair, then a lone low half
    ],
)
def test_lone_surrogate_escapes_are_told_from_pairs_and_escaped_text(
    line: bytes, lone: bool
) -> None:
    """The escapes that make orjson refuse a line are found, and only those: pairs in any
    case, other `\\ud` escapes and escaped backslashes followed by text are not."""
    assert lone_surrogate_escape_in(line) is lone
    assert orjson_refuses(line) is lone


_FRAGMENTS: Final = [
    rb"\\", rb"\ud83d", rb"\uDE00", rb"\uD800", rb"\udc00", rb"\ud55c", b"ud83d", b"x", rb"\n",
]  # fmt: skip


@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12))
@example([rb"\\", b"ud83d", rb"\uDE00"])  # text that looks like a high half, then a low
@example([rb"\\", rb"\\", rb"\ud83d", rb"\uDE00"])  # two escaped backslashes, then a pair
def test_any_run_of_escapes_and_text_is_judged_as_orjson_judges_it(pieces: list[bytes]) -> None:
    """Whatever escaped backslashes, halves of pairs, Hangul, text that looks like an escape
    and other escapes a JSON string strings together, a lone surrogate's escape is found
    exactly when orjson refuses the line."""
    line = b'{"a": "' + b"".join(pieces) + b'"}'
    assert lone_surrogate_escape_in(line) is orjson_refuses(line)
