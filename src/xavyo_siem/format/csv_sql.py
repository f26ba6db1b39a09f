"""The CSV export's fast path: the cells the database writes, and the rows made from them.

A CSV export's cost is per-row Python work, so part of it is handed to the database, which
does it in C, and on PostgreSQL in its own process beside the exporter. Both halves are
built from `CSV_LAYOUT`:

* `CSV_SQL_PARTS` is what the store reads per event (`store.ranges.read_range_parts`): one
  SQL expression per run of columns the database writes, which writes their cells and the
  commas between them; the stored value of each column written in Python (the free text,
  whose formula guard is an option of the export, and the time, stored in epoch
  microseconds, whose text would take different SQL on each backend); and, last, the event
  id as stored, which the exporter keeps for its manifest;
* `csv_lines_of_parts` writes the rows from what the store returned, with `write_row`, the
  writer `CsvFormatter` uses, and without building an event per row.

Together they write exactly what `CsvFormatter` writes for the same events (a property test
on both backends checks it as well). The SQL names the columns of the `audit_events` table,
which stores each field under its own name and the time as epoch microseconds in `ts_us`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from xavyo_siem.format.csv_rows import CSV_LAYOUT, CellKind, CsvColumn, write_row

__all__ = ["CSV_SQL_PARTS", "csv_lines_of_parts", "event_id_of_parts"]

_IN_PYTHON: Final = frozenset((CellKind.TEXT, CellKind.TIMESTAMP))
_MAY_HOLD_QUOTES: Final = frozenset((CellKind.ADDRESS, CellKind.METADATA))


def _stored(column: CsvColumn) -> str:
    """The `audit_events` column that holds `column`'s value."""
    return "ts_us" if column.kind is CellKind.TIMESTAMP else column.name


def _sql_cell(column: CsvColumn) -> str:
    """SQL writing `column`'s cell as `write_row` does: quoted, `"` doubled where the kind
    may hold one; an absent value (NULL) is an empty cell."""
    value = _stored(column)
    if column.kind in _MAY_HOLD_QUOTES:
        value = f"replace({value}, '\"', '\"\"')"
    return f"COALESCE('\"' || {value} || '\"', '')"


def _parts() -> tuple[tuple[str, ...], tuple[CellKind | None, ...]]:
    """The SQL of each part and the kind of the column it holds (None: SQL wrote the cells);
    the event id comes after the cells, where `write_row` does not read."""
    sql: list[str] = []
    kinds: list[CellKind | None] = []
    run: list[str] = []
    for column in CSV_LAYOUT:
        if column.kind not in _IN_PYTHON:
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
    return (*sql, "event_id"), tuple(kinds)


CSV_SQL_PARTS, _PART_KINDS = _parts()
_EVENT_ID_PART: Final = len(_PART_KINDS)


def event_id_of_parts(row: Sequence[Any]) -> str:
    """The event id (text) of one row of `CSV_SQL_PARTS`."""
    return str(row[_EVENT_ID_PART])


def csv_lines_of_parts(rows: Sequence[Sequence[Any]], *, formula_guard: bool = True) -> list[str]:
    """The CSV rows (no line ends) of rows of `CSV_SQL_PARTS`, in order.

    Each row may carry more values after the parts (the store's page key): they are not
    read.
    """
    kinds = _PART_KINDS
    return [write_row(kinds, row, formula_guard) for row in rows]
