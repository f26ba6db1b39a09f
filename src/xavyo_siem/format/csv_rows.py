"""CSV rows: `CSV_COLUMNS`, `csv_header`, `to_csv` and the streaming `CsvWriter` (PROTOCOLS §8).

Every file has the header row, then one row per event, with the fixed columns of
`CSV_COLUMNS` (the `to_dict` fields in their order, `event_id` first; `metadata` as one
compact JSON object). Rows follow RFC 4180 and end in CRLF (`CsvWriter`; `to_csv` returns a
row without its line end):

* a present value is always quoted, `"` doubled; CR, LF and every other character are kept
  as they are inside the quotes (a row with a line break is still one record);
* an absent field (and empty metadata) is an empty *unquoted* field, so a strict reader can
  tell it from an empty string (`""`); lenient readers see both as empty;
* the formula guard (on by default, §8.2): a value that starts with `=`, `+`, `-`, `@`,
  TAB, CR or NUL gets a `'` in front, so spreadsheets show it as text. `formula_guard=False`
  writes values exactly: only for consumers that are not spreadsheets.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import UTC
from typing import IO, Final, cast

import orjson

from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import rfc3339_utc
from xavyo_siem.format.jsonl import metadata_json
from xavyo_siem.model import AuditEvent

__all__ = [
    "CSV_COLUMNS",
    "CsvFormatter",
    "CsvWriter",
    "csv_header",
    "guard_formula",
    "quote_csv_field",
    "to_csv",
]

CSV_COLUMNS: Final[tuple[str, ...]] = (
    "event_id",
    "tenant_id",
    "timestamp",
    "event_type",
    "category",
    "severity",
    "outcome",
    "source_ip",
    "event_name",
    "action",
    "actor_id",
    "actor_email",
    "user_agent",
    "target_user",
    "target_resource",
    "reason",
    "session_id",
    "request_id",
    "metadata",
)

_dumps: Final = orjson.dumps
_UTC_Z: Final = orjson.OPT_UTC_Z

# §8.2: the characters that make a spreadsheet evaluate a cell.
FORMULA_TRIGGERS: Final = frozenset("=+-@\t\r\x00")


def guard_formula(value: str) -> str:
    """`value` with a `'` in front when it starts like a formula (§8.2), else unchanged."""
    return "'" + value if value[:1] in FORMULA_TRIGGERS else value


def quote_csv_field(value: str) -> str:
    """`value` as one RFC 4180 quoted field: enclosed in `"`, each `"` doubled."""
    return '"' + value.replace('"', '""') + '"'


def csv_header() -> str:
    """The header row, every name quoted, without the CRLF (no name starts like a formula)."""
    return ",".join(quote_csv_field(name) for name in CSV_COLUMNS)


class CsvFormatter:
    """Writes audit events as CSV rows (no line end); build once, call per event.

    Option: `formula_guard` (default True, see the module docstring).
    """

    OPTIONS: Final = frozenset({"formula_guard"})

    __slots__ = ("_guard",)

    def __init__(self, *, formula_guard: bool = True) -> None:
        if not isinstance(formula_guard, bool):
            raise EncodeError(
                "formula_guard", f"must be true or false, got {formula_guard!r}"[:120]
            )
        self._guard = formula_guard

    def __call__(self, event: AuditEvent) -> str:
        """The CSV row of `event`, columns as in `CSV_COLUMNS`, without the CRLF."""
        guard = self._guard
        ts = event.timestamp
        if ts.tzinfo is UTC and ts.microsecond:
            # orjson writes ["<event id>","<tenant id>","<time>"]: inside the brackets are
            # exactly the first three quoted cells, 3x faster than str() and isoformat().
            fixed = _dumps((event.event_id, event.tenant_id, ts), option=_UTC_Z).decode()[1:-1]
        else:
            fixed = _dumps((event.event_id, event.tenant_id, rfc3339_utc(ts))).decode()[1:-1]
        cells = [
            fixed,
            _cell(event.event_type, guard),
            f'"{event.category._value_}","{event.severity}"',
            "" if (outcome := event.outcome) is None else f'"{outcome._value_}"',
            "" if (value := event.source_ip) is None else quote_csv_field(value),
        ]
        for value in (
            event.event_name,
            event.action,
            event.actor_id,
            event.actor_email,
            event.user_agent,
            event.target_user,
            event.target_resource,
            event.reason,
            event.session_id,
            event.request_id,
        ):
            cells.append("" if value is None else _cell(value, guard))
        if metadata := event.metadata:
            cells.append(quote_csv_field(metadata_json(metadata)))
        else:
            cells.append("")
        return ",".join(cells)


def _cell(value: str, guard: bool) -> str:
    if guard and value[:1] in FORMULA_TRIGGERS:
        value = "'" + value
    if '"' in value:
        value = value.replace('"', '""')
    return '"' + value + '"'


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
