"""The CSV export's fast path: the cells the database writes, and the rows made from them.

A CSV export's cost is per-row Python work, so part of it is handed to the database, which
does it in C, and on PostgreSQL in its own process beside the exporter. Both halves are
built from `CSV_LAYOUT`:

* `CSV_SQL_PARTS` is what the store reads per event (`store.ranges.read_range_parts`): the
  stored value of each column written here (ids, the time, and free text, whose formula
  guard is an option of the export), and one SQL expression per run of columns whose cells
  never need the guard (enum values, numbers, addresses, metadata), which writes those cells
  and the commas between them;
* `csv_lines_of_parts` writes the rows from what the store returned, without building an
  event per row.

Together they write exactly what `CsvFormatter` writes for the same events (a property test
on both backends checks it as well). The SQL names the columns of the `audit_events` table,
which stores each field under its own name and the time as epoch microseconds in `ts_us`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from xavyo_siem.format.csv_rows import CSV_LAYOUT, FORMULA_TRIGGERS, CellKind, CsvColumn
from xavyo_siem.model import EPOCH

__all__ = ["CSV_SQL_PARTS", "csv_lines_of_parts", "event_id_of_parts"]

# Written by the database: cells that never need the formula guard and are stored as text
# (or a number) ready to quote.
_BY_DATABASE: Final = frozenset((CellKind.PLAIN, CellKind.ADDRESS, CellKind.METADATA))


def _stored(column: CsvColumn) -> str:
    """The `audit_events` column that holds `column`'s value."""
    return "ts_us" if column.kind is CellKind.TIMESTAMP else column.name


def _sql_cell(column: CsvColumn) -> str:
    """SQL writing `column`'s cell: quoted, `"` doubled unless the kind never holds one;
    an absent value (NULL) is an empty cell."""
    value = _stored(column)
    if column.kind is not CellKind.PLAIN:
        value = f"replace({value}, '\"', '\"\"')"
    return f"COALESCE('\"' || {value} || '\"', '')"


def _parts() -> tuple[tuple[str, ...], tuple[CellKind | None, ...]]:
    """The SQL of each part and the kind of column it holds (None: cells the SQL wrote)."""
    sql: list[str] = []
    kinds: list[CellKind | None] = []
    run: list[str] = []
    for column in CSV_LAYOUT:
        if column.kind in _BY_DATABASE:
            run.append(_sql_cell(column))
            continue
        if run:
            sql.append(" || ',' || ".join(run))
            kinds.append(None)
            run = []
        sql.append(_stored(column))
        kinds.append(column.kind)
    if run:
        sql.append(" || ',' || ".join(run))
        kinds.append(None)
    return tuple(sql), tuple(kinds)


CSV_SQL_PARTS, _PART_KINDS = _parts()
_EVENT_ID_PART: Final = CSV_SQL_PARTS.index("event_id")


def event_id_of_parts(row: Sequence[Any]) -> str:
    """The event id (text) of one row of `CSV_SQL_PARTS`."""
    return str(row[_EVENT_ID_PART])


def csv_lines_of_parts(rows: Sequence[Sequence[Any]], *, formula_guard: bool = True) -> list[str]:
    """The CSV rows (no line ends) of rows of `CSV_SQL_PARTS`, in order.

    Each row may carry more values after the parts (the store's page key): they are not
    read. Times come in order, so the text of each second is made once, not once per row.
    """
    triggers = FORMULA_TRIGGERS
    text, id_ = CellKind.TEXT, CellKind.ID
    kinds = _PART_KINDS
    lines: list[str] = []
    second: int | None = None
    whole_second = ""
    for row in rows:
        cells: list[str] = []
        append = cells.append
        for kind, value in zip(kinds, row):  # noqa: B905 - a row may be longer
            if kind is text:
                if value is None:
                    append("")
                    continue
                if formula_guard and value[:1] in triggers:
                    value = "'" + value
                if '"' in value:
                    value = value.replace('"', '""')
                append(f'"{value}"')
            elif kind is None:
                append(value)  # written by the database
            elif kind is id_:
                append(f'"{value}"')
            else:  # the time, in epoch microseconds
                seconds, micro = divmod(value, 1_000_000)
                if seconds != second:
                    second = seconds
                    whole_second = (EPOCH + timedelta(seconds=seconds)).isoformat()[:19]
                append(f'"{whole_second}.{micro:06d}Z"')
        lines.append(",".join(cells))
    return lines
