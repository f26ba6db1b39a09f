"""LEEF 2.0: exact lines for small events, each replacement, each option and each refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from format_events import make_event
from format_parsers import parse_leef
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import DEV_TIME_FORMAT, LeefFormatter, leef_delimiter, to_leef

HEAD = "LEEF:2.0|Xavyo|IDP|0.1.0|USER_LOGIN|x09|"
FIXED = (
    "devTime=2024-05-01T12:34:56.789Z\tdevTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
    "\tcat=authentication\tsev=3\teventId=7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37"
    "\ttenantId=0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58"
)


def test_minimal_event_is_the_header_and_the_fixed_attributes() -> None:
    """An event with only the required fields is the header, the time pair, cat, sev, ids."""
    assert to_leef(make_event()) == HEAD + FIXED


def test_every_field_has_its_attribute_in_order() -> None:
    """Each optional field is written under its documented key, in the documented order."""
    event = make_event(
        event_name="User login",
        action="login",
        outcome="success",
        actor_id="usr_1",
        actor_email="a@example.com",
        target_user="bob",
        target_resource="app:crm",
        source_ip="192.0.2.7",
        source_address="gateway-7",
        reason="ok",
        user_agent="curl/8",
        session_id="s1",
        request_id="r1",
        metadata={"geo": "FR"},
        normalized=("source_ip",),
    )
    assert to_leef(event) == HEAD + FIXED + (
        "\teventName=User login\taction=login\toutcome=success\tusrName=a@example.com"
        "\tactorId=usr_1\ttargetUser=bob\tresource=app:crm\tsrc=192.0.2.7"
        "\tsourceAddress=gateway-7\treason=ok\tuserAgent=curl/8\tsessionId=s1\trequestId=r1"
        '\tmetadata={"geo":"FR"}\tnormalized=source_ip'
    )


def test_usr_name_is_the_actor_id_when_there_is_no_email() -> None:
    """Without an email, usrName carries the actor id (and actorId too)."""
    assert to_leef(make_event(actor_id="usr_1")).endswith("\tusrName=usr_1\tactorId=usr_1")


def test_severity_zero_is_written_one_and_ten_stays_ten() -> None:
    """LEEF's sev scale is 1-10: severity 0 becomes 1, the others are kept."""
    assert "\tsev=1\t" in to_leef(make_event(severity=0))
    assert "\tsev=10\t" in to_leef(make_event(severity=10))


def test_dev_time_is_utc_milliseconds_rounded_down_with_its_pattern() -> None:
    """devTime keeps milliseconds (rounded down), in UTC, and names its Java pattern."""
    event = make_event(timestamp=datetime(1, 1, 1, 0, 0, 0, 999, tzinfo=UTC))
    attributes = parse_leef(to_leef(event)).attributes
    assert attributes["devTime"] == "0001-01-01T00:00:00.000Z"
    assert attributes["devTimeFormat"] == DEV_TIME_FORMAT


def test_ipv6_zone_index_goes_to_its_own_attribute() -> None:
    """src holds the address without zone; sourceAddressScoped holds the text exactly."""
    line = to_leef(make_event(source_ip="fe80::1%eth0"))
    assert line.endswith("\tsrc=fe80::1\tsourceAddressScoped=fe80::1%eth0")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\tb", "a\u2409b"),  # TAB: the delimiter
        ("a\r\nb", "a\u240d\u240ab"),  # CR LF pictured
        ("a\x01\x1b\x7fb", "a\u2401\u241b\u2421b"),  # C0 and DEL pictured
        ("a\x85b", "a\ufffdb"),  # C1 replaced
        ("a=b|c^d", "a=b|c^d"),  # nothing else needs a thing
        ("zoë 🔐", "zoë 🔐"),
    ],
)
def test_values_replace_what_leef_cannot_carry_visibly(text: str, shown: str) -> None:
    """Each character that could end a value or a line is replaced by a visible one."""
    assert parse_leef(to_leef(make_event(reason=text))).attributes["reason"] == shown


def test_a_printable_delimiter_in_a_value_becomes_its_fullwidth_form() -> None:
    """With `^` as delimiter, `^` in a value is U+FF3E, and TAB is still pictured."""
    line = to_leef(make_event(reason="a^b\tc"), delimiter="^")
    assert line.endswith("^reason=a\uff3eb\u2409c")
    assert parse_leef(line).attributes["reason"] == "a\uff3eb\u2409c"


def test_header_event_id_replaces_pipes_and_controls() -> None:
    """The event type in the header has `|` as U+FF5C and controls pictured."""
    record = parse_leef(to_leef(make_event(event_type="A|B\tC\nD")))
    assert record.event_id == "A\uff5cB\u2409C\u240aD"


def test_header_event_id_writes_a_printable_delimiter_fullwidth() -> None:
    """With `^` as delimiter, `^` in the event type is U+FF3E in the header too."""
    line = to_leef(make_event(event_type="A^B"), delimiter="^")
    assert line.startswith("LEEF:2.0|Xavyo|IDP|0.1.0|A\uff3eB|^|devTime=")


def test_metadata_is_exact_json_without_controls() -> None:
    """Metadata JSON escapes TAB and C0 itself, and DEL/C1 as \\u escapes: no raw control."""
    line = to_leef(make_event(metadata={"k\t": "v\x7f\x85"}))
    assert line.endswith('\tmetadata={"k\\t":"v\\u007f\\u0085"}')


@pytest.mark.parametrize(
    ("given", "char", "declared"),
    [("x09", "\t", "x09"), ("\t", "\t", "x09"), ("^", "^", "^"), ("0x5E", "^", "^"),
     ("x7c", None, None), ("x3D", None, None), ("a", None, None), ("", None, None),
     ("^^", None, None), (9, None, None)],
)  # fmt: skip
def test_delimiter_option_accepts_tab_and_punctuation_only(
    given: Any, char: str | None, declared: str | None
) -> None:
    """TAB or punctuation, as the character or its hex code; `|`, `=`, letters are refused."""
    if char is None:
        with pytest.raises(EncodeError) as info:
            LeefFormatter(delimiter=given)
        assert info.value.field == "delimiter"
        return
    assert leef_delimiter(given) == char
    line = LeefFormatter(delimiter=given)(make_event())
    assert line.startswith(f"LEEF:2.0|Xavyo|IDP|0.1.0|USER_LOGIN|{declared}|devTime=")
    assert parse_leef(line).delimiter == char


def test_version_option_sets_the_header_version() -> None:
    """`version` is the header's Version field."""
    assert LeefFormatter(version="7.1")(make_event()).startswith("LEEF:2.0|Xavyo|IDP|7.1|")


@pytest.mark.parametrize("version", ["", "  ", "1|2", "1\n2", "v" * 101, 3])
def test_bad_versions_are_refused_naming_the_option(version: Any) -> None:
    """An empty, piped, multi-line, over-long or non-text version raises EncodeError."""
    with pytest.raises(EncodeError) as info:
        LeefFormatter(version=version)
    assert info.value.field == "version"


def test_a_lone_surrogate_is_an_encode_error() -> None:
    """An unvalidated event holding a lone surrogate cannot be written as UTF-8."""
    event = make_event()
    object.__setattr__(event, "reason", "a\ud800")
    with pytest.raises(EncodeError):
        to_leef(event)
