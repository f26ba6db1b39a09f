"""ECS (Elastic Common Schema 9.4.0): `to_ecs` and `ecs_object`, one event as one JSON document.

The document uses ECS field names and types, nested as Elasticsearch stores them::

    {"@timestamp": "...Z", "ecs": {"version": "9.4.0"},
     "event": {"kind", "category", "type", "action", "outcome", "id", "severity", "reason",
               "module": "xavyo", "dataset": "xavyo.audit"},
     "message", "organization": {"id"}, "user": {"id", "email", "target": {"name"}},
     "group": {"name"}, "source": {"ip", "address"}, "user_agent": {"original"},
     "related": {"user", "ip"}, "labels": {...}, "xavyo": {"metadata", "normalized"}}

| AuditEvent | ECS |
| --- | --- |
| `timestamp` | `@timestamp` (RFC 3339 UTC, six fraction digits; Elasticsearch keeps milliseconds) |
| `event_id` | `event.id` |
| `tenant_id` | `organization.id` |
| `category`, `event_type` | `event.kind`, `.category`, `.type` (`ecs_categorisation`) |
| `category`, `event_type` | also exactly in `labels.category`, `labels.event_type` |
| `action` | `event.action`; without one, the event type lower-cased, `_` and space as `-` |
| `outcome` | `event.outcome` |
| `severity` | `event.severity` (0-10, as is) |
| `reason` | `event.reason` |
| `event_name` | `message` |
| `actor_id`, `actor_email` | `user.id`, `user.email` |
| `target_user` | `user.target.name` |
| `target_resource` | `group.name` for group changes, else `labels.target_resource` |
| `source_ip` | `source.ip` (without an IPv6 zone index) and `source.address` (exactly) |
| `source_address` | `source.address` when there is no `source_ip`, else `labels.source_address` |
| `user_agent` | `user_agent.original` |
| `session_id`, `request_id` | `labels.session_id`, `labels.request_id` |
| `metadata` | `xavyo.metadata` (an object, keys and values as they are) |
| `normalized` | `xavyo.normalized` (an array of field names) |

`related.user` lists `actor_id`, `actor_email` and `target_user` (each once), `related.ip`
the source IP. Absent fields are left out; JSON escapes every control character.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any, Final

from xavyo_siem.format._text import rfc3339_utc
from xavyo_siem.format.jsonl import json_line
from xavyo_siem.model import AuditEvent, EventCategory

__all__ = ["ECS_VERSION", "ecs_categorisation", "ecs_object", "to_ecs"]

ECS_VERSION: Final = "9.4.0"
_ECS: Final = {"version": ECS_VERSION}
_CACHE_ENTRIES: Final = 4096
_CACHED_TYPE_MAX: Final = 256

# Words of an event type (`GROUP_MEMBER_ADDED` -> GROUP, MEMBER, ADDED) that decide the
# ECS event.type of what happened.
_WORDS: Final = re.compile("[A-Z0-9]+")
_CREATION: Final = frozenset(
    ("CREATE", "CREATED", "PROVISION", "PROVISIONED", "REGISTER", "REGISTERED", "INVITED")
)
_DELETION: Final = frozenset(
    ("DELETE", "DELETED", "DEPROVISION", "DEPROVISIONED", "PURGED", "REMOVE", "REMOVED")
)
_MEMBERSHIP: Final = frozenset(("MEMBER", "MEMBERS", "MEMBERSHIP"))
_SESSION_END: Final = frozenset(("LOGOUT", "LOGOFF", "SIGNOUT", "SIGNOFF"))
_SESSION_ENDING: Final = frozenset(("END", "ENDED", "EXPIRED", "TERMINATED", "REVOKED"))
_AUTH_INFO: Final = frozenset(("MFA", "OTP", "TOTP", "CHALLENGE", "VERIFY", "VERIFIED", "2FA"))

Categorisation = tuple[str, tuple[str, ...], tuple[str, ...]]


def _verb(words: frozenset[str]) -> str:
    """`creation`, `deletion` or `change`: what an IAM or configuration event did."""
    if words & _CREATION:
        return "creation"
    if words & _DELETION:
        return "deletion"
    return "change"


def ecs_categorisation(category: EventCategory, event_type: str) -> Categorisation:
    """`(event.kind, event.category, event.type)` of an event, from ECS 9.4's allowed values.

    Each category maps to one ECS category, and the words of the event type pick the ECS
    types expected with it (see docs/formats.md for the table): a login starts an
    authentication, a logout ends it (and a session), an MFA step is `info`; an IAM event
    names what happened (`creation`, `deletion`, `change`) and to what (`user`, `group`,
    `admin`); an SoD violation is an `alert`.
    """
    words = frozenset(_WORDS.findall(event_type.upper()))
    match category:
        case EventCategory.AUTHENTICATION:
            if words & _SESSION_END or ("SESSION" in words and words & _SESSION_ENDING):
                return "event", ("authentication", "session"), ("end",)
            if words & _AUTH_INFO:
                return "event", ("authentication",), ("info",)
            return "event", ("authentication",), ("start",)
        case EventCategory.USER_LIFECYCLE | EventCategory.PROVISIONING:
            return "event", ("iam",), ("user", _verb(words))
        case EventCategory.GROUP_CHANGES:
            verb = "change" if words & _MEMBERSHIP else _verb(words)
            return "event", ("iam",), ("group", verb)
        case EventCategory.ENTITLEMENT:
            return "event", ("iam",), ("admin" if "ADMIN" in words else "user", "change")
        case EventCategory.ACCESS_REQUESTS:
            return "event", ("iam",), ("user", "info")
        case EventCategory.ADMINISTRATIVE:
            return "event", ("configuration",), (_verb(words),)
        case EventCategory.SOD_VIOLATION:
            return "alert", ("iam",), ("info",)
    return "event", ("iam",), ("info",)  # security


def _action_of_type(event_type: str) -> str:
    """An event type as an ECS action: lower case, `_` and spaces as `-` (`user-login`)."""
    return event_type.lower().replace("_", "-").replace(" ", "-")


_Kind = tuple[str, list[str], list[str], str]
_kinds: dict[tuple[EventCategory, str], _Kind] = {}


def _kind(category: EventCategory, event_type: str) -> _Kind:
    """`event.kind`, `.category`, `.type` of a kind of event and its default action (cached;
    the lists are shared by every document of the kind, and only read)."""
    key = (category, event_type)
    known = _kinds.get(key)
    if known is not None:
        return known
    kind, categories, types = ecs_categorisation(category, event_type)
    known = (kind, list(categories), list(types), _action_of_type(event_type))
    if len(event_type) <= _CACHED_TYPE_MAX:
        if len(_kinds) >= _CACHE_ENTRIES:
            _kinds.clear()
        _kinds[key] = known
    return known


def ecs_object(event: AuditEvent) -> dict[str, Any]:
    """The ECS document of `event`, built for orjson (ids and times left as objects)."""
    ts: Any = event.timestamp
    if not ts.microsecond or ts.tzinfo is not UTC:
        ts = rfc3339_utc(ts)
    kind, categories, types, default_action = _kind(event.category, event.event_type)
    action = event.action
    ev: dict[str, Any] = {
        "kind": kind,
        "category": categories,
        "type": types,
        "action": default_action if action is None else action,
    }
    if (outcome := event.outcome) is not None:
        ev["outcome"] = outcome
    ev["id"] = event.event_id
    ev["severity"] = event.severity
    if (reason := event.reason) is not None:
        ev["reason"] = reason
    ev["module"] = "xavyo"
    ev["dataset"] = "xavyo.audit"
    doc: dict[str, Any] = {"@timestamp": ts, "ecs": _ECS, "event": ev}
    if (name := event.event_name) is not None:
        doc["message"] = name
    doc["organization"] = {"id": event.tenant_id}
    labels: dict[str, str] = {"event_type": event.event_type, "category": event.category}
    related: list[str] = []
    user: dict[str, Any] = {}
    value: str | None
    if (value := event.actor_id) is not None:
        user["id"] = value
        related.append(value)
    if (value := event.actor_email) is not None:
        user["email"] = value
        if value not in related:
            related.append(value)
    if (value := event.target_user) is not None:
        user["target"] = {"name": value}
        if value not in related:
            related.append(value)
    if user:
        doc["user"] = user
    if (value := event.target_resource) is not None:
        if event.category is EventCategory.GROUP_CHANGES:
            doc["group"] = {"name": value}
        else:
            labels["target_resource"] = value
    ip = event.source_ip
    address = event.source_address
    if ip is not None:
        bare = ip.partition("%")[0]
        doc["source"] = {"ip": bare, "address": ip}
        if address is not None:
            labels["source_address"] = address
    elif address is not None:
        doc["source"] = {"address": address}
    if (value := event.user_agent) is not None:
        doc["user_agent"] = {"original": value}
    if related or ip is not None:
        doc["related"] = {"user": related} if related else {}
        if ip is not None:
            doc["related"]["ip"] = [bare]
    if (value := event.session_id) is not None:
        labels["session_id"] = value
    if (value := event.request_id) is not None:
        labels["request_id"] = value
    doc["labels"] = labels
    custom: dict[str, Any] = {}
    if metadata := event.metadata:
        custom["metadata"] = metadata if type(metadata) is dict else dict(metadata)
    if normalized := event.normalized:
        custom["normalized"] = list(normalized)
    if custom:
        doc["xavyo"] = custom
    return doc


def to_ecs(event: AuditEvent) -> str:
    """`event` as one ECS JSON document on one line (no line end), written by orjson."""
    return json_line(ecs_object(event))
