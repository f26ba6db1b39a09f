"""The one factory from format settings (a destination's or an export's) to a formatter.

`make_formatter(format, options, syslog_transport=...)` returns the per-event callable:

* over a syslog transport every record is an RFC 5424 message, whose MSG is the CEF line
  for the `cef` format, the OCSF event for `ocsf` and the JSON event otherwise; its options
  are those of the message (`hostname`, `app_name`, `procid`, `facility`,
  `enterprise_number`, `cef_version`);
* elsewhere `cef` is the CEF line (`version`, `cs_max_chars`), `syslog` the RFC 5424 message
  with the JSON event as MSG (the message's options), `json` the event object (no options),
  `csv` a CSV row (`formula_guard`) and `ocsf` the OCSF event as one JSON object (`version`,
  the product version).

Option values given as text (`--option facility=10` on the command line) are read as the
type the option takes, and an option that does not apply, or a bad value, raises
`EncodeError` naming the option; callers report it as `options.<name>`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from xavyo_siem.errors import EncodeError
from xavyo_siem.format.cef import CefFormatter
from xavyo_siem.format.csv_rows import CsvFormatter
from xavyo_siem.format.jsonl import to_json
from xavyo_siem.format.ocsf import OcsfFormatter
from xavyo_siem.format.rfc5424 import SyslogFormatter
from xavyo_siem.model import AuditEvent, ExportFormat

__all__ = [
    "FORMAT_OPTIONS",
    "JSON_OBJECT_FORMATS",
    "Formatter",
    "make_formatter",
    "read_format_options",
]

Formatter = Callable[[AuditEvent], str]

# A destination's options that shape its records; its other options configure its transport.
FORMAT_OPTIONS: Final = frozenset(
    ("hostname", "app_name", "procid", "facility", "enterprise_number", "formula_guard")
)

_INTEGER_OPTIONS: Final = frozenset(("facility", "enterprise_number", "cs_max_chars"))
_BOOLEAN_OPTIONS: Final = frozenset(("formula_guard",))
_TRUE: Final = frozenset(("true", "yes", "on", "1"))
_FALSE: Final = frozenset(("false", "no", "off", "0"))
_MESSAGE_OPTIONS: Final = SyslogFormatter.OPTIONS - {"body"}  # the format fixes the body
_OPTIONS: Final[dict[ExportFormat, frozenset[str]]] = {
    ExportFormat.CEF: CefFormatter.OPTIONS,
    ExportFormat.SYSLOG: _MESSAGE_OPTIONS,
    ExportFormat.JSON: frozenset(),
    ExportFormat.CSV: CsvFormatter.OPTIONS,
    ExportFormat.OCSF: OcsfFormatter.OPTIONS,
}
# Formats whose record is one JSON object: HTTP transports send it as an object, not a string.
JSON_OBJECT_FORMATS: Final = frozenset((ExportFormat.JSON, ExportFormat.OCSF))
_SYSLOG_BODIES: Final[dict[ExportFormat, Literal["cef", "ocsf"]]] = {
    ExportFormat.CEF: "cef",
    ExportFormat.OCSF: "ocsf",
}


def read_format_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with text values read as the type their option takes.

    An integer option's text is read as a decimal integer, a boolean option's as one of
    true/yes/on/1 or false/no/off/0; text that does not read so is kept, for the formatter
    to refuse with its own message. Other values are kept as they are.
    """
    read: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, str) and name in _INTEGER_OPTIONS:
            with contextlib.suppress(ValueError):
                value = int(value.strip())
        elif isinstance(value, str) and name in _BOOLEAN_OPTIONS:
            word = value.strip().lower()
            if word in _TRUE | _FALSE:
                value = word in _TRUE
        read[name] = value
    return read


def _check_options(options: Mapping[str, Any], allowed: frozenset[str], label: str) -> None:
    for name in sorted(options):
        if name not in allowed:
            raise EncodeError(name, f"does not apply to the {label}")


def make_formatter(
    fmt: ExportFormat | str,
    options: Mapping[str, Any] | None = None,
    *,
    syslog_transport: bool = False,
) -> Formatter:
    """The per-event formatter of `fmt` with `options`, built once (see the module docstring).

    `syslog_transport` says the records travel over a syslog transport. An unknown format,
    an option that does not apply, or a bad option value raises `EncodeError` naming it.
    """
    try:
        kind = ExportFormat(fmt)
    except ValueError:
        allowed = ", ".join(f.value for f in ExportFormat)
        raise EncodeError("format", f"must be one of {allowed}; got {str(fmt)[:40]!r}") from None
    read = read_format_options(options or {})
    if syslog_transport:
        _check_options(read, _MESSAGE_OPTIONS, f"{kind.value} format over syslog")
        return SyslogFormatter(body=_SYSLOG_BODIES.get(kind, "json"), **read)
    _check_options(read, _OPTIONS[kind], f"{kind.value} format")
    if kind is ExportFormat.CEF:
        return CefFormatter(**read)
    if kind is ExportFormat.SYSLOG:
        return SyslogFormatter(body="json", **read)
    if kind is ExportFormat.JSON:
        return to_json
    if kind is ExportFormat.OCSF:
        return OcsfFormatter(**read)
    return CsvFormatter(**read)
