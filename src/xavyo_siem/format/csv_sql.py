"""The CSV export's fast path: the cells the database writes, and the rows made from them.

A CSV export's cost is per-row work, so part of it is handed to the database, which does it
in C, and on PostgreSQL in its own process beside the exporter. Both halves are built from
`CSV_LAYOUT`:

* `CSV_SQL_PARTS` is what the store reads per event (`store.ranges.read_range_parts`): for
  the columns after the ids and the time, the stored value of each free-text column (its
  formula guard is an option of the export) and one SQL expression per run of other
  columns, writing their cells and the commas between them; then the event id;
* `csv_lines_of_parts` writes the rows from what the store returned: the ids and the time
  (from the row's key, in epoch microseconds: its text would take different SQL on each
  backend), then the rest with `row_writer`, the cell writer of `CsvFormatter`.

Each value the database returns costs a conversion (and on SQLite, whose SQL runs in this
process, each concatenation too), so the parts are as few as they can be.
Together they write exactly what `CsvFormatter` writes for the same events (a property test
on both backends checks it as well). The SQL names the columns of the `audit_events` table,
which stores each field under its own name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any, Final
from uuid import UUID

from xavyo_siem.format.csv_rows import CSV_LAYOUT, CellKind, CsvColumn, row_writer
from xavyo_siem.model import EPOCH

__all__ = ["CSV_SQL_PARTS", "csv_lines_of_parts", "event_id_of_parts"]

_MAY_HOLD_QUOTES: Final = frozenset((CellKind.ADDRESS, CellKind.METADATA))
# The row starts with these columns, written here: the event id as stored, the tenant's id
# (a range read is one tenant's, so it is the same in every row and is not read), the time
# from the row's key.
_HEAD: Final = ("event_id", "tenant_id", "timestamp")
if tuple(column.name for column in CSV_LAYOUT[: len(_HEAD)]) != _HEAD:
    raise ValueError(f"the CSV fast path expects the layout to start with {_HEAD}")


def _sql_cell(column: CsvColumn) -> list[str]:
    """SQL writing `column`'s cell as `row_writer` does, as pieces to join with `||`:
    quoted, `"` doubled where the kind may hold one; an absent value (NULL) is empty."""
    value = column.name
    if column.kind in _MAY_HOLD_QUOTES:
        value = f"replace({value}, '\"', '\"\"')"
    if column.required:
        return ["'\"'", value, "'\"'"]
    return [f"COALESCE('\"' || {value} || '\"', '')"]


def _joined(cells: list[list[str]]) -> str:
    """SQL writing `cells` with commas between them; adjacent literals are merged."""
    pieces: list[str] = []
    for cell in cells:
        comma = ["','"] if pieces else []
        for piece in comma + cell:
            if pieces and pieces[-1].endswith("'") and piece.startswith("'"):
                pieces[-1] = pieces[-1][:-1] + piece[1:]
            else:
                pieces.append(piece)
    return " || ".join(pieces)


def _parts() -> tuple[tuple[str, ...], tuple[CellKind | None, ...]]:
    """The SQL of each part, and the kind of column each holds (None: cells the SQL wrote);
    the event id comes last, after the cells, where the row writer does not read."""
    sql: list[str] = []
    kinds: list[CellKind | None] = []
    run: list[list[str]] = []
    for column in CSV_LAYOUT[len(_HEAD) :]:
        if column.kind is not CellKind.TEXT:
            run.append(_sql_cell(column))
            continue
        if run:
            sql.append(_joined(run))
            kinds.append(None)
            run = []
        sql.append(column.name)
        kinds.append(column.kind)
    if run:
        sql.append(_joined(run))
        kinds.append(None)
    return (*sql, "event_id"), tuple(kinds)


CSV_SQL_PARTS, _KINDS = _parts()
_EVENT_ID: Final = len(_KINDS)


def event_id_of_parts(row: Sequence[Any]) -> UUID:
    """The event id of one row of `CSV_SQL_PARTS`."""
    return UUID(row[_EVENT_ID])


@lru_cache(maxsize=256)
def _second_text(seconds: int) -> str:
    """A whole second since the epoch in RFC 3339, without fraction and zone. Cached: an
    export's times come in order, so each second's text is made once, not once per row."""
    return (EPOCH + timedelta(seconds=seconds)).isoformat()[:19]


def csv_lines_of_parts(
    rows: Sequence[Sequence[Any]], tenant_id: UUID, *, formula_guard: bool = True
) -> list[str]:
    """The CSV rows (no line ends) of `tenant_id`'s rows of `CSV_SQL_PARTS`, each followed
    by its key `(ts_us, seq)`, as `read_range_parts` returns them."""
    write, event_id = row_writer(_KINDS, formula_guard), _EVENT_ID
    tenant = f'","{tenant_id}","'
    lines: list[str] = []
    for row in rows:
        seconds, micro = divmod(row[-2], 1_000_000)
        first = f'"{row[event_id]}{tenant}{_second_text(seconds)}.{micro:06d}Z"'
        lines.append(write(first, *row))
    return lines
