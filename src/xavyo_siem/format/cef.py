"""CEF v0 (ArcSight Common Event Format): `to_cef`, `CefFormatter` and CEF escaping.

One event is one line::

    CEF:0|Xavyo|IDP|<version>|<event_type>|<event_name>|<severity>|rt=... externalId=... cat=...

The extension keys, in order (absent fields are left out; empty strings are written empty):

| key | field |
| --- | --- |
| `rt` | `timestamp`, epoch milliseconds (rounded down: CEF carries no microseconds) |
| `externalId` | `event_id` |
| `cat` | `category` |
| `act` | `action` (cap 63) |
| `outcome` | `outcome` (cap 63) |
| `suser` / `suid` | `actor_email` / `actor_id` (cap 1023) |
| `duser` | `target_user` (cap 1023) |
| `src` | `source_ip` when IPv4 |
| `c6a2` + `c6a2Label` | `source_ip` when IPv6 (without a zone index, see `cs6`) |
| `reason` | `reason` (cap 1023) |
| `requestClientApplication` | `user_agent` (cap 1023) |
| `cs1` + `cs1Label=tenantId` | `tenant_id` |
| `cs2` + `cs2Label=sessionId` | `session_id` |
| `cs3` + `cs3Label=requestId` | `request_id` |
| `cs4` + `cs4Label=targetResource` | `target_resource` |
| `cs5` + `cs5Label=metadata` | `metadata` as one compact JSON object (left out when empty) |
| `cs6` + `cs6Label=sourceAddressScoped` | `source_ip` exactly, when it is IPv6 with a zone index |
| `flexString1` + `flexString1Label=normalized` | `normalized`, the names joined by `,` |
| `flexString2` + `flexString2Label=sourceAddress` | `source_address` (cap 1023) |

`csN` values are capped at `cs_max_chars` (default 4000, CEF rev. 23+; 1023 for older
consumers). A value over its cap is cut before escaping and ends in "…".
"""

from __future__ import annotations

import re
from typing import Final, TypedDict, Unpack
from uuid import UUID

import orjson

from xavyo_siem import __version__
from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import C0_DEL_C1_BYTES, CONTROL_PICTURES, epoch_ms, truncate, utf8
from xavyo_siem.format.jsonl import metadata_json, metadata_json_without_controls
from xavyo_siem.model import AuditEvent
from xavyo_siem.speedups import plain_values_length, uuid_text

__all__ = [
    "CEF_HEADER_MAX",
    "CEF_VALUE_MAX",
    "CefFormatter",
    "CefOptions",
    "escape_cef_extension_value",
    "escape_cef_header",
    "to_cef",
]

_NO_CAP: Final = 1 << 62
_CACHE_ENTRIES: Final = 4096
_CACHED_HEADER_TEXT_MAX: Final = 512
_METADATA_KEY: Final = " cs5Label=metadata cs5="
_NORMALIZED_KEY: Final = " flexString1Label=normalized flexString1="
_SOURCE_ADDRESS_KEY: Final = " flexString2Label=sourceAddress flexString2="
_dumps: Final = orjson.dumps

VENDOR: Final = "Xavyo"
PRODUCT: Final = "IDP"

# The lengths of the CEF guide's extension dictionary, in characters, applied before escaping.
CEF_VALUE_MAX: Final[dict[str, int]] = {
    "act": 63,
    "outcome": 63,
    "suser": 1023,
    "suid": 1023,
    "duser": 1023,
    "reason": 1023,
    "requestClientApplication": 1023,
    "cat": 1023,
    "externalId": 40,
    "flexString2": 1023,
}
# ArcSight's header lengths (the CEF guide's field table).
CEF_HEADER_MAX: Final[dict[str, int]] = {
    "deviceVersion": 31,
    "signatureId": 1023,
    "name": 512,
}

# The CEF guide's header escaping: `\` -> `\\`, `|` -> `\|`; CR and LF removed (the header
# is one line); other controls pictured (see _text.py).
_HEADER_SPECIAL: Final = re.compile("[\\\\|\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROLS: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def escape_cef_header(value: str) -> str:
    """Escape one CEF header field: `\\` and `|` escaped, CR/LF removed, controls pictured."""
    if _HEADER_SPECIAL.search(value) is None:
        return value
    value = value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "")
    if _CONTROLS.search(value) is not None:
        value = value.translate(CONTROL_PICTURES)
    return value


# The CEF guide's extension-value escaping: `\` -> `\\`, `=` -> `\=`, CR -> `\r`, LF -> `\n`;
# `|` is left alone (escaping it is invalid in the extension); other controls pictured.
_EXTENSION_SPECIAL: Final = re.compile("[\\\\=\x00-\x08\x0a-\x1f\x7f-\x9f]")
_EXTENSION_SPECIAL_BYTES: Final = b"\\=" + C0_DEL_C1_BYTES


