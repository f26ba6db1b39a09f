"""Which column of a source's table feeds which event field, and a row made into the JSON
form of an event (what `AuditEvent.from_dict` reads).

A mapping is a list of `field=column` (`--map event_id=id`): `field` is an event field
(`event_id`, `tenant_id`, `timestamp`, `event_type`, `category`, `actor_email`, …, and
`metadata` for a JSON column holding the metadata object) or `metadata.KEY` (the column
becomes the metadata entry `KEY`). `event_id`, `tenant_id` and `timestamp` must be mapped.
Columns that are not mapped are not read. A NULL column leaves its field absent, so a row
whose tenant is NULL is no event and goes to the quarantine.

Values keep their database type where the event takes it (a `uuid`, a `timestamptz`, a
`jsonb` object); anything else that is not JSON (an `inet`, a `numeric`) becomes its text.
Normalisation is `from_dict`'s, the same as a file's or the API's events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import orjson

from xavyo_siem.errors import InvalidSource
from xavyo_siem.model import FIELD_NAMES
from xavyo_siem.model.codegen import compile_function

__all__ = [
    "REQUIRED_FIELDS",
    "RowReader",
    "check_identifier",
    "parse_mapping",
]

REQUIRED_FIELDS: Final = ("event_id", "tenant_id", "timestamp")
_MAPPABLE: Final = frozenset(FIELD_NAMES) - {"normalized"}
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
_METADATA_KEY: Final = re.compile(r"metadata\.([^\s=]{1,200})")
_AS_IS: Final = (str, int, float, bool, UUID, datetime, dict, list)
_PLAIN_TYPES: Final = frozenset(_AS_IS)  # the common case, one set lookup per value
_PLAIN_OR_NONE: Final = _PLAIN_TYPES | {type(None)}


def check_identifier(field: str, name: str) -> str:
    """`name` if it is a plain SQL identifier (a column, a schema, a table), else
    `InvalidSource` on `field`: quoted names, spaces and dots are not taken."""
    if not _IDENTIFIER.fullmatch(name):
        raise InvalidSource(
            field, f"{name[:70]!r} is not a plain identifier (letters, digits, _ and $)"
        )
    return name


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """`field=column` pairs as a mapping from field to column, each checked; the event's
    required fields must be among them."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise InvalidSource("map", f"{pair[:70]!r} must be FIELD=COLUMN")
        if field not in _MAPPABLE and not _METADATA_KEY.fullmatch(field):
            raise InvalidSource(
                f"map.{field[:40]}",
                "is not an event field; use one of "
                + ", ".join(sorted(_MAPPABLE))
                + ", or metadata.KEY",
            )
        if field in mapping:
            raise InvalidSource(f"map.{field}", "is mapped twice")
        mapping[field] = check_identifier(f"map.{field}", column)
    missing = [field for field in REQUIRED_FIELDS if field not in mapping]
    if missing:
        raise InvalidSource(
            "map", f"must map {', '.join(missing)} (e.g. --map {missing[0]}=COLUMN)"
        )
    return mapping


def _plain(value: Any) -> Any:
    return value if isinstance(value, _AS_IS) else str(value)


def _metadata_object(value: Any) -> Any:
    """A metadata column's value: a JSON column's object, or JSON text parsed."""
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


class RowReader:
    """Made once per source: the columns to select (in order) and `__call__(row)`, the
    JSON form of the event a row holds (values at `offset` onwards, in `columns` order)."""

    def __init__(self, mapping: Mapping[str, str], *, offset: int = 0) -> None:
        self.columns: tuple[str, ...] = tuple(dict.fromkeys(mapping.values()))
        at = {column: offset + index for index, column in enumerate(self.columns)}
        self._fields: Sequence[tuple[str, int]] = [
            (field, at[column])
            for field, column in mapping.items()
            if not field.startswith("metadata")
        ]
        self._whole: int | None = at[mapping["metadata"]] if "metadata" in mapping else None
        self._keys: Sequence[tuple[str, int]] = [
            (field.removeprefix("metadata."), at[column])
            for field, column in mapping.items()
            if field.startswith("metadata.")
        ]
        # The row's values in `FIELD_NAMES` order, what `AuditEvent.from_field_values`
        # takes: compiled, one expression per field (None for a field that is not mapped).
        cells = {field: f"row[{index}]" for field, index in self._fields}
        if self._whole is not None or self._keys:
            cells["metadata"] = "metadata(row)"
        self._values: Callable[[Sequence[Any]], list[Any]] = compile_function(
            "values_of_row",
            ["row"],
            f"[{', '.join(cells.get(name, 'None') for name in FIELD_NAMES)}]",
            {"metadata": self._metadata},
        )
        self._converted = [FIELD_NAMES.index(field) for field, _ in self._fields]

    def values(self, row: Sequence[Any]) -> list[Any]:
        """The values of the event `self(row)` gives, in `FIELD_NAMES` order (None where
        that leaves a field absent), without making the mapping: what a page's every row
        runs (`AuditEvent.from_field_values`)."""
        values = self._values(row)
        if not _PLAIN_OR_NONE.issuperset(map(type, values)):  # seldom: convert some
            for index in self._converted:
                value = values[index]
                if value is not None and not isinstance(value, _AS_IS):
                    values[index] = str(value)
        return values

    def __call__(self, row: Sequence[Any]) -> dict[str, Any]:
        data = {field: row[index] for field, index in self._fields if row[index] is not None}
        for field, value in data.items():
            if value.__class__ not in _PLAIN_TYPES and not isinstance(value, _AS_IS):
                data[field] = str(value)
        if self._whole is not None or self._keys:
            metadata = self._metadata(row)
            if metadata is not None:
                data["metadata"] = metadata
        return data

    def _metadata(self, row: Sequence[Any]) -> Any:
        whole = None if self._whole is None else row[self._whole]
        metadata = None if whole is None else _metadata_object(whole)
        entries = {key: _plain(row[index]) for key, index in self._keys if row[index] is not None}
        if not entries:
            return metadata
        if isinstance(metadata, dict):
            return {**metadata, **entries}
        if metadata is not None:  # not an object: from_dict keeps its text under "_"
            entries.setdefault("_", orjson.dumps(metadata, default=str).decode())
        return entries
