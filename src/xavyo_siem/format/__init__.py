"""Record formats: CEF, RFC 5424 syslog, JSON lines, CSV and OCSF, as pure functions.

Each format turns one `AuditEvent` into one record (a `str` without line end): no sockets,
no clock, no store. A formatter is built once from a destination's or an export's format
settings (`make_formatter`, or `CefFormatter`, `SyslogFormatter`, `CsvFormatter`,
`OcsfFormatter` directly) and called per event; `ocsf_event` gives the OCSF event as a
dict. The CSV row is declared once, in `CSV_LAYOUT`; `csv_sql` builds the CSV export's fast
path from it. The exact layouts are in docs/formats.md.
"""

from __future__ import annotations

from xavyo_siem.format.cef import (
    CefFormatter,
    CefOptions,
    escape_cef_extension_value,
    escape_cef_header,
    to_cef,
)
from xavyo_siem.format.csv_rows import (
    CSV_COLUMNS,
    CSV_LAYOUT,
    CellKind,
    CsvColumn,
    CsvFormatter,
    CsvWriter,
    csv_header,
    guard_formula,
    quote_csv_field,
    to_csv,
)
from xavyo_siem.format.csv_sql import CSV_SQL_PARTS, csv_lines_of_parts, event_id_of_parts
from xavyo_siem.format.factory import (
    FORMAT_OPTIONS,
    JSON_OBJECT_FORMATS,
    Formatter,
    make_formatter,
    read_format_options,
)
from xavyo_siem.format.jsonl import metadata_json, to_json
from xavyo_siem.format.ocsf import OCSF_VERSION, OcsfFormatter, ocsf_event, to_ocsf
from xavyo_siem.format.rfc5424 import (
    DEFAULT_ENTERPRISE_NUMBER,
    DEFAULT_FACILITY,
    SD_PARAMS,
    SYSLOG_SEVERITY,
    SyslogFormatter,
    SyslogOptions,
    escape_sd_param_value,
    sanitize_header_field,
    to_syslog,
)

__all__ = [
    "CSV_COLUMNS",
    "CSV_LAYOUT",
    "CSV_SQL_PARTS",
    "DEFAULT_ENTERPRISE_NUMBER",
    "DEFAULT_FACILITY",
    "FORMAT_OPTIONS",
    "JSON_OBJECT_FORMATS",
    "OCSF_VERSION",
    "SD_PARAMS",
    "SYSLOG_SEVERITY",
    "CefFormatter",
    "CefOptions",
    "CellKind",
    "CsvColumn",
    "CsvFormatter",
    "CsvWriter",
    "Formatter",
    "OcsfFormatter",
    "SyslogFormatter",
    "SyslogOptions",
    "csv_header",
    "csv_lines_of_parts",
    "escape_cef_extension_value",
    "escape_cef_header",
    "escape_sd_param_value",
    "event_id_of_parts",
    "guard_formula",
    "make_formatter",
    "metadata_json",
    "ocsf_event",
    "quote_csv_field",
    "read_format_options",
    "sanitize_header_field",
    "to_cef",
    "to_csv",
    "to_json",
    "to_ocsf",
    "to_syslog",
]
