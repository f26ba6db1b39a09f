"""CSV rows: the layout (`CSV_LAYOUT`), `csv_header`, `to_csv`, the streaming `CsvWriter`.

`CSV_LAYOUT` is the one definition of a CSV row: every column's name and the kind of cell it
holds. The header, `CsvFormatter` and the export's fast path (`format.csv_sql`, which lets
the database write some cells) are all built from it; how each kind of cell is written is
said once (`_CELL_SOURCE`) and compiled into a row writer per layout (`row_writer`). Every
file has the header row, then one row per event, with the `to_dict` fields in their order,
`event_id` first, `metadata` as one compact JSON object and `normalized` (the names of the
fields ingest normalised, joined by `,`) last. Rows follow RFC 4180 and
end in CRLF (`CsvWriter`; `to_csv` returns a row without its line end):

* a present value is always quoted, `"` doubled; CR, LF and every other character are kept
  as they are inside the quotes (a row with a line break is still one record);
* an absent field (and empty metadata) is an empty *unquoted* field, so a strict reader can
  tell it from an empty string (`""`); lenient readers see both as empty;
* the formula guard, on by default, against CSV injection (the OWASP rule): a free-text
  value that starts with `=`, `+`, `-`, `@`, TAB, CR or NUL gets a `'` in front, so a
  spreadsheet shows it as text instead of evaluating it. `formula_guard=False` writes values
  exactly: only for consumers that are not spreadsheets.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from operator import attrgetter
from typing import IO, Any, Final, cast

import orjson

from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import rfc3339_utc
from xavyo_siem.format.jsonl import metadata_json
from xavyo_siem.model import AuditEvent
from xavyo_siem.model.codegen import compile_function

__all__ = [
    "CSV_COLUMNS",
    "CSV_LAYOUT",
    "FORMULA_TRIGGERS",
    "CellKind",
    "CsvColumn",
    "CsvFormatter",
    "CsvWriter",
    "csv_header",
    "guard_formula",
    "quote_csv_field",
    "row_writer",
    "to_csv",
]


class CellKind(Enum):
    """What a column holds, which says how its cell is written (a present value is quoted)."""

    ID = "id"
    """A UUID, written in its canonical form."""
    TIMESTAMP = "timestamp"
    """The event time, written as RFC 3339 in UTC with six fraction digits and `Z`."""
    PLAIN = "plain"
    """An enum's value or a number: written as is (it never holds `"` or starts like a formula)."""
    ADDRESS = "address"
    """An IP address: `"` doubled (an IPv6 zone index may hold any character), never guarded
    (an address never starts like a formula)."""
    TEXT = "text"
    """Free text: formula-guarded, then `"` doubled."""
    METADATA = "metadata"
    """The metadata as one compact JSON object, `"` doubled; no metadata is an absent cell."""
    NAMES = "names"
    """Field names (`normalized`) joined by `,`; none is an absent cell (a name never holds
    `"` nor starts like a formula)."""


@dataclass(frozen=True, slots=True)
class CsvColumn:
    """One CSV column: its name (the `AuditEvent` field it writes), its kind of cell, and
    whether every event has a value (otherwise an absent value is an empty cell)."""

    name: str
    kind: CellKind
    required: bool = False


_ID, _TIMESTAMP, _PLAIN = CellKind.ID, CellKind.TIMESTAMP, CellKind.PLAIN
_ADDRESS, _TEXT, _METADATA = CellKind.ADDRESS, CellKind.TEXT, CellKind.METADATA
_NAMES = CellKind.NAMES

CSV_LAYOUT: Final[tuple[CsvColumn, ...]] = (
    CsvColumn("event_id", _ID, required=True),
    CsvColumn("tenant_id", _ID, required=True),
    CsvColumn("timestamp", _TIMESTAMP, required=True),
    CsvColumn("event_type", _TEXT, required=True),
    CsvColumn("category", _PLAIN, required=True),
    CsvColumn("severity", _PLAIN, required=True),
    CsvColumn("outcome", _PLAIN),
    CsvColumn("source_ip", _ADDRESS),
    CsvColumn("event_name", _TEXT),
    CsvColumn("action", _TEXT),
    CsvColumn("actor_id", _TEXT),
    CsvColumn("actor_email", _TEXT),
    CsvColumn("user_agent", _TEXT),
    CsvColumn("target_user", _TEXT),
    CsvColumn("target_resource", _TEXT),
    CsvColumn("reason", _TEXT),
    CsvColumn("session_id", _TEXT),
    CsvColumn("request_id", _TEXT),
    CsvColumn("source_address", _TEXT),
    CsvColumn("metadata", _METADATA),
    CsvColumn("normalized", _NAMES),
)
CSV_COLUMNS: Final[tuple[str, ...]] = tuple(column.name for column in CSV_LAYOUT)

