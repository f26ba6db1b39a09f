"""The formatter factory: syslog transports, text option values, options that do not apply."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from format_events import make_event
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import (
    FORMAT_OPTIONS,
    CefFormatter,
    CsvFormatter,
    OcsfFormatter,
    SyslogFormatter,
    make_formatter,
    read_format_options,
    to_csv,
    to_json,
)
from xavyo_siem.model import ExportFormat


@pytest.mark.parametrize(
    ("fmt", "body"),
    [("cef", "cef"), ("json", "json"), ("syslog", "json"), ("csv", "json"), ("ocsf", "ocsf")],
)
def test_over_a_syslog_transport_every_record_is_an_rfc5424_message(
    fmt: str, body: Literal["cef", "json", "ocsf"]
) -> None:
    """Over syslog the record is RFC 5424 with the CEF line as MSG for cef, the OCSF event
    for ocsf, else the JSON."""
    event = make_event()
    formatter = make_formatter(fmt, {"hostname": "idp1", "facility": "10"}, syslog_transport=True)
    assert formatter(event) == SyslogFormatter(body=body, hostname="idp1", facility=10)(event)


def test_without_a_syslog_transport_each_format_is_its_own_record() -> None:
    """Elsewhere cef is the CEF line, json the event object, csv the row, ocsf the OCSF event
    with its product version option."""
    event = make_event(reason="=1")
    assert make_formatter(ExportFormat.CEF)(event) == CefFormatter()(event)
    assert make_formatter(ExportFormat.JSON) is to_json
    assert make_formatter("csv")(event) == to_csv(event)
    assert make_formatter("ocsf")(event) == OcsfFormatter()(event)
    versioned = make_formatter("ocsf", {"version": "2.4.1"})(event)
    assert versioned == OcsfFormatter(version="2.4.1")(event)
    assert '"version":"2.4.1"' in versioned


@pytest.mark.parametrize(
    ("options", "read"),
    [
        (
            {"facility": " 10 ", "enterprise_number": "32473"},
            {"facility": 10, "enterprise_number": 32473},
        ),
        ({"cs_max_chars": "1023"}, {"cs_max_chars": 1023}),
        ({"formula_guard": "No"}, {"formula_guard": False}),
        ({"formula_guard": "on"}, {"formula_guard": True}),
        (
            {"formula_guard": "perhaps", "facility": "ten"},
            {"formula_guard": "perhaps", "facility": "ten"},
        ),
        ({"hostname": "10", "facility": 3}, {"hostname": "10", "facility": 3}),
    ],
)
def test_text_option_values_are_read_as_their_types(
    options: dict[str, Any], read: dict[str, Any]
) -> None:
    """Integer and boolean options given as text are read; text that does not read is kept."""
    assert read_format_options(options) == read


@pytest.mark.parametrize(
    ("fmt", "options", "syslog_transport", "field"),
    [
        ("csv", {"formula_guard": "perhaps"}, False, "formula_guard"),
        ("syslog", {"facility": "ten"}, False, "facility"),
        ("syslog", {"facility": "24"}, True, "facility"),
        ("json", {"formula_guard": "false"}, True, "formula_guard"),
        ("cef", {"hostname": "h"}, False, "hostname"),
        ("csv", {"colour": "red"}, False, "colour"),
        ("ocsf", {"version": " "}, False, "version"),
        ("ocsf", {"formula_guard": "false"}, False, "formula_guard"),
        ("ocsf", {"version": "2.4.1"}, True, "version"),
    ],
)
def test_bad_or_foreign_options_raise_encode_error_naming_them(
    fmt: str, options: dict[str, Any], syslog_transport: bool, field: str
) -> None:
    """A bad value, or an option the format does not take, is refused with its name."""
    with pytest.raises(EncodeError) as info:
        make_formatter(fmt, options, syslog_transport=syslog_transport)
    assert info.value.field == field


def test_format_options_are_the_ones_a_destination_may_set() -> None:
    """A destination's format options: the RFC 5424 header settings and the CSV guard."""
    names = ("hostname", "app_name", "procid", "facility", "enterprise_number", "formula_guard")
    assert frozenset(names) == FORMAT_OPTIONS
    assert FORMAT_OPTIONS <= SyslogFormatter.OPTIONS | CsvFormatter.OPTIONS
