"""The format package surface: re-exports, make_formatter, and the shared text rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import xavyo_siem.format as fmt
from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import epoch_ms, rfc3339_utc, truncate


def test_package_exports_its_public_names() -> None:
    """Every name in __all__ exists, and the module's first line is a docstring."""
    for name in fmt.__all__:
        assert hasattr(fmt, name), name
    assert fmt.__doc__ is not None
    assert fmt.__doc__.startswith("Record formats")


@pytest.mark.parametrize("name", ["cef", "syslog", "json", "csv", "ocsf"])
def test_make_formatter_knows_every_export_format(name: str) -> None:
    """make_formatter builds a callable for each ExportFormat value."""
    assert callable(fmt.make_formatter(name))


def test_make_formatter_rejects_unknown_format_and_option() -> None:
    """An unknown format or option raises EncodeError naming it."""
    with pytest.raises(EncodeError) as info:
        fmt.make_formatter("xml")
    assert info.value.field == "format"
    with pytest.raises(EncodeError) as info:
        fmt.make_formatter("json", {"pretty": True})
    assert info.value.field == "pretty"
    with pytest.raises(EncodeError) as info:
        fmt.make_formatter("cef", {"hostname": "h"})
    assert info.value.field == "hostname"


def test_truncate_keeps_short_text_and_marks_cuts() -> None:
    """Text within the limit is returned as is; longer text ends in "…" within the limit."""
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab\u2026"


def test_truncate_falls_back_to_the_code_point_when_one_cluster_fills_the_cap() -> None:
    """A base letter with hundreds of combining marks is still cut, at a code point."""
    text = "e" + "\u0301" * 100
    assert truncate(text, 10) == text[:9] + "\u2026"


def test_truncate_keeps_complete_flags() -> None:
    """Flags (regional-indicator pairs) are never split: an even run survives whole."""
    flags = "\U0001f1eb\U0001f1f7" * 3
    assert truncate(flags + "x", 6) == flags[:4] + "\u2026"


def test_rfc3339_utc_converts_offsets_and_refuses_naive_times() -> None:
    """An offset time is written in UTC; a naive time raises EncodeError on timestamp."""
    moment = datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339_utc(moment) == "2024-01-01T00:00:00.000000Z"
    with pytest.raises(EncodeError):
        rfc3339_utc(datetime(2024, 1, 1))
    with pytest.raises(EncodeError):
        epoch_ms(datetime(2024, 1, 1))


def test_epoch_ms_is_exact_at_the_extremes() -> None:
    """Epoch milliseconds are exact integers for year 1 and year 9999."""
    assert epoch_ms(datetime(1, 1, 1, tzinfo=UTC)) == -62135596800000
    assert epoch_ms(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == 253402300799999


def test_docs_examples_are_current() -> None:
    """Every example line in docs/formats.md is what the code writes for the documented event."""
    from pathlib import Path

    from xavyo_siem.model import AuditEvent

    event = AuditEvent(
        event_id="7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37",
        tenant_id="0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
        timestamp=datetime(2026, 3, 2, 8, 26, 10, 123456, tzinfo=UTC),
        event_type="AUTH_FAILURE",
        category="authentication",
        severity=5,
        event_name="Failed login",
        action="login",
        outcome="failure",
        actor_id="usr_5f2c81a09d3e",
        actor_email="zoë.martin@example.com",
        source_ip="2001:db8:4a1::17",
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        reason="invalid password",
        session_id="sess_9c41d0b7e2a85f36",
        request_id="req_3e7a19c04b82d5f1",
        metadata={"auth_method": "password", "geo": "FR"},
    )
    docs = (Path(__file__).parents[3] / "docs" / "formats.md").read_text(encoding="utf-8")
    lines = set(docs.splitlines())
    syslog = fmt.SyslogFormatter(hostname="idp1.example.com", procid=4242)
    syslog_cef = fmt.SyslogFormatter(
        hostname="idp1.example.com", procid=4242, body="cef", cef_version="0.1.0"
    )
    for record in (
        fmt.to_cef(event, version="0.1.0"),
        syslog(event).replace("\ufeff", "<BOM>"),
        syslog_cef(event).replace("\ufeff", "<BOM>"),
        fmt.to_json(event),
        fmt.csv_header(),
        fmt.to_csv(event),
        fmt.to_ocsf(event, version="0.1.0"),
    ):
        assert record in lines, record[:80]


def test_formatters_convert_a_trusted_non_utc_time() -> None:
    """An event read without validation whose time is +02:00 is still written in UTC."""
    from xavyo_siem.sample import generate_events

    event = next(generate_events(1, seed=5))
    moment = datetime(2026, 1, 1, 2, 0, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    object.__setattr__(event, "timestamp", moment)
    assert "2026-01-01T00:00:00.000000Z" in fmt.to_syslog(event)
    assert '"2026-01-01T00:00:00.000000Z"' in fmt.to_csv(event)
    assert '"timestamp":"2026-01-01T00:00:00.000000Z"' in fmt.to_json(event)
    assert "rt=1767225600000 " in fmt.to_cef(event)
