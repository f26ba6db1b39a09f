"""The process settings: the export retention's duration format."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem.settings import DEFAULT_EXPORT_RETENTION, Settings, parse_duration

_DURATION = re.compile(r"[0-9]{1,9}[smhd]")


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


@given(st.text(max_size=30))
def test_any_text_is_a_positive_duration_or_refused_naming_the_setting(text: str) -> None:
    """Whatever the text, the retention reads as a positive duration (a whole number and a
    unit; empty: the default) or is refused with a message that names the setting."""
    environ = {"XAVYO_SIEM_EXPORT_RETENTION": text}
    if not text.strip() or (
        _DURATION.fullmatch(text.strip().lower()) and int(text.strip()[:-1]) > 0
    ):
        assert Settings.from_env(environ).export_retention > timedelta(0)
    else:
        with pytest.raises(ValueError, match=r"^XAVYO_SIEM_EXPORT_RETENTION: "):
            Settings.from_env(environ)
