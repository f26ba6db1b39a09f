"""Record formats: CEF, RFC 5424 syslog, JSON lines and CSV, as pure functions.

Each format turns one `AuditEvent` into one record (a `str` without line end): no sockets,
no clock, no store. Where options are fixed per destination, build a formatter once
(`CefFormatter`, `SyslogFormatter`, `CsvFormatter`, or `make_formatter`) and call it per
event. The exact layouts are in docs/formats.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xavyo_siem.errors import EncodeError
from xavyo_siem.format.cef import (
    CefFormatter,
    CefOptions,
    escape_cef_extension_value,
    escape_cef_header,
    to_cef,
)
from xavyo_siem.format.csv_rows import (
    CSV_COLUMNS,
    CsvFormatter,
    CsvWriter,
    csv_header,
    guard_formula,
    quote_csv_field,
    to_csv,
)
from xavyo_siem.format.jsonl import metadata_json, to_json
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
from xavyo_siem.model import AuditEvent, ExportFormat

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_ENTERPRISE_NUMBER",
    "DEFAULT_FACILITY",
    "SD_PARAMS",
    "SYSLOG_SEVERITY",
    "CefFormatter",
    "CefOptions",
    "CsvFormatter",
    "CsvWriter",
    "SyslogFormatter",
    "SyslogOptions",
    "csv_header",
    "escape_cef_extension_value",
    "escape_cef_header",
    "escape_sd_param_value",
    "guard_formula",
    "make_formatter",
    "metadata_json",
    "quote_csv_field",
    "sanitize_header_field",
    "to_cef",
    "to_csv",
    "to_json",
    "to_syslog",
]


def _check_options(fmt: ExportFormat, options: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in sorted(options):
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise EncodeError(
                name, f"is not an option of the {fmt.value} format (options: {known})"
            )


def make_formatter(fmt: ExportFormat | str, **options: Any) -> Callable[[AuditEvent], str]:
    """The per-event formatter of `fmt`, built once with `options`.

    `cef` -> `CefFormatter`; `syslog` -> `SyslogFormatter` with a JSON body (over syslog
    transports build `SyslogFormatter(body="cef" | "json")` directly); `json` -> `to_json`
    (no options); `csv` -> `CsvFormatter` (rows without line ends). An unknown format or
    option, or a bad option value, raises `EncodeError` naming it.
    """
    try:
        kind = ExportFormat(fmt)
    except ValueError:
        allowed = ", ".join(f.value for f in ExportFormat)
        raise EncodeError("format", f"must be one of {allowed}; got {str(fmt)[:40]!r}") from None
    if kind is ExportFormat.CEF:
        _check_options(kind, options, CefFormatter.OPTIONS)
        return CefFormatter(**options)
    if kind is ExportFormat.SYSLOG:
        _check_options(kind, options, SyslogFormatter.OPTIONS - {"body"})
        return SyslogFormatter(body="json", **options)
    if kind is ExportFormat.JSON:
        _check_options(kind, options, frozenset())
        return to_json
    _check_options(kind, options, CsvFormatter.OPTIONS)
    return CsvFormatter(**options)
