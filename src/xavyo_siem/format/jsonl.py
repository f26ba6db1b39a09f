"""JSON lines: `to_json`, one audit event as one line of JSON in its `to_dict` form.

The object has the field names and order of `AuditEvent.to_dict()`: absent fields are left
out, `metadata` only when it has entries, the timestamp is RFC 3339 UTC with six fraction
digits and `Z`. Control characters are escaped by JSON, so the line never holds a raw CR or
LF; other text (non-ASCII included) is written as UTF-8, unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Final

import orjson

from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import rfc3339_utc
from xavyo_siem.model import AuditEvent

__all__ = [
    "event_object",
    "json_line",
    "metadata_json",
    "metadata_json_without_controls",
    "to_json",
]

_UTC_Z: Final = orjson.OPT_UTC_Z

# DEL and C1 controls pass through JSON unescaped (JSON only requires escaping C0).
_JSON_RAW_CONTROLS: Final = re.compile("[\x7f-\x9f]")


def event_object(event: AuditEvent) -> dict[str, Any]:
    """The `to_dict` form of `event`, built for orjson: ids, enums and times left as objects.

    orjson writes a UUID in its canonical form, an enum as its value, and an aware UTC
    datetime with microseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, which is what `to_dict`
    writes; a datetime on a whole second (which orjson would write without fraction) or not
    in UTC is formatted here instead.
    """
    ts: Any = event.timestamp
    if not ts.microsecond or ts.tzinfo is not UTC:
        ts = rfc3339_utc(ts)
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "tenant_id": event.tenant_id,
        "timestamp": ts,
        "event_type": event.event_type,
        "category": event.category,
        "severity": event.severity,
    }
    value: str | None
    if (value := event.outcome) is not None:
        out["outcome"] = value
    if (value := event.source_ip) is not None:
        out["source_ip"] = value
    if (value := event.event_name) is not None:
        out["event_name"] = value
    if (value := event.action) is not None:
        out["action"] = value
    if (value := event.actor_id) is not None:
        out["actor_id"] = value
    if (value := event.actor_email) is not None:
        out["actor_email"] = value
    if (value := event.user_agent) is not None:
        out["user_agent"] = value
    if (value := event.target_user) is not None:
        out["target_user"] = value
    if (value := event.target_resource) is not None:
        out["target_resource"] = value
    if (value := event.reason) is not None:
        out["reason"] = value
    if (value := event.session_id) is not None:
        out["session_id"] = value
    if (value := event.request_id) is not None:
        out["request_id"] = value
    if (value := event.source_address) is not None:
        out["source_address"] = value
    if metadata := event.metadata:
        out["metadata"] = metadata if type(metadata) is dict else dict(metadata)
    if normalized := event.normalized:
        out["normalized"] = list(normalized)
    return out


def metadata_json(metadata: Mapping[str, str]) -> str:
    """`metadata` as one compact JSON object (keys in their order), e.g. `{"geo":"FR"}`."""
    try:
        return orjson.dumps(metadata if type(metadata) is dict else dict(metadata)).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:  # only an unvalidated event gets here
        raise EncodeError("metadata", f"cannot be written as JSON: {exc}") from None


def metadata_json_without_controls(metadata: Mapping[str, str]) -> str:
    """`metadata_json`, with DEL and C1 controls written as `\\u` escapes too, so the JSON
    stays exact and holds no control character at all (for formats that cannot carry one)."""
    text = metadata_json(metadata)
    if _JSON_RAW_CONTROLS.search(text) is not None:
        text = _JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def json_line(document: dict[str, Any]) -> str:
    """`document` (an event's object, ids and times as objects) as one line of JSON."""
    try:
        return orjson.dumps(document, option=_UTC_Z).decode()
    except orjson.JSONEncodeError as exc:  # only an unvalidated event gets here
        raise EncodeError("event", f"cannot be written as JSON: {exc}") from None


def to_json(event: AuditEvent) -> str:
    """`event` as one line of JSON (no line end), the `to_dict` form, written by orjson."""
    return json_line(event_object(event))