def escape_cef_extension_value(value: str) -> str:
    """Escape one CEF extension value: `\\`, `=`, CR, LF escaped, other controls pictured."""
    if _EXTENSION_SPECIAL.search(value) is None:
        return value
    value = (
        value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")
    )
    if _CONTROLS.search(value) is not None:
        value = value.translate(CONTROL_PICTURES)
    return value


def _check_header_option(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EncodeError(name, "must be a non-empty string")
    if _CONTROLS.search(value) is not None:
        raise EncodeError(name, "must not contain control characters")
    if len(value) > limit:
        raise EncodeError(name, f"must be at most {limit} characters, got {len(value)}")
    return escape_cef_header(value)


class CefFormatter:
    """Writes audit events as CEF lines for one destination; build once, call per event.

    Options: `version` (the Device Version header field; default the package version) and
    `cs_max_chars` (the cap of `cs1`..`cs6` values: 4000, or 1023 for older consumers).
    """

    OPTIONS: Final = frozenset({"version", "cs_max_chars"})

    __slots__ = ("_caps", "_cs_max", "_cut_over", "_headers", "_prefix", "_tenants")

    def __init__(self, *, version: str = __version__, cs_max_chars: int = 4000) -> None:
        device_version = _check_header_option("version", version, CEF_HEADER_MAX["deviceVersion"])
        if type(cs_max_chars) is not int or not 64 <= cs_max_chars <= 1_000_000:
            raise EncodeError("cs_max_chars", "must be an integer from 64 to 1000000")
        self._cs_max = cs_max_chars
        # The cap of each value by the key text in front of it; no cap for addresses/labels.
        self._caps: dict[str, int] = {
            " act=": CEF_VALUE_MAX["act"],
            " outcome=": CEF_VALUE_MAX["outcome"],
            " suser=": CEF_VALUE_MAX["suser"],
            " suid=": CEF_VALUE_MAX["suid"],
            " duser=": CEF_VALUE_MAX["duser"],
            " src=": _NO_CAP,
            " c6a2=": _NO_CAP,
            " c6a2Label=": _NO_CAP,
            " reason=": CEF_VALUE_MAX["reason"],
            " requestClientApplication=": CEF_VALUE_MAX["requestClientApplication"],
            " cs1Label=tenantId cs1=": cs_max_chars,
            " cs2Label=sessionId cs2=": cs_max_chars,
            " cs3Label=requestId cs3=": cs_max_chars,
            " cs4Label=targetResource cs4=": cs_max_chars,
            _METADATA_KEY: cs_max_chars,
            " cs6Label=sourceAddressScoped cs6=": cs_max_chars,
            _NORMALIZED_KEY: _NO_CAP,  # at most the field names, joined
            _SOURCE_ADDRESS_KEY: CEF_VALUE_MAX["flexString2"],
        }
        # act is cut where it is added, and outcome is at most 7 characters.
        self._cut_over = min(
            cap for k, cap in self._caps.items() if k not in (" act=", " outcome=")
        )
        self._prefix = f"CEF:0|{VENDOR}|{PRODUCT}|{device_version}|"
        # Header strings per (event_type, event_name, severity): event kinds repeat, so the
        # escaped header is built once per kind. Bounded in entries (cleared when full) and
        # in the length of the texts it keeps, so hostile events cannot grow it.
        self._headers: dict[tuple[str, str | None, int], str] = {}
        self._tenants: dict[int, str] = {}

    def _header(self, key: tuple[str, str | None, int]) -> str:
        event_type, event_name, severity = key
        signature = escape_cef_header(truncate(event_type, CEF_HEADER_MAX["signatureId"]))
        name = ""
        if event_name is not None:
            name = escape_cef_header(truncate(event_name, CEF_HEADER_MAX["name"]))
        if not name.strip():  # the CEF guide: no header field should be empty
            name = signature
        header = f"{self._prefix}{signature}|{name}|{severity}|"
        if len(event_type) + len(event_name or "") <= _CACHED_HEADER_TEXT_MAX:
            if len(self._headers) >= _CACHE_ENTRIES:
                self._headers.clear()
            self._headers[key] = header
        return header

    def _tenant(self, tenant_id: UUID) -> str:
        text = str(tenant_id)
        if len(self._tenants) >= _CACHE_ENTRIES:
            self._tenants.clear()
        self._tenants[tenant_id.int] = text
        return text

    def __call__(self, event: AuditEvent) -> str:
        """The CEF line of `event` (no line end).

        One function on purpose, longer than most: it runs once per event on the delivery
        hot path, and each call or attribute lookup split out of it costs measurable
        throughput; the per-destination work is done once in `__init__`.
        """
        key = (event.event_type, event.event_name, event.severity)
        header = self._headers.get(key)
        if header is None:
            header = self._header(key)
        # Tenant ids repeat, so their text is kept per tenant (keyed by the int: UUID hashes
        # slowly).
        event_id = uuid_text(event.event_id)
        tenant_key = event.tenant_id.int
        tenant = self._tenants.get(tenant_key)
        if tenant is None:
            tenant = self._tenant(event.tenant_id)
        rt = epoch_ms(event.timestamp)

        # After the head, `pieces` alternates " key=" and its value, not yet cut nor escaped:
        # values are at even indexes from 2. Known-clean values (rt, ids, cat) are in the head.
        pieces = [f"{header}rt={rt} externalId={event_id} cat={event.category._value_}"]
        value: str | None
        if (value := event.action) is not None:  # cut here: its cap is far below the others
            pieces += (" act=", value if len(value) <= 63 else truncate(value, 63))
        if (value := event.outcome) is not None:
            pieces += (" outcome=", value)
        if (value := event.actor_email) is not None:
            pieces += (" suser=", value)
        if (value := event.actor_id) is not None:
            pieces += (" suid=", value)
        if (value := event.target_user) is not None:
            pieces += (" duser=", value)
        scoped = None
        if (value := event.source_ip) is not None:
            if ":" not in value:
                pieces += (" src=", value)
            else:  # IPv6 goes to the IPv6 key; a zone index is invalid in a typed key
                address, percent, _zone = value.partition("%")
                pieces += (" c6a2=", address, " c6a2Label=", "sourceIPv6Address")
                if percent:
                    scoped = value
        if (value := event.reason) is not None:
            pieces += (" reason=", value)
        if (value := event.user_agent) is not None:
            pieces += (" requestClientApplication=", value)
        pieces += (" cs1Label=tenantId cs1=", tenant)
        if (value := event.session_id) is not None:
            pieces += (" cs2Label=sessionId cs2=", value)
        if (value := event.request_id) is not None:
            pieces += (" cs3Label=requestId cs3=", value)
        if (value := event.target_resource) is not None:
            pieces += (" cs4Label=targetResource cs4=", value)
        metadata_at = 0
        if metadata := event.metadata:
            try:  # orjson inline: this runs for nearly every event
                value = _dumps(metadata if type(metadata) is dict else dict(metadata)).decode()
            except (TypeError, orjson.JSONEncodeError):
                value = metadata_json(metadata)  # raises EncodeError naming the field
            pieces += (_METADATA_KEY, value)
            metadata_at = len(pieces) - 1
        if scoped is not None:
            pieces += (" cs6Label=sourceAddressScoped cs6=", scoped)
        if normalized := event.normalized:
            pieces += (_NORMALIZED_KEY, ",".join(normalized))
        if (value := event.source_address) is not None:
            pieces += (_SOURCE_ADDRESS_KEY, value)

        # The common case, decided in one pass (in C when built): no value needs escaping, and
        # all of them together are shorter than the smallest cap, so none is over its own.
        if 0 <= plain_values_length(pieces, _EXTENSION_SPECIAL_BYTES) <= self._cut_over:
            return "".join(pieces)
        values = "".join(pieces[2::2])
        # Caps: each value is checked against the dictionary length of its key.
        if len(values) > self._cut_over:
            caps = self._caps
            pieces[2::2] = [
                v if len(v) <= caps[k] else truncate(v, caps[k])
                for k, v in zip(pieces[1::2], pieces[2::2], strict=True)
            ]
            values = "".join(pieces[2::2])
        # One check over all values decides whether any of them needs escaping at all.
        try:
            raw = values.encode()
        except UnicodeEncodeError:
            raw = utf8(values, "event")  # raises EncodeError
        if len(raw.translate(None, _EXTENSION_SPECIAL_BYTES)) != len(raw):
            if metadata_at:  # DEL and C1 in the JSON become \u escapes, not pictures
                value = metadata_json_without_controls(metadata)
                cap = self._cs_max
                pieces[metadata_at] = value if len(value) <= cap else truncate(value, cap)
            pieces[2::2] = [escape_cef_extension_value(v) for v in pieces[2::2]]
        return "".join(pieces)


class CefOptions(TypedDict, total=False):
    """The options of `CefFormatter`, for `to_cef(event, **options)`."""

    version: str
    cs_max_chars: int


_DEFAULT: Final = CefFormatter()


def to_cef(event: AuditEvent, **options: Unpack[CefOptions]) -> str:
    """The CEF line of `event`; `options` are those of `CefFormatter` (`version`, ...)."""
    if not options:
        return _DEFAULT(event)
    return CefFormatter(**options)(event)
