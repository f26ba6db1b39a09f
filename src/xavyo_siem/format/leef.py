"""LEEF 2.0 (IBM QRadar's Log Event Extended Format): `to_leef`, `LeefFormatter`.

One event is one line::

    LEEF:2.0|Xavyo|IDP|<version>|<event_type>|<delimiter>|devTime=...<TAB>devTimeFormat=...

The header is pipe-delimited; its sixth field declares the attribute delimiter (`x09`, a
TAB, by default; or one printable ASCII punctuation character such as `^`). The attributes,
in order (absent fields are left out; empty strings are written empty):

| key | field |
| --- | --- |
| `devTime` | `timestamp`, UTC to the millisecond (rounded down), e.g. `2026-03-02T08:26:10.123Z` |
| `devTimeFormat` | always `yyyy-MM-dd'T'HH:mm:ss.SSSXXX` (the Java pattern of `devTime`) |
| `cat` | `category` |
| `sev` | `severity` (LEEF's 1-10 scale: 0 is written 1) |
| `eventId` | `event_id` |
| `tenantId` | `tenant_id` |
| `eventName` | `event_name` |
| `action` / `outcome` | `action` / `outcome` |
| `usrName` | `actor_email`, else `actor_id` |
| `actorId` | `actor_id` |
| `targetUser` | `target_user` |
| `resource` | `target_resource` |
| `src` | `source_ip` (an IPv6 zone index left out, see `sourceAddressScoped`) |
| `sourceAddressScoped` | `source_ip` exactly, when it is IPv6 with a zone index |
| `sourceAddress` | `source_address` |
| `reason`, `userAgent`, `sessionId`, `requestId` | the fields of those names |
| `metadata` | `metadata` as one compact JSON object (left out when empty) |
| `normalized` | `normalized`, the names joined by `,` (left out when none) |

LEEF defines no escaping at all, so nothing is escaped: what could break a record is
replaced visibly instead. In attribute values, the delimiter becomes its fullwidth form
(`^` -> U+FF3E) and TAB its Control Picture (U+2409), whatever the delimiter, for consumers
that ignore the declaration and split on TAB; CR, LF and other controls become their
pictures too. Header fields do the same, and replace `|` with U+FF5C. `=` needs nothing:
a key ends at the first `=` of its attribute.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Final, TypedDict, Unpack

import orjson

from xavyo_siem import __version__
from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import (
    C0_DEL_C1_BYTES,
    CONTROL_AND_NEWLINE_PICTURES,
    rfc3339_utc,
    utf8,
)
from xavyo_siem.format.jsonl import metadata_json, metadata_json_without_controls
from xavyo_siem.model import AuditEvent
from xavyo_siem.speedups import plain_values_length, uuid_text

__all__ = [
    "DEV_TIME_FORMAT",
    "LeefFormatter",
    "LeefOptions",
    "leef_delimiter",
    "to_leef",
]

VENDOR: Final = "Xavyo"
PRODUCT: Final = "IDP"
# The Java SimpleDateFormat pattern of `devTime`: ISO 8601, milliseconds, `Z` for UTC.
DEV_TIME_FORMAT: Final = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
VERSION_MAX: Final = 100
_CACHE_ENTRIES: Final = 4096
_CACHED_TYPE_MAX: Final = 256
_dumps: Final = orjson.dumps
_UTC_Z: Final = orjson.OPT_UTC_Z

# The delimiters a destination may choose: TAB, or printable ASCII punctuation other than
# `=` (it ends a key) and `|` (it ends a header field).
_PUNCTUATION: Final = frozenset(
    chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum() and chr(c) not in "=|"
)
_HEX: Final = re.compile("(?:0x|x)([0-9A-Fa-f]{1,2})")


def leef_delimiter(value: object) -> str:
    """The delimiter character of the `delimiter` option: one character (TAB or printable
    punctuation other than `=` and `|`) or its hex code prefixed `x` or `0x` (`x09`, `0x5E`).
    Anything else raises `EncodeError` naming `delimiter`."""
    if isinstance(value, str):
        match = _HEX.fullmatch(value)
        char = chr(int(match.group(1), 16)) if match is not None else value
        if char == "\t" or char in _PUNCTUATION:
            return char
    reason = "must be TAB (x09) or one ASCII punctuation character other than = and |"
    raise EncodeError("delimiter", f"{reason}, or its hex code (x5E); got {value!r}"[:160])


def _declaration(delimiter: str) -> str:
    """The header's delimiter field: hex for TAB (`x09`), the character itself otherwise."""
    return "x09" if delimiter == "\t" else delimiter


