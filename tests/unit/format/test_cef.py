"""CEF: golden lines, the CEF guide's escaping rules, hostile events, length caps."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from format_events import make_event
from format_parsers import parse_cef
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import (
    CefFormatter,
    escape_cef_extension_value,
    escape_cef_header,
    make_formatter,
    to_cef,
)
from xavyo_siem.model import ExportFormat

FULL = make_event(
    severity=3,
    event_name="User login",
    action="login",
    outcome="success",
    actor_id="usr_1",
    actor_email="alice@example.com",
    source_ip="203.0.113.7",
    user_agent="Mozilla/5.0 (X11)",
    target_user="bob@example.com",
    target_resource="app:crm",
    reason="ok",
    session_id="sess_1",
    request_id="req_1",
    metadata={"auth_method": "password"},
)


def test_golden_full_event() -> None:
    """Every field lands in its documented key, in the documented order, with rt in epoch ms."""
    assert to_cef(FULL, version="1.0") == (
        "CEF:0|Xavyo|IDP|1.0|USER_LOGIN|User login|3|rt=1714566896789"
        " externalId=7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37 cat=authentication act=login"
        " outcome=success suser=alice@example.com suid=usr_1 duser=bob@example.com"
        " src=203.0.113.7 reason=ok requestClientApplication=Mozilla/5.0 (X11)"
        " cs1Label=tenantId cs1=0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58"
        " cs2Label=sessionId cs2=sess_1 cs3Label=requestId cs3=req_1"
        " cs4Label=targetResource cs4=app:crm"
        ' cs5Label=metadata cs5={"auth_method":"password"}'
    )


def test_golden_minimal_event() -> None:
    """A required-fields-only event has no optional key, and Name falls back to the type."""
    line = to_cef(make_event(), version="1.0")
    assert line == (
        "CEF:0|Xavyo|IDP|1.0|USER_LOGIN|USER_LOGIN|3|rt=1714566896789"
        " externalId=7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37 cat=authentication"
        " cs1Label=tenantId cs1=0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58"
    )


def test_default_version_is_the_package_version() -> None:
    """Without options the Device Version header field is xavyo_siem.__version__."""
    import xavyo_siem

    assert parse_cef(to_cef(make_event())).device_version == xavyo_siem.__version__


def test_rt_zero_at_the_epoch_is_kept() -> None:
    """An event at the Unix epoch is written rt=0 (0 is a valid time)."""
    line = to_cef(make_event(timestamp=datetime(1970, 1, 1, tzinfo=UTC)))
    assert parse_cef(line).extension["rt"] == "0"


def test_rt_rounds_down_before_the_epoch() -> None:
    """Milliseconds are rounded towards the past, also for times before 1970."""
    line = to_cef(make_event(timestamp=datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)))
    assert parse_cef(line).extension["rt"] == "-1"


def test_key_injection_in_a_value_is_escaped() -> None:
    """`alice act=allowed` in a value becomes `alice act\\=allowed` and forges no key."""
    line = to_cef(make_event(actor_email="alice act=allowed"))
    assert "suser=alice act\\=allowed" in line
    record = parse_cef(line)
    assert record.extension["suser"] == "alice act=allowed"
    assert "act" not in record.extension


def test_pipe_in_the_extension_is_not_escaped() -> None:
    """A `|` in an extension value stays literal (`\\|` would be an invalid escape there)."""
    line = to_cef(make_event(reason="a|b"))
    assert " reason=a|b " in line


def test_pipe_and_backslash_in_the_header_are_escaped() -> None:
    """In the header `\\` becomes `\\\\` and `|` becomes `\\|`, and `=` stays literal."""
    line = to_cef(make_event(event_type="A|B\\C=D", event_name="x|y"))
    assert line.startswith("CEF:0|Xavyo|IDP|0.1.0|A\\|B\\\\C=D|x\\|y|3|")
    record = parse_cef(line)
    assert (record.signature_id, record.name) == ("A|B\\C=D", "x|y")


def test_value_ending_in_a_backslash_keeps_the_separator() -> None:
    """A value ending in `\\` ends in `\\\\`, so the escape does not swallow the next pair."""
    line = to_cef(make_event(reason="C:\\", session_id="s"))
    assert "reason=C:\\\\ " in line
    assert parse_cef(line).extension["reason"] == "C:\\"


def test_newlines_in_values_are_escaped_and_removed_from_the_header() -> None:
    """CR/LF become `\\r` `\\n` in values and are removed from header fields: one line."""
    line = to_cef(make_event(event_type="LOG\r\nIN", reason="a\r\nCEF:0|forged|x|1|2|3|4|"))
    assert "\n" not in line
    assert "\r" not in line
    record = parse_cef(line)
    assert record.signature_id == "LOGIN"
    assert record.extension["reason"] == "a\r\nCEF:0|forged|x|1|2|3|4|"


def test_other_controls_are_replaced_visibly() -> None:
    """ESC, DEL, C1 NEL and other C0 controls become pictures or U+FFFD; TAB is kept."""
    line = to_cef(make_event(event_type="T\x1b\x7f", reason="a\x01b\tc\x85d\x7f"))
    record = parse_cef(line)
    assert record.signature_id == "T\u241b\u2421"
    assert record.extension["reason"] == "a\u2401b\tc\ufffdd\u2421"


def test_escape_functions_handle_nul_and_every_c0_c1_control() -> None:
    """NUL and each C0/C1 control (which no model event can hold) are pictured, never raw."""
    controls = "".join(chr(c) for c in range(0x20) if c not in (9, 10, 13))
    controls += "\x7f" + "".join(chr(c) for c in range(0x80, 0xA0))
    header = escape_cef_header(controls)
    value = escape_cef_extension_value(controls)
    assert header == value
    assert header.startswith("\u2400\u2401")
    assert all(not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) for c in header)
    assert escape_cef_extension_value("\x00=\\") == "\u2400\\=\\\\"


def test_escape_functions_leave_clean_text_untouched() -> None:
    """Text without special characters comes back as the same object (the fast path)."""
    text = "plain text with spaces, é and 😀"
    assert escape_cef_header(text) is text
    assert escape_cef_extension_value(text) is text


def test_ipv4_goes_to_src() -> None:
    """An IPv4 source is written in `src`, and no IPv6 slot appears."""
    ext = parse_cef(to_cef(make_event(source_ip="198.51.100.4"))).extension
    assert ext["src"] == "198.51.100.4"
    assert "c6a2" not in ext


def test_ipv6_goes_to_the_labelled_ipv6_slot() -> None:
    """An IPv6 source is written in `c6a2` with its label, never in the IPv4 `src`."""
    ext = parse_cef(to_cef(make_event(source_ip="2001:db8::1"))).extension
    assert (ext["c6a2"], ext["c6a2Label"]) == ("2001:db8::1", "sourceIPv6Address")
    assert "src" not in ext
    assert "cs6" not in ext


def test_ipv6_zone_index_is_kept_out_of_the_typed_key() -> None:
    """`fe80::1%eth0` puts `fe80::1` in `c6a2` and the exact text in the labelled `cs6`."""
    ext = parse_cef(to_cef(make_event(source_ip="fe80::1%eth0"))).extension
    assert ext["c6a2"] == "fe80::1"
    assert (ext["cs6Label"], ext["cs6"]) == ("sourceAddressScoped", "fe80::1%eth0")


def test_hostile_zone_index_is_escaped() -> None:
    """A zone index holding `=`, `\\`, space and LF (which the model accepts) forges nothing."""
    ip = "fe80::1%e th=0\\\nx"
    ext = parse_cef(to_cef(make_event(source_ip=ip))).extension
    assert ext["cs6"] == ip
    assert ext["c6a2"] == "fe80::1"


def test_metadata_is_one_json_string_whatever_its_keys() -> None:
    """Metadata keys with spaces, `=` and quotes stay inside the one cs5 JSON value."""
    metadata = {"a key": "v", "k=v": "x=y", 'q"': "\\", "ctl": "\x7f\x85\x01"}
    ext = parse_cef(to_cef(make_event(metadata=metadata))).extension
    assert ext["cs5Label"] == "metadata"
    assert json.loads(ext["cs5"]) == metadata
    assert {k for k in ext if k.startswith("cs")} == {"cs1", "cs1Label", "cs5", "cs5Label"}


def test_empty_metadata_leaves_cs5_out() -> None:
    """An event without metadata has no cs5 key at all."""
    assert "cs5" not in parse_cef(to_cef(make_event(metadata={}))).extension


def test_empty_strings_are_written_as_empty_values() -> None:
    """Present-but-empty fields are kept as empty values and parse back as empty strings."""
    ext = parse_cef(to_cef(make_event(action="", reason="", session_id=""))).extension
    assert (ext["act"], ext["reason"], ext["cs2"]) == ("", "", "")


def test_empty_event_name_falls_back_to_the_event_type() -> None:
    """A blank (or newline-only) event name never makes an empty header field."""
    for name in ("", "\r\n", "   "):
        assert parse_cef(to_cef(make_event(event_name=name))).name == "USER_LOGIN"


def test_emoji_and_non_ascii_pass_through() -> None:
    """Emoji, accents and CJK are written as they are (CEF is UTF-8)."""
    text = "zoë 😀 東京 \u2028"
    record = parse_cef(to_cef(make_event(event_name=text, reason=text)))
    assert record.name == text
    assert record.extension["reason"] == text


def test_100_kb_values_are_cut_to_their_caps_with_a_mark() -> None:
    """100 KB values are cut before escaping to their dictionary caps and end in "…"."""
    big = "a=" * 50_000
    ext = parse_cef(to_cef(make_event(action=big, reason=big, session_id=big))).extension
    assert len(ext["act"]) == 63
    assert len(ext["reason"]) == 1023
    assert len(ext["cs2"]) == 4000
    for key in ("act", "reason", "cs2"):
        assert ext[key].endswith("\u2026")
        assert big.startswith(ext[key][:-1])


def test_caps_count_characters_and_never_split_an_emoji_sequence() -> None:
    """A cut falls before a ZWJ family emoji or a flag, not inside it."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    reason = "x" * 1020 + family
    assert parse_cef(to_cef(make_event(reason=reason))).extension["reason"] == "x" * 1020 + "\u2026"
    flags = "x" * 1021 + "\U0001f1eb\U0001f1f7 tail"
    assert parse_cef(to_cef(make_event(reason=flags))).extension["reason"] == "x" * 1021 + "\u2026"


