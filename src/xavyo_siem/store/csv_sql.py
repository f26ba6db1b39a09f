"""CSV cells the database writes for a CSV export: the fields of fixed form, and metadata.

A CSV export's hot path is per-row Python work. The cells that never need the formula
guard (PROTOCOLS §8.2) are written by the database instead, beside the exporter, on its own
CPU: category, severity, outcome and source address as one string of four cells, and the
metadata JSON as one quoted cell. Everything else (ids, the timestamp, the guarded text
fields) is written by `batch.files.csv_lines_of_parts`. Together they write exactly what
`format.CsvFormatter` writes (a property test holds the two equal on arbitrary events,
on both backends); an absent value is an empty, unquoted cell.
"""

from __future__ import annotations

from typing import Final

__all__ = ["METADATA_CELL", "PLAIN_CELLS"]

# `"category","severity",outcome,source_ip`: outcome and address quoted when present. None
# of them can hold `"` (an enum, a number, an IP address), so nothing is doubled.
PLAIN_CELLS: Final = (
    "'\"' || category || '\",\"' || severity || '\",' "
    "|| COALESCE('\"' || outcome || '\"', '') || ',' "
    "|| COALESCE('\"' || source_ip || '\"', '')"
)
# The metadata JSON as one cell: quoted, each `"` doubled; empty when there is none.
METADATA_CELL: Final = "COALESCE('\"' || replace(metadata, '\"', '\"\"') || '\"', '')"