# The characters that make a spreadsheet evaluate a cell: `=`, `+`, `-`, `@`, TAB, CR, NUL.
FORMULA_TRIGGERS: Final = frozenset("=+-@\t\r\x00")

_dumps: Final = orjson.dumps
_UTC_Z: Final = orjson.OPT_UTC_Z


def guard_formula(value: str) -> str:
    """`value` with a `'` in front when it starts like a formula, else unchanged."""
    return "'" + value if value[:1] in FORMULA_TRIGGERS else value


def quote_csv_field(value: str) -> str:
    """`value` as one RFC 4180 quoted field: enclosed in `"`, each `"` doubled."""
    return '"' + value.replace('"', '""') + '"'


def csv_header() -> str:
    """The header row, every name quoted, without the CRLF (no name starts like a formula)."""
    return ",".join(quote_csv_field(name) for name in CSV_COLUMNS)


def timestamp_cell(moment: datetime) -> str:
    """The quoted cell of an event time (a `TIMESTAMP` column)."""
    if moment.tzinfo is UTC and moment.microsecond:
        return _dumps(moment, option=_UTC_Z).decode()  # 3x faster than isoformat()
    return '"' + rfc3339_utc(moment) + '"'


def _leading_ids_and_time() -> int:
    """How many columns at the start hold ids or the time (the event's one time among them):
    these cells are written together, which is faster than one by one."""
    count = 0
    while CSV_LAYOUT[count].kind in (_ID, _TIMESTAMP):
        count += 1
    return count


_HEAD: Final = _leading_ids_and_time()
_HEAD_VALUES: Final = attrgetter(*CSV_COLUMNS[:_HEAD])
_HEAD_TIME: Final = [column.kind for column in CSV_LAYOUT[:_HEAD]].index(_TIMESTAMP)
_KINDS: Final = tuple(column.kind for column in CSV_LAYOUT[_HEAD:])


def _head_cells(values: tuple[Any, ...]) -> str:
    """The cells of the leading id and time columns, with the commas between them."""
    return ",".join(
        timestamp_cell(value) if index == _HEAD_TIME else _dumps(value).decode()
        for index, value in enumerate(values)
    )


class CsvFormatter:
    """Writes audit events as CSV rows (no line end); build once, call per event.

    Each column of `CSV_LAYOUT` is written by its kind. Option: `formula_guard` (default
    True, see the module docstring).
    """

    OPTIONS: Final = frozenset({"formula_guard"})

    __slots__ = ("_guard", "_write")

    def __init__(self, *, formula_guard: bool = True) -> None:
        if not isinstance(formula_guard, bool):
            raise EncodeError(
                "formula_guard", f"must be true or false, got {formula_guard!r}"[:120]
            )
        self._guard = formula_guard
        self._write = row_writer(_KINDS, formula_guard, CSV_COLUMNS[_HEAD:])

    def __call__(self, event: AuditEvent) -> str:
        """The CSV row of `event`, columns as in `CSV_LAYOUT`, without the CRLF."""
        head = _HEAD_VALUES(event)
        moment = head[_HEAD_TIME]
        if moment.tzinfo is UTC and moment.microsecond:
            # orjson writes ["<id>","<id>","<time>"]: inside the brackets are exactly the
            # cells, 3x faster than str() and isoformat().
            first = _dumps(head, option=_UTC_Z).decode()[1:-1]
        else:
            first = _head_cells(head)
        return self._write(first, event)


# How each kind of cell is written, as an expression over the value `@` (None: absent).
_CELL_SOURCE: Final[dict[tuple[CellKind | None, bool], str]] = {
    (None, False): "@",  # a cell written already (by the database)
    (CellKind.ID, False): '"" if @ is None else _dumps(@).decode()',
    (CellKind.TIMESTAMP, False): '"" if @ is None else _timestamp_cell(@)',
    (CellKind.PLAIN, False): """"" if @ is None else f'"{@!s}"'""",  # !s: 2x faster than str()
    (CellKind.ADDRESS, False): '"" if @ is None else _quote(@)',
    (CellKind.METADATA, False): '_quote(_metadata_json(@)) if @ else ""',
    (CellKind.NAMES, False): '''('"' + ",".join(@) + '"') if @ else ""''',
    (CellKind.TEXT, False): '"" if @ is None else _text_cell(@, False)',
    (CellKind.TEXT, True): '"" if @ is None else _text_cell(@, True)',
}


