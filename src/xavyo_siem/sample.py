"""Realistic identity-provider audit events, deterministic for a seed (tests, benchmarks, demo)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from xavyo_siem.model import FIELD_NAMES, AuditEvent, EventCategory, Outcome

__all__ = ["DEFAULT_START", "generate_events", "tenant_ids"]

DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)

# (event_type, category, event_name, action, outcome or None for "mostly success", severity or None)
_KINDS: Final[tuple[tuple[str, EventCategory, str, str, Outcome | None, int | None], ...]] = (
    ("USER_LOGIN", EventCategory.AUTHENTICATION, "User login", "login", Outcome.SUCCESS, None),
    ("AUTH_FAILURE", EventCategory.AUTHENTICATION, "Failed login", "login", Outcome.FAILURE, 5),
    ("USER_LOGOUT", EventCategory.AUTHENTICATION, "User logout", "logout", Outcome.SUCCESS, 2),
    ("MFA_CHALLENGE", EventCategory.AUTHENTICATION, "MFA challenge", "mfa_verify", None, None),
    ("MFA_ENROLLED", EventCategory.SECURITY, "MFA factor enrolled", "mfa_enroll", None, 4),
    ("PASSWORD_RESET", EventCategory.USER_LIFECYCLE, "Password reset", "password_reset", None, 4),
    ("USER_CREATED", EventCategory.USER_LIFECYCLE, "User created", "create_user", None, None),
    ("USER_DISABLED", EventCategory.USER_LIFECYCLE, "User disabled", "disable_user", None, 4),
    (
        "GROUP_MEMBER_ADDED",
        EventCategory.GROUP_CHANGES,
        "Group member added",
        "add_member",
        None,
        None,
    ),
    (
        "GROUP_MEMBER_REMOVED",
        EventCategory.GROUP_CHANGES,
        "Group member removed",
        "remove_member",
        None,
        None,
    ),
    ("ROLE_ASSIGNED", EventCategory.ENTITLEMENT, "Role assigned", "grant_role", None, None),
    ("ROLE_REVOKED", EventCategory.ENTITLEMENT, "Role revoked", "revoke_role", None, None),
    (
        "ACCESS_REQUESTED",
        EventCategory.ACCESS_REQUESTS,
        "Access requested",
        "request_access",
        None,
        None,
    ),
    (
        "ACCOUNT_PROVISIONED",
        EventCategory.PROVISIONING,
        "Account provisioned",
        "provision",
        None,
        None,
    ),
    (
        "TOKEN_ISSUED",
        EventCategory.AUTHENTICATION,
        "Token issued",
        "issue_token",
        Outcome.SUCCESS,
        2,
    ),
    (
        "ADMIN_SETTINGS_CHANGED",
        EventCategory.ADMINISTRATIVE,
        "Admin changed settings",
        "update_settings",
        None,
        None,
    ),
    (
        "SOD_VIOLATION",
        EventCategory.SOD_VIOLATION,
        "Separation-of-duties violation",
        "detect_sod",
        Outcome.UNKNOWN,
        None,
    ),
)
# How often each kind occurs, in the order above: logins dominate, as in real traffic.
_WEIGHTS: Final = (40, 10, 12, 10, 1, 3, 2, 1, 3, 2, 3, 2, 2, 2, 14, 1, 1)

_FIRST: Final = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "zoë",
)
_DOMAINS: Final = ("example.com", "corp.example", "acme.test", "globex.example")
_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "okhttp/4.12.0",
    "xavyo-cli/2.3.1 (linux; amd64)",
)
_REASONS: Final = (
    "invalid password",
    "account locked",
    "MFA timeout",
    "expired token",
    "policy denied",
    "unknown user",
)
_RESOURCES: Final = (
    "app:payroll",
    "app:crm",
    "group:finance-admins",
    "role:db-operator",
    "app:github",
    "role:billing-approver",
    "group:engineering",
)
_METHODS: Final = ("password", "webauthn", "totp", "sms", "saml", "oidc")


def tenant_ids(tenants: int, seed: int) -> list[UUID]:
    """The tenant ids `generate_events` uses for `tenants` and `seed`, in order."""
    rng = random.Random(f"tenants:{seed}")
    return [UUID(int=rng.getrandbits(128), version=4) for _ in range(tenants)]


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.2:
        groups = [rng.randrange(0x10000) for _ in range(4)]
        return "2001:db8:{:x}:{:x}::{:x}:{:x}".format(*groups)
    first = rng.choice((10, 172, 192, 198, 203))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def generate_events(
    count: int, tenants: int = 1, seed: int = 0, *, start: datetime = DEFAULT_START
) -> Iterator[AuditEvent]:
    """`count` audit events spread over `tenants` tenants, in time order, from `start`.

    The same arguments always give the same events (ids included).
    """
    if count < 0 or tenants < 1:
        raise ValueError("count must be >= 0 and tenants >= 1")
    rng = random.Random(f"events:{seed}")
    tenant_list = tenant_ids(tenants, seed)
    kinds = rng.choices(range(len(_KINDS)), weights=_WEIGHTS, k=count)
    moment = start
    for index in range(count):
        event_type, category, name, action, outcome, severity = _KINDS[kinds[index]]
        moment += timedelta(microseconds=rng.randrange(1, 50_000))
        user = f"{rng.choice(_FIRST)}.{rng.randrange(1000)}"
        email = f"{user}@{rng.choice(_DOMAINS)}"
        if outcome is None:
            outcome = Outcome.FAILURE if rng.random() < 0.08 else Outcome.SUCCESS
        reason = rng.choice(_REASONS) if outcome is Outcome.FAILURE else None
        admin = category in (
            EventCategory.ADMINISTRATIVE,
            EventCategory.ENTITLEMENT,
            EventCategory.GROUP_CHANGES,
            EventCategory.PROVISIONING,
        )
        metadata = {
            "auth_method": rng.choice(_METHODS),
            "geo": rng.choice(("FR", "DE", "US", "JP", "BR")),
        }
        if rng.random() < 0.3:
            metadata["client_id"] = f"app-{rng.randrange(100)}"
        values = {
            "event_id": UUID(int=rng.getrandbits(128), version=4),
            "tenant_id": tenant_list[rng.randrange(tenants)],
            "timestamp": moment,
            "event_type": event_type,
            "category": category,
            "severity": category.default_severity if severity is None else severity,
            "event_name": name,
            "action": action,
            "outcome": outcome,
            "actor_id": f"usr_{rng.getrandbits(48):012x}",
            "actor_email": f"admin.{rng.randrange(20)}@{_DOMAINS[0]}" if admin else email,
            "source_ip": _ip(rng),
            "user_agent": rng.choice(_AGENTS),
            "target_user": email if admin else None,
            "target_resource": rng.choice(_RESOURCES)
            if admin or category is EventCategory.ACCESS_REQUESTS
            else None,
            "reason": reason,
            "session_id": f"sess_{rng.getrandbits(64):016x}",
            "request_id": f"req_{rng.getrandbits(64):016x}",
            "metadata": metadata,
            "normalized": (),
        }
        # Valid by making; a field not made here is absent.
        yield AuditEvent.from_values([values.get(name) for name in FIELD_NAMES])
