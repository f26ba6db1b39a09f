"""RFC 5424 syslog: `to_syslog`, `SyslogFormatter`, SD escaping, the severity map.

One event is one message, with no line end (framing is the transport's job)::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [xavyo@PEN eventId="..." ...] [BOM]MSG

* PRI = facility * 8 + `SYSLOG_SEVERITY[event.severity]` (facility default 13, log audit).
* TIMESTAMP is the event's time, RFC 3339 UTC with six fraction digits and `Z`.
* HOSTNAME, APP-NAME and PROCID are options; MSGID is the event type. Each is cut to its
  RFC length (255, 48, 128, 32) with every character outside printable US-ASCII (33-126)
  replaced by `_`; an empty value is written `-` (NILVALUE). The exact event type is in SD.
* One SD element `[xavyo@<enterprise_number> ...]` holds the identifiers and classifiers
  (`SD_PARAMS`); PARAM-VALUEs escape `"`, `\\` and `]`, and picture control characters.
* MSG is the event as JSON (`to_json`), as CEF (`to_cef`) or as OCSF (`to_ocsf`), after a
  UTF-8 BOM when it is not pure ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC
from typing import Final, Literal, TypedDict, Unpack

import orjson

from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import (
    C0_DEL_C1_BYTES,
    CONTROL_AND_NEWLINE_PICTURES,
    rfc3339_utc,
    utf8,
)
from xavyo_siem.format.cef import CefFormatter
from xavyo_siem.format.jsonl import to_json
from xavyo_siem.format.ocsf import OcsfFormatter
from xavyo_siem.model import AuditEvent
from xavyo_siem.speedups import plain_values_length

__all__ = [
    "DEFAULT_ENTERPRISE_NUMBER",
    "DEFAULT_FACILITY",
    "SD_PARAMS",
    "SYSLOG_SEVERITY",
    "SyslogFormatter",
    "SyslogOptions",
    "escape_sd_param_value",
    "sanitize_header_field",
    "to_syslog",
]

# The event's 0-10 severity -> syslog severity (0 emerg ... 7 debug). Bands follow CEF's
# (0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High), graded within them. Audit events never
# map to 7 (debug: collectors often drop it) nor to 0 (emerg: "system unusable", which
# syslog daemons broadcast to every terminal).
SYSLOG_SEVERITY: Final[dict[int, int]] = {
    0: 6,  # informational
    1: 6,
    2: 6,
    3: 6,
    4: 5,  # notice
    5: 5,
    6: 4,  # warning
    7: 4,
    8: 3,  # error
    9: 2,  # critical
    10: 1,  # alert
}

DEFAULT_FACILITY: Final = 13  # log audit
# RFC 5424's example Private Enterprise Number. A setting: a deployment should use its own.
DEFAULT_ENTERPRISE_NUMBER: Final = 32473

# RFC 5424 section 6 (ABNF): the longest each header field may be.
HOSTNAME_MAX: Final = 255
APP_NAME_MAX: Final = 48
PROCID_MAX: Final = 128
MSGID_MAX: Final = 32

# The PARAM-NAMEs of the SD element and the field each holds, in order. Absent fields are
# left out. Free text (event name, user agent, reason, target resource, source address,
# metadata) is in MSG.
SD_PARAMS: Final[tuple[tuple[str, str], ...]] = (
    ("eventId", "event_id"),
    ("tenantId", "tenant_id"),
    ("eventType", "event_type"),
    ("category", "category"),
    ("severity", "severity"),
    ("outcome", "outcome"),
    ("action", "action"),
    ("actorId", "actor_id"),
    ("actorEmail", "actor_email"),
    ("targetUser", "target_user"),
    ("sourceIp", "source_ip"),
    ("sessionId", "session_id"),
    ("requestId", "request_id"),
    ("normalized", "normalized"),  # the names joined by ","
)

_BOM: Final = "\ufeff"
_CACHE_ENTRIES: Final = 4096
_CACHED_TYPE_MAX: Final = 256
_dumps: Final = orjson.dumps
_UTC_Z: Final = orjson.OPT_UTC_Z

# RFC 5424 section 6: header fields hold printable US-ASCII only (PRINTUSASCII).
_NOT_PRINTUSASCII: Final = re.compile("[^\x21-\x7e]")


def sanitize_header_field(value: str, limit: int) -> str:
    """A HOSTNAME / APP-NAME / PROCID / MSGID: cut to `limit`, non-printable-ASCII -> `_`.

    An empty result is the NILVALUE `-`.
    """
    value = _NOT_PRINTUSASCII.sub("_", value[:limit])
    return value or "-"


# RFC 5424 section 6.3.3 PARAM-VALUE: `"`, `\` and `]` MUST be escaped. Controls, CR and
# LF included, are pictured (see _text.py): a raw LF would end the message under LF framing.
_SD_SPECIAL: Final = re.compile('[\\\\"\\]\x00-\x08\x0a-\x1f\x7f-\x9f]')
_CONTROLS: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_SD_SPECIAL_BYTES: Final = b'\\"]' + C0_DEL_C1_BYTES


def escape_sd_param_value(value: str) -> str:
    """Escape one SD PARAM-VALUE: `\\` `"` `]` escaped, controls (CR, LF too) pictured."""
    if _SD_SPECIAL.search(value) is None:
        return value
    value = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    if _CONTROLS.search(value) is not None:
        value = value.translate(CONTROL_AND_NEWLINE_PICTURES)
    return value


class SyslogOptions(TypedDict, total=False):
    """The options of `SyslogFormatter`, for `to_syslog(event, **options)`."""

    hostname: str
    app_name: str
    procid: str | int
    facility: int
    enterprise_number: int
    body: Literal["json", "cef", "ocsf"]
    cef_version: str


class SyslogFormatter:
    """Writes audit events as RFC 5424 messages for one destination; build once, call per event.

    Options: `hostname` (default `-`), `app_name` (default `xavyo-siem`), `procid` (default
    `-`), `facility` (0-23, default 13 log audit), `enterprise_number` (the PEN in the SD-ID,
    default 32473, RFC 5424's example: set your own), `body` (`"json"`, `"cef"` or `"ocsf"`) and
    `cef_version` (the CEF Device Version when `body="cef"`).
    """

    OPTIONS: Final = frozenset(SyslogOptions.__annotations__)

    __slots__ = ("_body", "_json_body", "_kinds", "_middle", "_pri", "_sd_open")

    def __init__(
        self,
        *,
        hostname: str = "-",
        app_name: str = "xavyo-siem",
        procid: str | int = "-",
        facility: int = DEFAULT_FACILITY,
        enterprise_number: int = DEFAULT_ENTERPRISE_NUMBER,
        body: Literal["json", "cef", "ocsf"] = "json",
        cef_version: str | None = None,
    ) -> None:
        for name, value in (("hostname", hostname), ("app_name", app_name)):
            if not isinstance(value, str):
                raise EncodeError(name, f"must be a string, got {type(value).__name__}")
        if not isinstance(procid, str) and type(procid) is not int:
            raise EncodeError("procid", f"must be a string or an integer, got {procid!r}"[:120])
        if type(facility) is not int or not 0 <= facility <= 23:
            raise EncodeError(
                "facility", f"must be an integer from 0 to 23, got {facility!r}"[:120]
            )
        if type(enterprise_number) is not int or not 1 <= enterprise_number <= 2**32 - 1:
            reason = f"must be an IANA Private Enterprise Number, got {enterprise_number!r}"
            raise EncodeError("enterprise_number", reason[:120])
        self._body: Callable[[AuditEvent], str]
        self._json_body = body == "json"
        if body == "json":
            self._body = to_json
        elif body == "cef":
            self._body = (
                CefFormatter() if cef_version is None else CefFormatter(version=cef_version)
            )
        elif body == "ocsf":
            self._body = OcsfFormatter()
        else:
            raise EncodeError("body", f"must be 'json', 'cef' or 'ocsf', got {body!r}"[:120])
        host = sanitize_header_field(hostname, HOSTNAME_MAX)
        app = sanitize_header_field(app_name, APP_NAME_MAX)
        proc = sanitize_header_field(str(procid), PROCID_MAX)
        # "<PRI>1 " per event severity, and " HOSTNAME APP-NAME PROCID " after the time.
        self._pri = tuple(
            f"<{facility * 8 + SYSLOG_SEVERITY[severity]}>1 " for severity in range(11)
        )
        middle = f" {host} {app} {proc} "
        self._sd_open = f'[xavyo@{enterprise_number} eventId="'
        # Per event type: (" HOSTNAME APP PROCID MSGID ", escaped type). Event types repeat;
        # the cache is bounded in entries and in the length of the types it keeps.
        self._kinds: dict[str, tuple[str, str]] = {}
        self._middle = middle

    def _kind(self, event_type: str) -> tuple[str, str]:
        kind = (
            f"{self._middle}{sanitize_header_field(event_type, MSGID_MAX)} ",
            escape_sd_param_value(event_type),
        )
        if len(event_type) <= _CACHED_TYPE_MAX:  # a huge hostile type is never kept
            if len(self._kinds) >= _CACHE_ENTRIES:
                self._kinds.clear()
            self._kinds[event_type] = kind
        return kind

    def __call__(self, event: AuditEvent) -> str:
        """The RFC 5424 message of `event` (no frame, no line end)."""
        event_type = event.event_type
        kind = self._kinds.get(event_type)
        if kind is None:
            kind = self._kind(event_type)
        head, sd_type = kind
        if self._json_body:
            # The JSON body starts {"event_id":"<36>","tenant_id":"<36>","timestamp":"<27>",
            # (to_dict order, canonical UUIDs, a fixed-width time): take the texts from it.
            msg = to_json(event)
            event_id, tenant_id, timestamp = msg[13:49], msg[64:100], msg[115:142]
        else:
            msg = self._body(event)
            ts = event.timestamp
            if ts.tzinfo is UTC and ts.microsecond:
                # orjson writes UUIDs and this time as needed, 3x faster than str():
                # ["<event id>","<tenant id>","YYYY-MM-DDTHH:MM:SS.ffffffZ"]
                fixed = _dumps((event.event_id, event.tenant_id, ts), option=_UTC_Z).decode()
                timestamp = fixed[80:-2]
            else:
                fixed = _dumps((event.event_id, event.tenant_id)).decode()
                timestamp = rfc3339_utc(ts)
            event_id, tenant_id = fixed[2:38], fixed[41:77]
        # After the fixed head (which ends inside severity's quotes), `pieces` alternates
        # '" name="' and a value not yet escaped: the values are at even indexes from 2.
        pieces = [
            f'{self._pri[event.severity]}{timestamp}{head}{self._sd_open}{event_id}"'
            f' tenantId="{tenant_id}" eventType="{sd_type}" category="{event.category._value_}"'
            f' severity="{event.severity}'
        ]
        value: str | None
        if (value := event.outcome) is not None:
            pieces += ('" outcome="', value)
        if (value := event.action) is not None:
            pieces += ('" action="', value)
        if (value := event.actor_id) is not None:
            pieces += ('" actorId="', value)
        if (value := event.actor_email) is not None:
            pieces += ('" actorEmail="', value)
        if (value := event.target_user) is not None:
            pieces += ('" targetUser="', value)
        if (value := event.source_ip) is not None:
            pieces += ('" sourceIp="', value)
        if (value := event.session_id) is not None:
            pieces += ('" sessionId="', value)
        if (value := event.request_id) is not None:
            pieces += ('" requestId="', value)
        if normalized := event.normalized:
            pieces += ('" normalized="', ",".join(normalized))
        if plain_values_length(pieces, _SD_SPECIAL_BYTES) < 0:  # one pass, in C when built
            raw = utf8("".join(pieces[2::2]), "event")
            if len(raw.translate(None, _SD_SPECIAL_BYTES)) != len(raw):
                pieces[2::2] = [escape_sd_param_value(v) for v in pieces[2::2]]
        pieces.append('"] ')
        pieces.append(msg if msg.isascii() else _BOM + msg)
        return "".join(pieces)


_DEFAULT: Final = SyslogFormatter()


def to_syslog(event: AuditEvent, **options: Unpack[SyslogOptions]) -> str:
    """The RFC 5424 message of `event`; `options` are those of `SyslogFormatter`."""
    if not options:
        return _DEFAULT(event)
    return SyslogFormatter(**options)(event)