def _replacements(delimiter: str, *, header: bool) -> dict[int, str]:
    """What each character LEEF cannot carry in a value (or a header field) becomes.

    LEEF 2.0 defines no escape: controls, CR, LF and TAB become their Control Pictures (C1
    controls U+FFFD), a printable delimiter its fullwidth form (`^` -> U+FF3E), and in header
    fields `|` becomes U+FF5C.
    """
    table = {**CONTROL_AND_NEWLINE_PICTURES, 0x09: "\u2409"}
    if delimiter != "\t":
        table[ord(delimiter)] = chr(ord(delimiter) + 0xFEE0)
    if header:
        table[ord("|")] = "\uff5c"
    return table


# The optional attributes, in their order (see the module docstring).
_OPTIONAL_KEYS: Final = (
    "eventName",
    "action",
    "outcome",
    "usrName",
    "actorId",
    "targetUser",
    "resource",
    "src",
    "sourceAddressScoped",
    "sourceAddress",
    "reason",
    "userAgent",
    "sessionId",
    "requestId",
    "metadata",
    "normalized",
)


class LeefFormatter:
    """Writes audit events as LEEF 2.0 lines for one destination; build once, call per event.

    Options: `version` (the header's Version field; default the package version) and
    `delimiter` (the attribute delimiter: `x09`, TAB, by default; see `leef_delimiter`).
    """

    OPTIONS: Final = frozenset({"version", "delimiter"})

    __slots__ = (
        "_delimiter",
        "_fixed",
        "_keys",
        "_kinds",
        "_prefix",
        "_special",
        "_specials",
        "_table",
    )

    def __init__(self, *, version: str = __version__, delimiter: str = "x09") -> None:
        if not isinstance(version, str) or not version.strip():
            raise EncodeError("version", "must be a non-empty string")
        if len(version) > VERSION_MAX or not version.isprintable() or "|" in version:
            reason = f"must be at most {VERSION_MAX} printable characters without |"
            raise EncodeError("version", reason)
        delim = leef_delimiter(delimiter)
        self._delimiter = delim
        self._table = _replacements(delim, header=False)
        self._special = re.compile("[" + re.escape("".join(map(chr, self._table))) + "]")
        # Bytes whose absence proves a value clean (see _text.C0_DEL_C1_BYTES): the C0, DEL
        # and C1 lead bytes, TAB and the delimiter.
        self._specials = C0_DEL_C1_BYTES + b"\t" + delim.encode()
        self._prefix = f"LEEF:2.0|{VENDOR}|{PRODUCT}|{version}|"
        d = delim
        # The fixed attributes' texts around their values, and each optional attribute's
        # "<delimiter>key=", made once: per event only the values are joined in.
        self._fixed = (
            "devTime=",
            f"{d}devTimeFormat={DEV_TIME_FORMAT}{d}cat=",
            f"{d}sev=",
            f"{d}eventId=",
            f"{d}tenantId=",
        )
        self._keys = tuple(f"{d}{key}=" for key in _OPTIONAL_KEYS)
        # Per event type: the header up to the attributes. Bounded like CefFormatter's.
        self._kinds: dict[str, str] = {}

    def _kind(self, event_type: str) -> str:
        header_table = _replacements(self._delimiter, header=True)
        event_id = event_type.translate(header_table)
        head = f"{self._prefix}{event_id}|{_declaration(self._delimiter)}|"
        if len(event_type) <= _CACHED_TYPE_MAX:
            if len(self._kinds) >= _CACHE_ENTRIES:
                self._kinds.clear()
            self._kinds[event_type] = head
        return head

    def __call__(self, event: AuditEvent) -> str:
        """The LEEF line of `event` (no line end).

        One function on purpose, like `CefFormatter.__call__`: it runs once per event on the
        delivery hot path.
        """
        event_type = event.event_type
        head = self._kinds.get(event_type)
        if head is None:
            utf8(event_type, "event_type")
            head = self._kind(event_type)
        ts = event.timestamp
        if ts.tzinfo is UTC and ts.microsecond:  # orjson writes ...T08:26:10.123456Z, fast
            dev_time = _dumps(ts, option=_UTC_Z)[1:24].decode()
        else:
            dev_time = rfc3339_utc(ts)[:-4]
        severity = event.severity
        t_time, t_cat, t_sev, t_id, t_tenant = self._fixed
        (k_name, k_action, k_outcome, k_user, k_actor, k_target, k_resource, k_src, k_scoped,
         k_address, k_reason, k_agent, k_session, k_request, k_metadata, k_normalized,
         ) = self._keys  # fmt: skip
        # After the head, `pieces` alternates "<delimiter>key=" and its raw value: values are
        # at even indexes from 2. The head holds only values known to be clean; devTime keeps
        # milliseconds (LEEF's pattern has no microseconds).
        sev = str(severity) if severity else "1"
        pieces = [
            f"{head}{t_time}{dev_time}Z{t_cat}{event.category._value_}{t_sev}{sev}"
            f"{t_id}{uuid_text(event.event_id)}{t_tenant}{uuid_text(event.tenant_id)}"
        ]
        value: str | None
        if (value := event.event_name) is not None:
            pieces += (k_name, value)
        if (value := event.action) is not None:
            pieces += (k_action, value)
        if (value := event.outcome) is not None:
            pieces += (k_outcome, value)
        actor_id = event.actor_id
        if (value := event.actor_email if event.actor_email is not None else actor_id) is not None:
            pieces += (k_user, value)
        if actor_id is not None:
            pieces += (k_actor, actor_id)
        if (value := event.target_user) is not None:
            pieces += (k_target, value)
        if (value := event.target_resource) is not None:
            pieces += (k_resource, value)
        if (value := event.source_ip) is not None:
            address, percent, _zone = value.partition("%")
            pieces += (k_src, address)
            if percent:  # a zone index is invalid in an IP attribute
                pieces += (k_scoped, value)
        if (value := event.source_address) is not None:
            pieces += (k_address, value)
        if (value := event.reason) is not None:
            pieces += (k_reason, value)
        if (value := event.user_agent) is not None:
            pieces += (k_agent, value)
        if (value := event.session_id) is not None:
            pieces += (k_session, value)
        if (value := event.request_id) is not None:
            pieces += (k_request, value)
        metadata_at = 0
        if metadata := event.metadata:
            try:  # orjson inline: this runs for nearly every event
                value = _dumps(metadata if type(metadata) is dict else dict(metadata)).decode()
            except (TypeError, orjson.JSONEncodeError):
                value = metadata_json(metadata)  # raises EncodeError naming the field
            pieces += (k_metadata, value)
            metadata_at = len(pieces) - 1
        if normalized := event.normalized:
            pieces += (k_normalized, ",".join(normalized))

        # The common case, decided in one pass (in C when built): no value needs replacing.
        if plain_values_length(pieces, self._specials) < 0:
            # Non-ASCII or a special: one check over all values decides (as in CefFormatter).
            raw = utf8("".join(pieces[2::2]), "event")  # a lone surrogate: EncodeError
            if len(raw.translate(None, self._specials)) != len(raw):
                if metadata_at:  # DEL and C1 in the JSON become \u escapes, not pictures
                    pieces[metadata_at] = metadata_json_without_controls(metadata)
                special = self._special
                table = self._table
                pieces[2::2] = [
                    v if special.search(v) is None else v.translate(table) for v in pieces[2::2]
                ]
        return "".join(pieces)


class LeefOptions(TypedDict, total=False):
    """The options of `LeefFormatter`, for `to_leef(event, **options)`."""

    version: str
    delimiter: str


_DEFAULT: Final = LeefFormatter()


def to_leef(event: AuditEvent, **options: Unpack[LeefOptions]) -> str:
    """The LEEF 2.0 line of `event`; `options` are those of `LeefFormatter`."""
    if not options:
        return _DEFAULT(event)
    return LeefFormatter(**options)(event)