def test_cut_does_not_split_a_combining_sequence() -> None:
    """An `e` followed by a combining accent at the cap is dropped whole, not split."""
    reason = "x" * 1021 + "e\u0301 tail"
    assert parse_cef(to_cef(make_event(reason=reason))).extension["reason"] == "x" * 1021 + "\u2026"


def test_cs_cap_is_an_option() -> None:
    """cs_max_chars=1023 caps csN values at 1023 characters for older consumers."""
    line = CefFormatter(cs_max_chars=1023)(make_event(session_id="s" * 5000))
    assert len(parse_cef(line).extension["cs2"]) == 1023


def test_long_header_fields_are_cut() -> None:
    """Signature ID and Name are cut to ArcSight's 1023 and 512 characters."""
    record = parse_cef(to_cef(make_event(event_type="T" * 5000, event_name="N" * 5000)))
    assert len(record.signature_id) == 1023
    assert len(record.name) == 512


def test_severity_is_the_integer() -> None:
    """The Severity header field is the event's 0-10 integer."""
    for severity in (0, 10):
        assert parse_cef(to_cef(make_event(severity=severity))).severity == str(severity)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"version": ""}, "version"),
        ({"version": "1|2\n"}, "version"),
        ({"version": "v" * 40}, "version"),
        ({"cs_max_chars": 10}, "cs_max_chars"),
        ({"cs_max_chars": "4000"}, "cs_max_chars"),
    ],
)
def test_bad_options_raise_encode_error(options: dict[str, Any], field: str) -> None:
    """Invalid options are refused when the formatter is built, naming the option."""
    with pytest.raises(EncodeError) as info:
        CefFormatter(**options)
    assert info.value.field == field


