"""The CSV layout and the export fast path built from it (the SQL runs in tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime

from format_events import EVENT_ID, TENANT_ID, make_event
from xavyo_siem.format import (
    CSV_COLUMNS,
    CSV_LAYOUT,
    CSV_SQL_PARTS,
    CellKind,
    csv_lines_of_parts,
    event_id_of_parts,
    to_csv,
)
from xavyo_siem.model import to_epoch_us


def test_layout_is_the_event_fields_in_to_dict_order() -> None:
    """The columns are the fields of an event with every field set, in `to_dict` order."""
    text = {column.name: "x" for column in CSV_LAYOUT if column.kind is CellKind.TEXT}
    event = make_event(
        **text, outcome="success", source_ip="::1", metadata={"k": "v"}, normalized=("reason",)
    )
    assert tuple(event.to_dict()) == CSV_COLUMNS


def test_the_event_id_and_text_are_read_as_stored_and_other_cells_written_in_sql() -> None:
    """The event id and each text column are parts of their own (the guard, an export
    option, is applied in Python); the time comes with the store's key, the tenant from the
    caller; every other cell is written by SQL."""
    text = [column.name for column in CSV_LAYOUT if column.kind is CellKind.TEXT]
    assert [part for part in CSV_SQL_PARTS if "||" not in part] == [*text, "event_id"]
    written = [part for part in CSV_SQL_PARTS if "||" in part]
    optional = [c for c in CSV_LAYOUT if not c.required and c.kind is not CellKind.TEXT]
    assert len(written) == 2  # category..source_ip, metadata
    assert sum(part.count("COALESCE") for part in written) == len(optional)  # empty if NULL
    assert "ts_us" not in " ".join(CSV_SQL_PARTS)


def test_lines_of_parts_write_ids_time_and_guarded_text_and_keep_sql_cells() -> None:
    """Rows of parts (SQL cells given as the database returns them) and their key make
    `to_csv`'s row."""
    moment = datetime(1969, 12, 31, 23, 59, 58, 5, tzinfo=UTC)
    event = make_event(timestamp=moment, reason='=say "hi"', metadata={"k": "v"})
    stored = {"event_id": str(EVENT_ID), "event_type": "USER_LOGIN", "reason": '=say "hi"'}
    sql_cells = iter(['"authentication","3",,', '"{""k"":""v""}",'])
    row = tuple(stored.get(part) if "||" not in part else next(sql_cells) for part in CSV_SQL_PARTS)
    row += (to_epoch_us(moment), 7)
    for guard in (True, False):
        assert csv_lines_of_parts([row], TENANT_ID, formula_guard=guard) == [
            to_csv(event, formula_guard=guard)
        ]
    assert event_id_of_parts(row) == EVENT_ID