def _text_cell(value: str, formula_guard: bool) -> str:
    """A free-text cell: formula-guarded (when asked), `"` doubled, quoted."""
    if formula_guard and value[:1] in FORMULA_TRIGGERS:
        value = "'" + value
    if '"' in value:
        value = value.replace('"', '""')
    return '"' + value + '"'


@cache
def row_writer(
    kinds: tuple[CellKind | None, ...], formula_guard: bool, fields: tuple[str, ...] = ()
) -> Callable[..., str]:
    """The writer of a CSV row (no line end) of cells of `kinds`, compiled once: each cell's
    expression written out (as `dataclasses` writes an `__init__`), as fast as a
    hand-unrolled row, where a loop deciding each cell's kind at run time cost a sixth more.

    Called as `writer(first, *values)`, where `first` is the row's first cells written
    already (or "") and extra values are not read (the fast path passes what the store read,
    with the cells the database wrote under the kind None); with `fields` (the names of the
    values, attributes of one object) as `writer(first, obj)`, which reads them itself.
    """
    names = [f"e.{name}" for name in fields] or [f"v{index}" for index in range(len(kinds))]
    cells = [
        "(" + _CELL_SOURCE[kind, formula_guard and kind is CellKind.TEXT].replace("@", name) + ")"
        for kind, name in zip(kinds, names, strict=True)
    ]
    return compile_function(
        "write_row_of_kinds",
        ["first", "e"] if fields else ["first", *names, "*_"],
        f'(first + "," if first else "") + ",".join(({", ".join(cells)},))',
        {
            "_dumps": _dumps,
            "_timestamp_cell": timestamp_cell,
            "_quote": quote_csv_field,
            "_metadata_json": metadata_json,
            "_text_cell": _text_cell,
        },
    )


def to_csv(event: AuditEvent, *, formula_guard: bool = True) -> str:
    """The CSV row of `event` (no line end); see `CsvFormatter`."""
    return (_GUARDED if formula_guard else _RAW)(event)


class CsvWriter:
    """Streams a CSV export to a file object: the header row, then one row per event.

    `file` is a text file (open it with `newline=""`) or a binary file (UTF-8 is written).
    Rows end in CRLF. Nothing is held beyond the rows of one `write_many` chunk. With
    `bom=True` a UTF-8 BOM is written first, which Excel needs to detect UTF-8; it is off by
    default because most other CSV readers then see it in the first column name.
    """

    def __init__(
        self,
        file: IO[str] | IO[bytes],
        *,
        formula_guard: bool = True,
        header: bool = True,
        bom: bool = False,
        chunk_rows: int = 512,
    ) -> None:
        self._row = CsvFormatter(formula_guard=formula_guard)
        self._binary = isinstance(file, io.RawIOBase | io.BufferedIOBase) or "b" in str(
            getattr(file, "mode", "")
        )
        self._file = file
        self._chunk_rows = max(1, chunk_rows)
        self.rows_written = 0
        start = ("\ufeff" if bom else "") + (csv_header() + "\r\n" if header else "")
        if start:
            self._put(start)

    def _put(self, text: str) -> None:
        if self._binary:
            try:
                data = text.encode()
            except UnicodeEncodeError as exc:  # only an unvalidated event holds a surrogate
                raise EncodeError("event", f"holds a lone surrogate: {exc.reason}") from None
            cast("IO[bytes]", self._file).write(data)
        else:
            cast("IO[str]", self._file).write(text)

    def write(self, event: AuditEvent) -> None:
        """Write the row of one event."""
        self._put(self._row(event) + "\r\n")
        self.rows_written += 1

    def write_many(self, events: Iterable[AuditEvent]) -> int:
        """Write the rows of `events`, in chunks; returns how many were written."""
        row = self._row
        chunk: list[str] = []
        count = 0
        for event in events:
            chunk.append(row(event))
            if len(chunk) >= self._chunk_rows:
                chunk.append("")
                self._put("\r\n".join(chunk))
                count += len(chunk) - 1
                chunk.clear()
        if chunk:
            chunk.append("")
            self._put("\r\n".join(chunk))
            count += len(chunk) - 1
        self.rows_written += count
        return count


_GUARDED: Final = CsvFormatter(formula_guard=True)
_RAW: Final = CsvFormatter(formula_guard=False)
