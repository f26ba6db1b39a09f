"""RFC 5424: golden messages, PRI and the severity map, header sanitising, SD escaping, BOM."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from format_events import EVENT_ID, make_event
from format_parsers import parse_cef, parse_json_line, parse_syslog
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import (
    SYSLOG_SEVERITY,
    SyslogFormatter,
    escape_sd_param_value,
    make_formatter,
    sanitize_header_field,
    to_json,
    to_syslog,
)
from xavyo_siem.model import ExportFormat


def test_golden_message_with_json_body() -> None:
    """The documented layout: PRI 110 (log audit + info), µs UTC time, SD, then the JSON."""
    event = make_event(action="login", outcome="success", actor_id="usr_1", source_ip="203.0.113.7")
    message = to_syslog(event, hostname="idp1.example.com", procid=42)
    assert message == (
        "<110>1 2024-05-01T12:34:56.789000Z idp1.example.com xavyo-siem 42 USER_LOGIN"
        ' [xavyo@32473 eventId="7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37"'
        ' tenantId="0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58" eventType="USER_LOGIN"'
        ' category="authentication" severity="3" outcome="success" action="login"'
        ' actorId="usr_1" sourceIp="203.0.113.7"] ' + to_json(event)
    )


def test_golden_message_with_cef_body() -> None:
    """With body='cef' the MSG is exactly the CEF line, so collectors find `CEF:`."""
    event = make_event()
    message = to_syslog(event, body="cef")
    record = parse_syslog(message)
    assert record.msg is not None
    assert record.msg.startswith("CEF:0|Xavyo|IDP|")
    assert parse_cef(record.msg).extension["externalId"] == str(EVENT_ID)


def test_defaults_are_nil_host_and_procid() -> None:
    """Without options HOSTNAME and PROCID are `-` and APP-NAME is xavyo-siem."""
    record = parse_syslog(to_syslog(make_event()))
    assert (record.hostname, record.app_name, record.procid) == (None, "xavyo-siem", None)


def test_pri_golden_values() -> None:
    """log audit + info = 110 and authpriv + notice = 85 (RFC 5424 section 6.2.1)."""
    assert parse_syslog(to_syslog(make_event(severity=3))).pri == 110
    assert parse_syslog(to_syslog(make_event(severity=4), facility=10)).pri == 85


def test_severity_map_is_complete_and_never_debug_or_emergency() -> None:
    """Every 0-10 severity maps, monotonically, into syslog 1..6."""
    assert sorted(SYSLOG_SEVERITY) == list(range(11))
    values = [SYSLOG_SEVERITY[s] for s in range(11)]
    assert values == sorted(values, reverse=True)
    assert set(values) <= set(range(1, 7))


def test_severity_map_table() -> None:
    """The documented table: 0-3 info, 4-5 notice, 6-7 warning, 8 err, 9 crit, 10 alert."""
    assert SYSLOG_SEVERITY == {
        0: 6, 1: 6, 2: 6, 3: 6, 4: 5, 5: 5, 6: 4, 7: 4, 8: 3, 9: 2, 10: 1,
    }  # fmt: skip


def test_pri_of_every_facility_and_severity_stays_in_range() -> None:
    """PRI = facility*8 + mapped severity, never over 191, for all 24 facilities."""
    for facility in range(24):
        formatter = SyslogFormatter(facility=facility)
        for severity in range(11):
            pri = parse_syslog(formatter(make_event(severity=severity))).pri
            assert pri == facility * 8 + SYSLOG_SEVERITY[severity] <= 191


def test_timestamp_has_microseconds_and_z() -> None:
    """The timestamp has six fraction digits and Z, also on a whole second and before 1000."""
    cases = {
        datetime(2024, 1, 1, tzinfo=UTC): "2024-01-01T00:00:00.000000Z",
        datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC): "2024-01-01T00:00:00.000005Z",
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC): "0999-12-31T23:59:59.999999Z",
    }
    for moment, text in cases.items():
        assert parse_syslog(to_syslog(make_event(timestamp=moment))).timestamp == text


def test_msgid_is_sanitised_and_capped_and_sd_keeps_the_exact_type() -> None:
    """A hostile event type becomes a 32-character printable MSGID; SD holds the exact type."""
    event_type = 'user login "é" ]\n' + "X" * 40
    record = parse_syslog(to_syslog(make_event(event_type=event_type)))
    assert record.msgid == 'user_login_"_"_]_' + "X" * 15
    assert record.sd["xavyo@32473"]["eventType"] == ['user login "é" ]\u240a' + "X" * 40]


def test_header_options_are_sanitised_and_capped() -> None:
    """HOSTNAME, APP-NAME and PROCID lose spaces and non-ASCII and are cut to 255/48/128."""
    formatter = SyslogFormatter(
        hostname="h ö" + "h" * 300, app_name="my app" * 20, procid="p" * 200
    )
    record = parse_syslog(formatter(make_event()))
    assert record.hostname == "h__" + "h" * 252
    assert record.app_name == ("my_app" * 20)[:48]
    assert record.procid == "p" * 128


def test_empty_header_options_become_nil() -> None:
    """Empty options are written as the NILVALUE `-`."""
    record = parse_syslog(to_syslog(make_event(), hostname="", app_name=""))
    assert (record.hostname, record.app_name) == (None, None)


def test_sanitize_header_field_examples() -> None:
    """Printable ASCII stays, everything else becomes `_`, and empty becomes `-`."""
    assert sanitize_header_field("a b\tc\x00é", 32) == "a_b_c__"
    assert sanitize_header_field("", 32) == "-"
    assert sanitize_header_field("abcdef", 3) == "abc"


def test_sd_param_value_escaping() -> None:
    """`"`, `\\` and `]` are escaped; `=`, `[`, spaces and non-ASCII are kept (RFC 5424 6.3.3)."""
    assert escape_sd_param_value('a"b\\c]d=e[f g é') == 'a\\"b\\\\c\\]d=e[f g é'


def test_sd_param_value_pictures_controls_and_newlines() -> None:
    """NUL, CR, LF, ESC, DEL and C1 are pictured in PARAM-VALUEs; TAB stays."""
    assert (
        escape_sd_param_value("\x00\r\n\x1b\x7f\x85\t") == "\u2400\u240d\u240a\u241b\u2421\ufffd\t"
    )


def test_sd_breakout_attempt_forges_nothing() -> None:
    """A value that tries to close the element and open another stays one parameter."""
    actor = 'x"] [origin ip="6.6.6.6"] [xavyo@32473 eventId="forged'
    record = parse_syslog(to_syslog(make_event(actor_id=actor)))
    assert list(record.sd) == ["xavyo@32473"]
    assert record.sd["xavyo@32473"]["actorId"] == [actor]
    assert record.sd["xavyo@32473"]["eventId"] == [str(EVENT_ID)]


def test_newline_injection_stays_one_message() -> None:
    """CR/LF in any field never reaches the message raw (LF framing stays safe)."""
    text = "a\r\n<14>1 - - forged - - - x"
    message = to_syslog(
        make_event(event_type=text, actor_id=text, reason=text, metadata={text: text})
    )
    assert "\n" not in message
    assert "\r" not in message
    record = parse_syslog(message)
    assert record.msg is not None
    assert parse_json_line(record.msg)["reason"] == text


def test_bom_only_before_non_ascii_msg() -> None:
    """MSG starts with the UTF-8 BOM exactly when it is not pure ASCII."""
    ascii_message = to_syslog(make_event(reason="plain"))
    assert "\ufeff" not in ascii_message
    assert not parse_syslog(ascii_message).bom
    record = parse_syslog(to_syslog(make_event(reason="zoë 😀")))
    assert record.bom
    assert record.msg is not None
    assert json.loads(record.msg)["reason"] == "zoë 😀"
    assert parse_syslog(to_syslog(make_event(reason="zoë"), body="cef")).bom


def test_non_ascii_in_sd_is_literal_utf8() -> None:
    """Non-ASCII in a PARAM-VALUE is written as is (SD is UTF-8), and the MSG gets its BOM."""
    record = parse_syslog(to_syslog(make_event(actor_id="ü")))
    assert record.sd["xavyo@32473"]["actorId"] == ["ü"]
    assert record.bom  # the JSON body repeats actor_id, so MSG is not ASCII either


def test_enterprise_number_is_a_setting() -> None:
    """The SD-ID carries the configured Private Enterprise Number."""
    record = parse_syslog(to_syslog(make_event(), enterprise_number=61234))
    assert list(record.sd) == ["xavyo@61234"]


def test_absent_fields_are_left_out_of_sd() -> None:
    """Only present fields appear as SD params; free text stays in MSG only."""
    params = parse_syslog(to_syslog(make_event(reason="r", user_agent="ua"))).sd["xavyo@32473"]
    assert list(params) == ["eventId", "tenantId", "eventType", "category", "severity"]


def test_100_kb_values_stay_whole_in_one_message() -> None:
    """RFC 5424 has no length cap: a 100 KB value is carried whole in SD and MSG."""
    big = '"]\\' * 34_000
    record = parse_syslog(to_syslog(make_event(actor_id=big)))
    assert record.sd["xavyo@32473"]["actorId"] == [big]
    assert record.msg is not None
    assert parse_json_line(record.msg)["actor_id"] == big


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"facility": 24}, "facility"),
        ({"facility": -1}, "facility"),
        ({"facility": "13"}, "facility"),
        ({"enterprise_number": 0}, "enterprise_number"),
        ({"enterprise_number": "32473"}, "enterprise_number"),
        ({"body": "xml"}, "body"),
        ({"hostname": 5}, "hostname"),
        ({"procid": 1.5}, "procid"),
        ({"body": "cef", "cef_version": ""}, "version"),
    ],
)
def test_bad_options_raise_encode_error(options: dict[str, Any], field: str) -> None:
    """Invalid options are refused when the formatter is built, naming the option."""
    with pytest.raises(EncodeError) as info:
        SyslogFormatter(**options)
    assert info.value.field == field


def test_make_formatter_syslog_means_json_body() -> None:
    """make_formatter('syslog') is RFC 5424 with a JSON body."""
    event = make_event()
    assert make_formatter(ExportFormat.SYSLOG, {"hostname": "h"})(event) == to_syslog(
        event, hostname="h"
    )


def test_make_formatter_refuses_body_for_syslog() -> None:
    """The syslog format fixes the JSON body; asking for a body option is refused."""
    with pytest.raises(EncodeError) as info:
        make_formatter("syslog", {"body": "cef"})
    assert info.value.field == "body"


def test_event_type_cache_is_bounded() -> None:
    """Many distinct or huge event types never grow the per-type MSGID/SD cache without bound."""
    formatter = SyslogFormatter()
    for index in range(5000):
        formatter(make_event(event_type=f"T{index}"))
    formatter(make_event(event_type="H" * 100_000))
    assert 0 < len(formatter._kinds) <= 4096
    assert all(len(key) <= 256 for key in formatter._kinds)
