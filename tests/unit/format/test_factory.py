"""The formatter factory: syslog transports, text option values, options that do not apply."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from format_events import make_event
from format_parsers import parse_json_line
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import (
    FORMAT_OPTIONS,
    JSON_OBJECT_FORMATS,
    CefFormatter,
    CsvFormatter,
    LeefFormatter,
    OcsfFormatter,
    SyslogFormatter,
    make_formatter,
    read_format_options,
    to_csv,
    to_ecs,
    to_json,
)
from xavyo_siem.model import ExportFormat


@pytest.mark.parametrize(
    ("fmt", "body"),
    [("cef", "cef"), ("json", "json"), ("syslog", "json"), ("csv", "json"), ("ocsf", "ocsf"),
     ("leef", "leef"), ("ecs", "ecs")],
)  # fmt: skip
def test_over_a_syslog_transport_every_record_is_an_rfc5424_message(
    fmt: str, body: Literal["cef", "json", "ocsf", "leef", "ecs"]
) -> None:
    """Over syslog the MSG is the CEF, OCSF, LEEF or ECS record for those formats, else the
    JSON."""
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
    assert make_formatter("leef", {"delimiter": "^"})(event) == LeefFormatter(delimiter="^")(event)
    assert make_formatter(ExportFormat.ECS) is to_ecs


def test_leef_over_syslog_takes_its_delimiter() -> None:
    """Over syslog, the leef format's `delimiter` option is the delimiter of the LEEF MSG."""
    event = make_event()
    formatter = make_formatter("leef", {"delimiter": "x5e", "app_name": "a"}, syslog_transport=True)
    message = formatter(event)
    assert message == SyslogFormatter(body="leef", leef_delimiter="^", app_name="a")(event)
    assert message.endswith(LeefFormatter(delimiter="^")(event))


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
        ("leef", {"delimiter": "="}, False, "delimiter"),
        ("leef", {"delimiter": "|"}, True, "delimiter"),
        ("leef", {"cs_max_chars": "1023"}, False, "cs_max_chars"),
        ("cef", {"delimiter": "^"}, True, "delimiter"),
        ("ecs", {"version": "1"}, False, "version"),
        ("ecs", {"delimiter": "^"}, True, "delimiter"),
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
    """A destination's format options: the RFC 5424 header settings, the CSV guard, and the
    LEEF delimiter."""
    names = ("hostname", "app_name", "procid", "facility", "enterprise_number", "formula_guard")
    assert frozenset((*names, "delimiter")) == FORMAT_OPTIONS
    assert FORMAT_OPTIONS <= SyslogFormatter.OPTIONS | CsvFormatter.OPTIONS | LeefFormatter.OPTIONS


@pytest.mark.parametrize("fmt", list(ExportFormat), ids=lambda f: f.value)
def test_json_record_formats_are_exactly_those_whose_records_are_json_objects(
    fmt: ExportFormat,
) -> None:
    """HTTP transports embed a format's records as objects exactly when they are JSON objects."""
    record = make_formatter(fmt)(make_event())
    try:
        parse_json_line(record)
        is_object = True
    except ValueError:
        is_object = False
    assert is_object == (fmt in JSON_OBJECT_FORMATS)
