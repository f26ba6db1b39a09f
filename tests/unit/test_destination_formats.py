"""A destination's format settings: LEEF's delimiter and ECS, checked without I/O."""

from __future__ import annotations

from typing import Any

import pytest

from format_events import make_event
from format_parsers import check_ecs_document, parse_leef, parse_syslog
from xavyo_siem.destinations import DestinationSpec, check_destination
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType, ExportFormat


def spec(fmt: ExportFormat, delivery_type: DeliveryType, **options: Any) -> DestinationSpec:
    endpoints = {
        DeliveryType.SYSLOG_TCP: "tcp://siem.example.com:6514",
        DeliveryType.WEBHOOK: "https://siem.example.com/hook",
    }
    return DestinationSpec(
        name="soc",
        delivery_type=delivery_type,
        format=fmt,
        endpoint=endpoints[delivery_type],
        options=options,
    )


def test_a_leef_syslog_destination_takes_its_delimiter() -> None:
    """LEEF over syslog with `delimiter=^`: RFC 5424 messages whose MSG uses `^`."""
    checked = check_destination(
        spec(ExportFormat.LEEF, DeliveryType.SYSLOG_TCP, delimiter="^", hostname="idp1"),
        development=False,
    )
    message = parse_syslog(checked.formatter(make_event()))
    assert message.hostname == "idp1"
    assert message.msg is not None
    assert parse_leef(message.msg).delimiter == "^"


def test_an_ecs_webhook_destination_writes_ecs_documents() -> None:
    """ECS over a webhook: each record is one ECS document."""
    checked = check_destination(spec(ExportFormat.ECS, DeliveryType.WEBHOOK), development=False)
    assert check_ecs_document(checked.formatter(make_event()))["ecs.version"] == "9.4.0"


@pytest.mark.parametrize(
    ("fmt", "delivery_type", "delimiter"),
    [
        (ExportFormat.LEEF, DeliveryType.WEBHOOK, "="),
        (ExportFormat.LEEF, DeliveryType.SYSLOG_TCP, "ab"),
        (ExportFormat.CEF, DeliveryType.SYSLOG_TCP, "^"),
        (ExportFormat.ECS, DeliveryType.WEBHOOK, "^"),
    ],
)
def test_a_bad_or_foreign_delimiter_is_refused_naming_it(
    fmt: ExportFormat, delivery_type: DeliveryType, delimiter: str
) -> None:
    """A bad delimiter, or one given to a format without delimiters, names options.delimiter."""
    with pytest.raises(InvalidDestination) as info:
        check_destination(spec(fmt, delivery_type, delimiter=delimiter), development=False)
    assert info.value.field == "options.delimiter"
