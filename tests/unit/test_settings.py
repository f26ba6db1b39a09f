"""The process settings: the export retention's duration format."""

from __future__ import annotations

from datetime import timedelta

import pytest

from xavyo_siem.settings import DEFAULT_EXPORT_RETENTION, Settings, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("3600s", timedelta(hours=1)),
        (" 2D ", timedelta(days=2)),
    ],
)
def test_a_duration_is_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    """`NUMBER UNIT` with s, m, h or d reads as that many seconds, minutes, hours or days."""
    assert parse_duration("X", text, default=timedelta(0)) == expected


@pytest.mark.parametrize("text", ["7", "0d", "-1d", "1w", "1.5h", "d", "7 d", "1e3s"])
def test_a_malformed_duration_is_refused_naming_the_setting(text: str) -> None:
    """A duration without a unit, zero, negative, fractional or in an unknown unit is refused,
    and the message names the setting."""
    with pytest.raises(ValueError, match=r"^XAVYO_SIEM_EXPORT_RETENTION: must be"):
        Settings.from_env({"XAVYO_SIEM_EXPORT_RETENTION": text})


def test_the_export_retention_defaults_to_seven_days() -> None:
    """Unset or empty, the export retention is 7 days."""
    assert Settings.from_env({}).export_retention == DEFAULT_EXPORT_RETENTION == timedelta(days=7)
    assert Settings.from_env({"XAVYO_SIEM_EXPORT_RETENTION": ""}).export_retention.days == 7