def test_pipe_in_version_option_is_escaped() -> None:
    """A `|` in the version option is escaped like any header field."""
    assert parse_cef(to_cef(make_event(), version="1|2")).device_version == "1|2"


def test_naive_timestamp_from_an_unvalidated_event_raises() -> None:
    """An event built without validation and holding a naive time raises EncodeError."""
    event = dataclasses.replace(make_event())
    object.__setattr__(event, "timestamp", datetime(2024, 1, 1))
    with pytest.raises(EncodeError) as info:
        to_cef(event)
    assert info.value.field == "timestamp"


def test_make_formatter_builds_a_cef_formatter() -> None:
    """make_formatter('cef', {'version': ...}) gives the same line as to_cef with that option."""
    assert make_formatter(ExportFormat.CEF, {"version": "9"})(FULL) == to_cef(FULL, version="9")


def test_header_cache_does_not_mix_event_kinds() -> None:
    """One formatter writes the right header for different types, names and severities."""
    formatter = CefFormatter()
    a = parse_cef(formatter(make_event(event_type="A", event_name="x", severity=1)))
    b = parse_cef(formatter(make_event(event_type="A", event_name="y", severity=2)))
    c = parse_cef(formatter(make_event(event_type="B", event_name="x", severity=1)))
    assert [(r.signature_id, r.name, r.severity) for r in (a, b, c)] == [
        ("A", "x", "1"),
        ("A", "y", "2"),
        ("B", "x", "1"),
    ]


def test_header_cache_is_bounded() -> None:
    """Many distinct or huge event types never grow the per-kind header cache without bound."""
    formatter = CefFormatter()
    for index in range(5000):
        formatter(make_event(event_type=f"T{index}"))
    formatter(make_event(event_type="H" * 100_000))
    assert 0 < len(formatter._headers) <= 4096
    assert all(len(key[0]) <= 512 for key in formatter._headers)


def test_values_that_look_like_keys_do_not_confuse_the_encoder() -> None:
    """A value equal to a key text of the encoder (` cs5Label=metadata cs5=`) stays a value."""
    text = " cs5Label=metadata cs5="
    metadata = {"ctl": "\x7f"}  # forces the escaping path, which rewrites the metadata value
    ext = parse_cef(to_cef(make_event(reason=text, actor_id=text, metadata=metadata))).extension
    assert ext["reason"] == text
    assert ext["suid"] == text
    assert json.loads(ext["cs5"]) == metadata
