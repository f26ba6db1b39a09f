"""The exporter's own audit trail: every management change as an audit event of its tenant.

Creating, changing, enabling, disabling, deleting and testing a destination, replaying and
purging its dead letters, creating and cancelling an export, issuing and revoking an API
token and rotating the credential key all become an `AuditEvent` (category
`administrative`, `event_type` `SIEM_…`) stored with the tenant's own events. The workers
stream it like any other event, so a tenant sees changes to its SIEM set-up in that SIEM,
and `GET /v1/tenants/{tenant_id}/events?category=administrative` lists them.

An event says who (`actor_id`: `token:<id>` over the API, `os-user:<name>` from the command
line; `metadata.actor_role`), what (`action`, `target_resource` such as
`destination:<id>`, `metadata.target_name`, and `metadata.fields`: the NAMES of the
settings given or changed, never a value), when (`timestamp`), from where (`source_ip`,
the API client's address, or `metadata.host`, the command line's host) and how it ended
(`outcome`, and `reason` when refused). No secret is ever put in an event: credentials
appear only as the field name `secret`, and a refusal's reason (which names a field and a
rule) has the secret of the request blanked out should it appear.

The functions that make changes (`destinations`, `access`, `batch`, `credentials`,
`runtime.test_destination`) take an `actor` and record here; the API's routes and the
command line's commands only say who asks. A successful change is recorded in the change's
own transaction (`record`), so a change is stored if and only if its event is; a refused
one is recorded in a transaction of its own by `audited`. With `actor=None` (the program's
own use: tests, benchmarks) nothing is recorded.

Platform-wide actions: a key rotation records one event per tenant whose credentials were
re-sealed; a platform token belongs to no tenant, so issuing or revoking one is only a log
line on the `xavyo_siem.audit` logger (as is every event recorded here); so is a tenant
purge (`tenants.purge_tenant`), which removes the tenant's trail with the tenant.
"""

from __future__ import annotations

import functools
import getpass
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from ipaddress import ip_address
from typing import Any, Final, ParamSpec, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine

from xavyo_siem.errors import SiemError
from xavyo_siem.model import AuditEvent, EventCategory, Outcome
from xavyo_siem.store import append_events, writing
from xavyo_siem.store.changes import announce_new_events

__all__ = [
    "Action",
    "Actor",
    "Change",
    "audited",
    "blank_secret",
    "log",
    "management_event",
    "record",
    "record_now",
]

log = logging.getLogger("xavyo_siem.audit")

_TEXT_MAX: Final = 200
P = ParamSpec("P")
R = TypeVar("R")


class Action(StrEnum):
    """A management action; its value is the event's `event_type`."""

    DESTINATION_CREATED = "SIEM_DESTINATION_CREATED"
    DESTINATION_UPDATED = "SIEM_DESTINATION_UPDATED"
    DESTINATION_DELETED = "SIEM_DESTINATION_DELETED"
    DESTINATION_ENABLED = "SIEM_DESTINATION_ENABLED"
    DESTINATION_DISABLED = "SIEM_DESTINATION_DISABLED"
    DESTINATION_TESTED = "SIEM_DESTINATION_TESTED"
    DEAD_LETTERS_REPLAYED = "SIEM_DEAD_LETTERS_REPLAYED"
    DEAD_LETTERS_PURGED = "SIEM_DEAD_LETTERS_PURGED"
    EXPORT_CREATED = "SIEM_EXPORT_CREATED"
    EXPORT_CANCELLED = "SIEM_EXPORT_CANCELLED"
    TOKEN_CREATED = "SIEM_API_TOKEN_CREATED"
    TOKEN_REVOKED = "SIEM_API_TOKEN_REVOKED"
    KEYS_ROTATED = "SIEM_CREDENTIAL_KEY_ROTATED"

    @property
    def verb(self) -> str:
        """The event's `action`: `destination.created`, `api_token.revoked`, …"""
        subject, _, done = self.value.removeprefix("SIEM_").lower().rpartition("_")
        return f"{subject}.{done}"


def _clip(text: str) -> str:
    """`text` as an event may carry it: at most 200 characters, a NUL or an undecodable
    byte (a file name's) escaped, so recording never refuses a change for its names."""
    if not text.isascii() or "\x00" in text:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who asks for a change, and from where.

    `actor_id` is `token:<id>` for an API token, `os-user:<name>` for the command line;
    `role` is the token's role (`admin`, `platform admin`) or `operator`; `source_ip` is
    the API client's address, `host` the command line's host; `user_agent` the client's.
    """

    actor_id: str
    role: str
    via: str
    source_ip: str | None = None
    host: str | None = None
    user_agent: str | None = None

    @classmethod
    def api_token(
        cls,
        *,
        token_id: UUID,
        role: str,
        platform: bool,
        client: str | None,
        user_agent: str | None = None,
    ) -> Actor:
        """A request made with an API token, from `client` (the peer's address, when it is
        one: a proxy's address is the proxy's)."""
        try:
            source_ip = None if client is None else str(ip_address(client))
        except ValueError:
            source_ip = None
        return cls(
            actor_id=f"token:{token_id}",
            role=f"platform {role}" if platform else role,
            via="api",
            source_ip=source_ip,
            user_agent=None if not user_agent else _clip(user_agent),
        )

    @classmethod
    def command_line(cls) -> Actor:
        """The operating-system user running the command line, on this host."""
        try:
            user = f"os-user:{getpass.getuser()}"
        except (OSError, KeyError):  # no login name and no passwd entry (some containers)
            user = f"os-uid:{os.getuid()}"
        return cls(actor_id=_clip(user), role="operator", via="cli", host=socket.gethostname())


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What was done to what: the object (`kind:id` and its name), the names of the fields
    given or changed (never their values) and other non-secret details."""

    target: str | None = None
    target_name: str | None = None
    fields: Iterable[str] = ()
    details: Mapping[str, str] = field(default_factory=dict)


