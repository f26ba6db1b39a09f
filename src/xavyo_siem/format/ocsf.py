"""OCSF 1.5.0 (Open Cybersecurity Schema Framework): `ocsf_event`, `to_ocsf`, `OcsfFormatter`.

One audit event becomes one OCSF event: a dict (`ocsf_event`, for writers that want
columns, such as Parquet) or that dict as one line of compact JSON (`to_ocsf`). The OCSF
version is pinned: `metadata.version` is always `OCSF_VERSION` ("1.5.0"), which has `actor`
in the IAM classes 3005 and 3006 (part of them since 1.4.0; in 1.3.0 only with the `host`
profile).

The class comes from the event type, or, for a type not in `EVENT_CLASSES`, from the
category (`CATEGORY_CLASSES`):

| class | used for |
| --- | --- |
| 3002 Authentication | logins, logouts, MFA challenges, failed logins, tokens issued |
| 3001 Account Change | user lifecycle, provisioning, MFA enrolment |
| 3006 Group Management | group membership changes |
| 3005 User Access Management | role and entitlement grants and revocations, access requests |
| 6003 API Activity | administrative actions |
| 2004 Detection Finding | separation-of-duties violations and other security events |

Where each event field goes (every class):

| field | OCSF attribute |
| --- | --- |
| `event_id` | `metadata.uid` (2004: also `finding_info.uid`) |
| `tenant_id` | `metadata.tenant_uid` |
| `timestamp` | `time` (epoch ms, rounded down) and `metadata.original_time` (RFC 3339, µs) |
| `event_type` | `metadata.event_code` |
| `severity` | `severity_id` (banded, `SEVERITY_IDS`) and `unmapped.severity` (0-10) |
| `outcome` | `status_id` / `status` (2004: `unmapped.outcome`; its `status_id` is 1 New) |
| `event_name` | `message` |
| `reason` | `status_detail` |
| `actor_id`, `actor_email` | `actor.user.uid`, `actor.user.name` (and `email_addr`, see below) |
| `session_id` | `actor.session.uid` |
| `source_ip` | `src_endpoint.ip` (and `unmapped.source_ip`, see below) |
| `source_address` | `src_endpoint.hostname` |
| `user_agent`, `request_id` | `http_request.user_agent`, `http_request.uid` |
| `category`, `action`, `metadata`, `normalized` | `unmapped` under their own names |

A text OCSF's email type accepts is also `email_addr`. An address OCSF's IP type cannot
hold (a zone index, over 40 characters) is `src_endpoint.ip` without its zone and, exactly,
`unmapped.source_ip`. In 2004 the actor, source and request go into `evidences[0]`.
`target_user` is `user` in 3001, 3002, 3005 and 3006 and a `resources` entry of type "user"
in 6003 and 2004; `target_resource` is `resource.name` in 3005 and 3006, a `resources` entry
in 6003 and 2004, and `unmapped.target_resource` in 3001 and 3002. Attributes a class
requires are always filled: `user` is the target user, else the actor (self-service), else
`UNKNOWN_USER`; `group`, `privileges`, `api.operation`, `actor` and `src_endpoint` fall back
as `docs/formats.md` says.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final, NamedTuple

import orjson

from xavyo_siem import __version__
from xavyo_siem.errors import EncodeError
from xavyo_siem.format._text import epoch_ms, rfc3339_utc
from xavyo_siem.model import AuditEvent, EventCategory, Outcome
from xavyo_siem.speedups import uuid_text

__all__ = [
    "CATEGORY_CLASSES",
    "EVENT_CLASSES",
    "OCSF_VERSION",
    "SEVERITY_IDS",
    "UNKNOWN_USER",
    "OcsfFormatter",
    "ocsf_event",
    "to_ocsf",
]

OCSF_VERSION: Final = "1.5.0"
VENDOR: Final = "Xavyo"
PRODUCT: Final = "IDP"
SERVICE: Final = "Xavyo IDP"  # the service authenticated to (3002), the actor of last resort
UNKNOWN: Final = "unknown"
# `user` when an event names neither a target user nor an actor; real users never carry
# `type_id`, so a reader can tell this stand-in from a user called "unknown".
UNKNOWN_USER: Final = {"name": UNKNOWN, "type_id": 0}

_dumps: Final = orjson.dumps

# OCSF severity_id (caption) for each 0-10 event severity: 0-1 Informational, 2-3 Low,
# 4-6 Medium, 7-8 High, 9-10 Critical (CEF's bands, with Informational below Low).
SEVERITY_IDS: Final[tuple[tuple[int, str], ...]] = (
    (1, "Informational"),
    (1, "Informational"),
    (2, "Low"),
    (2, "Low"),
    (3, "Medium"),
    (3, "Medium"),
    (3, "Medium"),
    (4, "High"),
    (4, "High"),
    (5, "Critical"),
    (5, "Critical"),
)

_SUCCESS: Final = (1, "Success")
# status_id and status of the event classes (not 2004, whose status is the finding's).
_STATUS: Final[dict[Outcome, tuple[int, str]]] = {
    Outcome.SUCCESS: _SUCCESS,
    Outcome.FAILURE: (2, "Failure"),
    Outcome.UNKNOWN: (0, "Unknown"),
}

# OCSF's email_t, narrowed (no `,` in the local part): only text this accepts is written
# to `email_addr`, so the schema's pattern always accepts it; the text is in `name` anyway.
_EMAIL: Final = re.compile(r"[a-zA-Z0-9!#$%&'*+\-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9.-]+")
_email_shaped: Final = _EMAIL.fullmatch
_IP_MAX: Final = 40  # OCSF's ip_t maxLength


class OcsfClass(NamedTuple):
    """One OCSF class and activity: the constant attributes every event of it starts with."""

    class_uid: int
    activity_id: int
    head: dict[str, Any]


_CATEGORIES: Final = {2: "Findings", 3: "Identity & Access Management", 6: "Application Activity"}
_CLASS_NAMES: Final = {
    2004: "Detection Finding",
    3001: "Account Change",
    3002: "Authentication",
    3005: "User Access Management",
    3006: "Group Management",
    6003: "API Activity",
}
_ACTIVITIES: Final[dict[int, dict[int, str]]] = {
    2004: {1: "Create"},
    3001: {1: "Create", 4: "Password Reset", 5: "Disable", 10: "MFA Factor Enable", 99: "Other"},
    3002: {1: "Logon", 2: "Logoff", 3: "Authentication Ticket", 99: "Other"},
    3005: {1: "Assign Privileges", 2: "Revoke Privileges", 99: "Other"},
    3006: {3: "Add User", 4: "Remove User", 99: "Other"},
    6003: {3: "Update", 99: "Other"},
}


def _ocsf_class(class_uid: int, activity_id: int) -> OcsfClass:
    class_name = _CLASS_NAMES[class_uid]
    activity_name = _ACTIVITIES[class_uid][activity_id]
    head = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": class_uid // 1000,
        "category_name": _CATEGORIES[class_uid // 1000],
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
    }
    return OcsfClass(class_uid, activity_id, head)


_C = EventCategory
# (event_type, category) -> class and activity; the category must match too, so a known
# type filed under another category is classed by that category.
EVENT_CLASSES: Final[dict[tuple[str, EventCategory], OcsfClass]] = {
    ("USER_LOGIN", _C.AUTHENTICATION): _ocsf_class(3002, 1),
    ("AUTH_FAILURE", _C.AUTHENTICATION): _ocsf_class(3002, 1),
    ("USER_LOGOUT", _C.AUTHENTICATION): _ocsf_class(3002, 2),
    ("MFA_CHALLENGE", _C.AUTHENTICATION): _ocsf_class(3002, 99),
    ("TOKEN_ISSUED", _C.AUTHENTICATION): _ocsf_class(3002, 3),
    ("MFA_ENROLLED", _C.SECURITY): _ocsf_class(3001, 10),
    ("PASSWORD_RESET", _C.USER_LIFECYCLE): _ocsf_class(3001, 4),
    ("USER_CREATED", _C.USER_LIFECYCLE): _ocsf_class(3001, 1),
    ("USER_DISABLED", _C.USER_LIFECYCLE): _ocsf_class(3001, 5),
    ("ACCOUNT_PROVISIONED", _C.PROVISIONING): _ocsf_class(3001, 1),
    ("GROUP_MEMBER_ADDED", _C.GROUP_CHANGES): _ocsf_class(3006, 3),
    ("GROUP_MEMBER_REMOVED", _C.GROUP_CHANGES): _ocsf_class(3006, 4),
    ("ROLE_ASSIGNED", _C.ENTITLEMENT): _ocsf_class(3005, 1),
    ("ROLE_REVOKED", _C.ENTITLEMENT): _ocsf_class(3005, 2),
    ("ACCESS_REQUESTED", _C.ACCESS_REQUESTS): _ocsf_class(3005, 99),
    ("ADMIN_SETTINGS_CHANGED", _C.ADMINISTRATIVE): _ocsf_class(6003, 3),
    ("SOD_VIOLATION", _C.SOD_VIOLATION): _ocsf_class(2004, 1),
}
CATEGORY_CLASSES: Final[dict[EventCategory, OcsfClass]] = {
    _C.AUTHENTICATION: _ocsf_class(3002, 99),
    _C.USER_LIFECYCLE: _ocsf_class(3001, 99),
    _C.PROVISIONING: _ocsf_class(3001, 99),
    _C.GROUP_CHANGES: _ocsf_class(3006, 99),
    _C.ACCESS_REQUESTS: _ocsf_class(3005, 99),
    _C.ENTITLEMENT: _ocsf_class(3005, 99),
    _C.ADMINISTRATIVE: _ocsf_class(6003, 99),
    _C.SECURITY: _ocsf_class(2004, 1),
    _C.SOD_VIOLATION: _ocsf_class(2004, 1),
}
_FINDING_TYPES: Final = {_C.SOD_VIOLATION: "SoD Violation", _C.SECURITY: "Security Event"}
# event_type -> (its category, class, category value): the fast path of the lookup above.
_BY_TYPE: Final = {
    event_type: (category, kind, category.value)
    for (event_type, category), kind in EVENT_CLASSES.items()
}
_FINDING: Final = 2004
_API: Final = 6003
_GROUP: Final = 3006
_ACCESS: Final = 3005
_AUTHENTICATION: Final = 3002


def _person(uid: str | None, name: str | None) -> dict[str, Any] | None:
    """An OCSF `user`: the id as `uid`, the address or login as `name` (+ `email_addr`)."""
    person: dict[str, Any] = {}
    if uid is not None:
        person["uid"] = uid
    if name is not None:
        person["name"] = name
        if _email_shaped(name) is not None:
            person["email_addr"] = name
    return person or None


def _fitting_ip(ip: str) -> str:
    """`ip`, which has a zone index or over 40 characters, as OCSF's ip_t holds it: without
    its zone, compressed (at most 39 characters)."""
    try:
        return str(ipaddress.ip_address(ip.partition("%")[0]))
    except ValueError:  # only an unvalidated event gets here
        raise EncodeError("source_ip", "is not an IP address") from None


class OcsfFormatter:
    """Writes audit events as OCSF 1.5.0 events for one destination; build once, call per event.

    Option: `version`, the product version in `metadata.product.version` (default the
    package version). Calling the formatter gives the JSON line; `event` gives the dict.
    """

    OPTIONS: Final = frozenset({"version"})

    __slots__ = ("_product",)

    def __init__(self, *, version: str = __version__) -> None:
        if type(version) is not str or not version.strip() or len(version) > 255:
            raise EncodeError("version", "must be a non-blank text of at most 255 characters")
        self._product = {"name": PRODUCT, "vendor_name": VENDOR, "version": version}

    def event(self, event: AuditEvent) -> dict[str, Any]:
        """The OCSF event of `event` as a dict of JSON values (str, int, bool, list, dict).

        Each call builds new objects throughout: the dict may be changed by its caller.

        One function on purpose, longer than most: it runs once per event on the delivery
        path, and each call it saves is a few per cent of the encoder's time.
        """
        category = event.category
        typed = _BY_TYPE.get(event.event_type)
        if typed is not None and typed[0] is category:
            kind, category_value = typed[1], typed[2]
        else:
            kind, category_value = CATEGORY_CLASSES[category], category.value
        class_uid = kind.class_uid
        out = dict(kind.head)
        timestamp = event.timestamp
        out["time"] = epoch_ms(timestamp)
        severity = event.severity
        out["severity_id"], out["severity"] = SEVERITY_IDS[severity]
        outcome = event.outcome
        if class_uid == _FINDING:
            out["status_id"], out["status"] = 1, "New"
        elif outcome is not None:
            out["status_id"], out["status"] = (
                _SUCCESS if outcome is Outcome.SUCCESS else _STATUS[outcome]
            )
        if (text := event.event_name) is not None:
            out["message"] = text
        if (text := event.reason) is not None:
            out["status_detail"] = text
        event_uid = uuid_text(event.event_id)
        out["metadata"] = {
            "version": OCSF_VERSION,
            "product": dict(self._product),
            "uid": event_uid,
            "tenant_uid": uuid_text(event.tenant_id),
            "original_time": rfc3339_utc(timestamp),
            "event_code": event.event_type,
        }
        unmapped: dict[str, Any] = {"category": category_value, "severity": severity}
        if (text := event.action) is not None:
            unmapped["action"] = text

        actor = _person(event.actor_id, event.actor_email)
        who: dict[str, Any] = {} if actor is None else {"user": actor}
        if (text := event.session_id) is not None:
            who["session"] = {"uid": text}
        source: dict[str, Any] = {}
        if (ip := event.source_ip) is not None:
            if "%" not in ip and len(ip) <= _IP_MAX:
                source["ip"] = ip
            else:
                source["ip"] = _fitting_ip(ip)
                unmapped["source_ip"] = ip
        if (text := event.source_address) is not None:
            source["hostname"] = text
        request: dict[str, Any] = {}
        if (text := event.user_agent) is not None:
            request["user_agent"] = text
        if (text := event.request_id) is not None:
            request["uid"] = text
        target_user = event.target_user
        resource = event.target_resource

        if class_uid == _FINDING:
            # Who, from where and how go into one evidence; the outcome has no place.
            if outcome is not None:
                unmapped["outcome"] = outcome.value
            out["finding_info"] = {
                "uid": event_uid,
                "title": event.event_name or event.event_type,
                "types": [_FINDING_TYPES[category]],
            }
            evidence: dict[str, Any] = {}
            if who:
                evidence["actor"] = who
            if source:
                evidence["src_endpoint"] = source
            if request:  # an evidence needs an actor or an endpoint: the stand-in actor
                evidence["http_request"] = request
                if len(evidence) == 1:
                    evidence["actor"] = {"app_name": SERVICE}
            if evidence:
                out["evidences"] = [evidence]
            if resources := _resources(target_user, resource):
                out["resources"] = resources
        elif class_uid == _API:
            # actor, api and src_endpoint are required: stand-ins when the event lacks them.
            out["actor"] = who or {"app_name": SERVICE}
            out["api"] = {"operation": event.action or event.event_type}
            out["src_endpoint"] = source or {"name": UNKNOWN}
            if request:
                out["http_request"] = request
            if resources := _resources(target_user, resource):
                out["resources"] = resources
        else:
            if who:
                out["actor"] = who
            if class_uid == _GROUP:
                if target_user is not None:
                    out["user"] = _person(None, target_user)
                out["group"] = {"name": UNKNOWN if resource is None else resource}
            elif target_user is not None:
                out["user"] = _person(None, target_user)
            else:  # no target: the actor's own account (self-service), else unknown
                out["user"] = dict(actor if actor is not None else UNKNOWN_USER)
            if class_uid == _ACCESS:
                if resource is not None:
                    out["privileges"] = [resource]
                else:
                    out["privileges"] = [event.action or event.event_type]
            if class_uid in (_ACCESS, _GROUP):
                if resource is not None:
                    out["resource"] = {"name": resource}
            elif resource is not None:
                unmapped["target_resource"] = resource
            if class_uid == _AUTHENTICATION:
                out["service"] = {"name": SERVICE}
                if event.event_type == "MFA_CHALLENGE":
                    out["is_mfa"] = True
            if source:
                out["src_endpoint"] = source
            if request:
                out["http_request"] = request

        if metadata := event.metadata:
            unmapped["metadata"] = dict(metadata)
        if normalized := event.normalized:
            unmapped["normalized"] = list(normalized)
        out["unmapped"] = unmapped
        return out

    def __call__(self, event: AuditEvent) -> str:
        """The OCSF event of `event` as one line of compact JSON (no line end)."""
        return _dumps(self.event(event)).decode()


def _resources(target_user: str | None, resource: str | None) -> list[dict[str, Any]]:
    """`resources` of 6003 and 2004: the target user (type "user"), then the resource."""
    resources: list[dict[str, Any]] = []
    if target_user is not None:
        resources.append({"type": "user", "name": target_user})
    if resource is not None:
        resources.append({"name": resource})
    return resources


_DEFAULT: Final = OcsfFormatter()


def ocsf_event(event: AuditEvent, *, version: str = __version__) -> dict[str, Any]:
    """The OCSF event of `event` as a dict; `version` is the product version."""
    formatter = _DEFAULT if version == __version__ else OcsfFormatter(version=version)
    return formatter.event(event)


def to_ocsf(event: AuditEvent, *, version: str = __version__) -> str:
    """The OCSF event of `event` as one line of compact JSON; `version` as for `ocsf_event`."""
    formatter = _DEFAULT if version == __version__ else OcsfFormatter(version=version)
    return formatter(event)