def management_event(
    *,
    tenant_id: UUID,
    actor: Actor,
    action: Action,
    change: Change,
    outcome: Outcome = Outcome.SUCCESS,
    reason: str | None = None,
) -> AuditEvent:
    """The audit event of `action` on `change` by `actor` in `tenant_id`, happening now."""
    metadata = {"via": actor.via, "actor_role": actor.role}
    if actor.host:
        metadata["host"] = actor.host
    if change.target_name is not None:
        metadata["target_name"] = _clip(change.target_name)
    names = sorted(set(change.fields))
    if names:
        metadata["fields"] = ",".join(names)
    metadata.update((key, _clip(value)) for key, value in change.details.items())
    return AuditEvent(
        event_id=uuid.uuid4(),
        tenant_id=tenant_id,
        timestamp=datetime.now(UTC),
        event_type=action.value,
        category=EventCategory.ADMINISTRATIVE,
        outcome=outcome,
        event_name=f"xavyo-siem {action.verb.replace('.', ' ').replace('_', ' ')}",
        action=action.verb,
        actor_id=actor.actor_id,
        source_ip=actor.source_ip,
        user_agent=actor.user_agent,
        target_resource=change.target,
        reason=_clip(reason) if reason else None,  # an empty reason is none (as ingest reads it)
        metadata=metadata,
    )


def _log(event: AuditEvent) -> None:
    log.info(
        "%s %s by %s (%s) via %s: %s%s",
        event.tenant_id,
        event.action,
        event.actor_id,
        event.metadata.get("actor_role"),
        event.metadata.get("via"),
        event.outcome.value if event.outcome else "unknown",
        f" on {event.target_resource}" if event.target_resource else "",
    )


def record(
    conn: Connection,
    actor: Actor | None,
    *,
    tenant_id: UUID,
    action: Action,
    change: Change,
) -> None:
    """Record a successful `action` in the caller's transaction (nothing when `actor` is
    None). The function that made the change is `audited`, which wakes the workers once the
    transaction committed."""
    if actor is None:
        return
    event = management_event(tenant_id=tenant_id, actor=actor, action=action, change=change)
    append_events(conn, [event])
    _log(event)


def record_now(engine: Engine, event: AuditEvent) -> None:
    """Store `event` in a transaction of its own and wake the workers."""
    with writing(engine) as conn:
        append_events(conn, [event])
    _log(event)
    announce_new_events(engine)


def _record_refusal(engine: Engine, event: AuditEvent) -> None:
    """Record a refused change; if even that fails (the store is away), log it, and let the
    caller's own error be the one that is raised."""
    try:
        record_now(engine, event)
    except Exception:
        log.exception("could not record %s of tenant %s", event.action, event.tenant_id)


def blank_secret(text: str, secret: object) -> str | None:
    """`text` with `secret` blanked out; None when it still shows (a secret so short that
    the blank itself, or what surrounds it, spells it)."""
    if not isinstance(secret, str) or not secret:
        return text
    blanked = text.replace(secret, "<secret>")
    return None if secret in blanked else blanked


Arguments = Mapping[str, Any]


def _no_target(_: Arguments) -> str | None:
    return None


def _tenant_argument(arguments: Arguments) -> UUID | None:
    tenant_id = arguments.get("tenant_id")
    return tenant_id if isinstance(tenant_id, UUID) else None


def audited(
    action: Action | Callable[[Arguments], Action],
    *,
    target: Callable[[Arguments], str | None] = _no_target,
    tenant: Callable[[Arguments], UUID | None] = _tenant_argument,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a management function record its refusals, and wake the workers after it.

    The function takes the store's `engine` and an `actor` (and a `secret` if it
    takes a credential). When it raises a `SiemError` (bad input, no such object), a failed
    `action` naming the error is recorded for the tenant before the error propagates. The
    function's arguments, by name, say which tenant (`tenant`, default: its `tenant_id`),
    which object (`target`: `destination:<id>`) and, if `action` is a function, which
    action (enable or disable). On success the function has recorded its own event in its
    transaction (`record`), and the workers are woken. Nothing is recorded when `actor` is
    None.
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            arguments = signature.bind(*args, **kwargs).arguments
            actor = arguments.get("actor")
            engine = arguments["engine"]
            assert isinstance(engine, Engine), "the store's engine is the `engine` argument"
            try:
                result = function(*args, **kwargs)
            except SiemError as exc:
                tenant_id = tenant(arguments)
                if isinstance(actor, Actor) and tenant_id is not None:
                    event = management_event(
                        tenant_id=tenant_id,
                        actor=actor,
                        action=action if isinstance(action, Action) else action(arguments),
                        change=Change(target=target(arguments)),
                        outcome=Outcome.FAILURE,
                        reason=blank_secret(str(exc), arguments.get("secret")),
                    )
                    _record_refusal(engine, event)
                raise
            if actor is not None:
                announce_new_events(engine)
            return result

        return wrapper

    return decorate
