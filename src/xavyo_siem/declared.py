"""Destinations declared in a file: read a YAML declaration, compare it with the store, and
make the store match it (`xavyo-siem apply -f FILE`), or write the store's destinations in
that form (`xavyo-siem destination export`).

The file names tenants and, for each, its destinations with every setting a destination
has. A credential is never written in the file: `secret: {file: PATH}` or
`secret: {env: NAME}` says where to read it, and no `secret` keeps the stored one.

Comparing is exact and quiet: a destination whose settings and credential already match
is not written, so applying the same file twice changes nothing and records nothing in the
audit trail. A credential is compared by opening the stored one with the key ring for the
settings the file asks for and comparing in constant time; it is never shown. Changes go
through the same functions as `destination add|update|remove`, each validated and recorded
in the tenant's audit trail. Destinations of the named tenants that the file does not name
are removed only with `prune`. A destination's delivery type cannot change in place (its
cursor, health and dead letters belong to the old one): give it a new name.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal
from uuid import UUID

import yaml
from sqlalchemy import Connection, Engine

from xavyo_siem import destinations as manage
from xavyo_siem.crypto import CryptoError, KeyRing
from xavyo_siem.delivery import credential_binding
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination, InvalidFilter
from xavyo_siem.model import (
    DEFAULT_RATE_LIMIT,
    DeliveryType,
    EventFilter,
    ExportFormat,
    RateLimit,
    SiemDestination,
)
from xavyo_siem.store import destinations as rows
from xavyo_siem.trail import Actor

__all__ = ["Declared", "SecretRef", "Step", "apply_steps", "export_yaml", "parse", "plan"]

VERSION: Final = 1
_DESTINATION_KEYS: Final = frozenset(
    ("name", "type", "format", "endpoint", "options", "filters", "rate_limit", "enabled", "secret")
)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a destination's credential is read from: a file, or an environment variable."""

    file: str | None = None
    env: str | None = None

    def read(self, where: str) -> str:
        """The credential, stripped; `InvalidDestination` naming `where` if it cannot be read."""
        if self.file is not None:
            try:
                text = Path(self.file).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "is not UTF-8 text"
                raise InvalidDestination(where, f"cannot read {self.file}: {reason}") from None
        else:
            assert self.env is not None
            if self.env not in os.environ:
                raise InvalidDestination(where, f"the environment has no {self.env}")
            text = os.environ[self.env]
        if not text.strip():
            raise InvalidDestination(where, "the credential is empty")
        return text.strip()


@dataclass(frozen=True, slots=True)
class Declared:
    """One destination as the file declares it, and where in the file it is."""

    tenant_id: UUID
    spec: manage.DestinationSpec
    secret: SecretRef | None
    where: str  # e.g. `tenants[0].destinations[2]`


@dataclass(frozen=True, slots=True)
class Step:
    """What applying does to one destination; `changes` name each field's old and new value."""

    action: Literal["add", "update", "remove", "keep"]
    tenant_id: UUID
    name: str
    declared: Declared | None = None
    current: SiemDestination | None = None
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    new_secret: str | None = None  # the credential to store (add, or a changed one)

    def describe(self) -> str:
        """One line for the dry run and the report: `~ tenant/name: endpoint a -> b`."""
        mark = {"add": "+", "update": "~", "remove": "-", "keep": "="}[self.action]
        head = f"{mark} {self.tenant_id}/{self.name}"
        if self.action == "add" and self.declared is not None:
            spec = self.declared.spec
            return f"{head}: {spec.delivery_type.value}, {spec.format.value}, {spec.endpoint}"
        if self.action == "update":
            shown = [
                f"{key} {_show(old)} -> {_show(new)}" for key, (old, new) in self.changes.items()
            ]
            if self.new_secret is not None:
                shown.append("credential replaced")
            return f"{head}: " + "; ".join(shown)
        return head


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


# -- reading the file -----------------------------------------------------------------------


def parse(text: str) -> list[Declared]:
    """The destinations `text` (YAML) declares; `InvalidDestination` naming the place."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else "the file"
        raise InvalidDestination(at, "is not valid YAML") from None
    if not isinstance(document, Mapping):
        raise InvalidDestination("file", "must be a mapping with `version` and `tenants`")
    if document.get("version") != VERSION:
        raise InvalidDestination("version", f"must be {VERSION}")
    tenants = document.get("tenants")
    if not isinstance(tenants, list):
        raise InvalidDestination("tenants", "must be a list")
    declared: list[Declared] = []
    seen: set[tuple[UUID, str]] = set()
    for t_index, entry in enumerate(tenants):
        where = f"tenants[{t_index}]"
        if not isinstance(entry, Mapping) or set(entry) - {"tenant", "destinations"}:
            raise InvalidDestination(where, "must have `tenant` and `destinations` only")
        try:
            tenant_id = UUID(str(entry.get("tenant")))
        except ValueError:
            raise InvalidDestination(f"{where}.tenant", "must be a tenant UUID") from None
        items = entry.get("destinations") or []
        if not isinstance(items, list):
            raise InvalidDestination(f"{where}.destinations", "must be a list")
        for d_index, item in enumerate(items):
            one = _destination(item, tenant_id, f"{where}.destinations[{d_index}]")
            key = (tenant_id, one.spec.name)
            if key in seen:
                raise InvalidDestination(
                    f"{one.where}.name", f"{one.spec.name!r} is declared twice"
                )
            seen.add(key)
            declared.append(one)
    return declared


def _destination(item: Any, tenant_id: UUID, where: str) -> Declared:
    if not isinstance(item, Mapping):
        raise InvalidDestination(where, "must be a mapping")
    unknown = set(item) - _DESTINATION_KEYS
    if unknown:
        raise InvalidDestination(f"{where}.{sorted(unknown)[0]}", "is not a destination setting")
    for required in ("name", "type", "format", "endpoint"):
        if not isinstance(item.get(required), str) or not item[required]:
            raise InvalidDestination(f"{where}.{required}", "is required (text)")
    try:
        delivery_type = DeliveryType(item["type"])
    except ValueError:
        names = ", ".join(t.value for t in DeliveryType)
        raise InvalidDestination(f"{where}.type", f"must be one of {names}") from None
    try:
        fmt = ExportFormat(item["format"])
    except ValueError:
        names = ", ".join(f.value for f in ExportFormat)
        raise InvalidDestination(f"{where}.format", f"must be one of {names}") from None
    options = item.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidDestination(f"{where}.options", "must be a mapping")
    try:
        filters = EventFilter.from_dict(item.get("filters"))
    except InvalidFilter as exc:
        raise InvalidDestination(f"{where}.{exc.field}", exc.reason) from None
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidDestination(f"{where}.enabled", "must be true or false")
    spec = manage.DestinationSpec(
        name=item["name"],
        delivery_type=delivery_type,
        format=fmt,
        endpoint=item["endpoint"],
        options={str(key): _option_text(value) for key, value in options.items()},
        filters=filters,
        rate_limit=_rate_limit(item, f"{where}.rate_limit"),
        enabled=enabled,
    )
    return Declared(tenant_id, spec, _secret(item.get("secret"), f"{where}.secret"), where)


def _option_text(value: Any) -> str:
    """An option as the command line writes it: `true`/`false`, numbers and text as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _rate_limit(item: Mapping[str, Any], where: str) -> RateLimit | None:
    if "rate_limit" not in item:
        return DEFAULT_RATE_LIMIT
    value = item["rate_limit"]
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"events_per_s", "burst"}:
        raise InvalidDestination(where, "must be {events_per_s, burst}, or null for no limit")
    rate, burst = value["events_per_s"], value["burst"]
    if not isinstance(rate, int | float) or rate <= 0 or not isinstance(burst, int) or burst < 1:
        raise InvalidDestination(where, "events_per_s must be above 0 and burst at least 1")
    return RateLimit(float(rate), burst)


def _secret(value: Any, where: str) -> SecretRef | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise InvalidDestination(where, "is never written inline: use {file: PATH} or {env: NAME}")
    if not isinstance(value, Mapping) or len(value) != 1 or set(value) - {"file", "env"}:
        raise InvalidDestination(where, "must be {file: PATH} or {env: NAME}")
    ((kind, target),) = value.items()
    if not isinstance(target, str) or not target:
        raise InvalidDestination(f"{where}.{kind}", "must be a path or a variable name")
    return SecretRef(file=target) if kind == "file" else SecretRef(env=target)


# -- comparing ------------------------------------------------------------------------------


def plan(
    engine: Engine, declared: Sequence[Declared], *, keyring: KeyRing | None, prune: bool
) -> list[Step]:
    """What applying `declared` would do, destination by destination, without writing."""
    steps: list[Step] = []
    tenants = list(dict.fromkeys(d.tenant_id for d in declared))
    with engine.connect() as conn:
        for tenant_id in tenants:
            current = {d.name: d for d in rows.list_destinations(conn, tenant_id=tenant_id)}
            for one in (d for d in declared if d.tenant_id == tenant_id):
                steps.append(_compare(conn, one, current.pop(one.spec.name, None), keyring))
            for leftover in current.values():
                if prune:
                    steps.append(Step("remove", tenant_id, leftover.name, current=leftover))
    return steps


def _compare(
    conn: Connection, one: Declared, current: SiemDestination | None, keyring: KeyRing | None
) -> Step:
    spec = one.spec
    secret = None if one.secret is None else one.secret.read(f"{one.where}.secret")
    if current is None:
        return Step("add", one.tenant_id, spec.name, declared=one, new_secret=secret)
    if current.delivery_type is not spec.delivery_type:
        raise InvalidDestination(
            f"{one.where}.type",
            f"{spec.name} is {current.delivery_type.value}; a type cannot change in place "
            "(give the destination a new name, and prune the old one)",
        )
    changes: dict[str, tuple[Any, Any]] = {}
    for key, old, new in (
        ("format", current.format.value, spec.format.value),
        ("endpoint", current.endpoint, spec.endpoint),
        ("filters", current.filters.to_dict(), spec.filters.to_dict()),
        ("rate_limit", current.rate_limit, spec.rate_limit),
        ("enabled", current.enabled, spec.enabled),
    ):
        if old != new:
            changes[key] = (old, new)
    stored = {key: _option_text(value) for key, value in current.options.items()}
    for key in sorted(set(stored) | set(spec.options)):
        if stored.get(key) != spec.options.get(key):
            changes[f"options.{key}"] = (stored.get(key), spec.options.get(key))
    new_secret = None
    if secret is not None and not _same_secret(conn, current, spec, secret, keyring):
        new_secret = secret
    action: Literal["update", "keep"] = "update" if changes or new_secret else "keep"
    return Step(action, one.tenant_id, spec.name, one, current, changes, new_secret)


def _same_secret(
    conn: Connection,
    current: SiemDestination,
    spec: manage.DestinationSpec,
    secret: str,
    keyring: KeyRing | None,
) -> bool:
    """Whether the stored credential is `secret` and stays bound where the file points."""
    sealed = rows.read_sealed_secret(conn, tenant_id=current.tenant_id, destination_id=current.id)
    if sealed is None or keyring is None:
        return False
    wanted = replace(current, endpoint=spec.endpoint, options=dict(spec.options))
    try:
        stored = keyring.open(
            sealed,
            tenant_id=current.tenant_id,
            destination_id=current.id,
            binding=credential_binding(wanted),
        )
    except CryptoError:
        return False  # sealed for other origins, or another key: store it again
    return hmac.compare_digest(stored.encode(), secret.encode())


# -- applying -------------------------------------------------------------------------------


def apply_steps(
    engine: Engine,
    steps: Sequence[Step],
    *,
    keyring: KeyRing | None,
    development: bool,
    egress: EgressGuard | None,
    actor: Actor | None,
) -> None:
    """Carry out `steps` in order, each through the destinations' own functions."""
    for step in steps:
        if step.action == "add":
            assert step.declared is not None
            manage.add_destination(
                engine,
                tenant_id=step.tenant_id,
                spec=step.declared.spec,
                secret=step.new_secret,
                keyring=keyring,
                development=development,
                egress=egress,
                actor=actor,
            )
        elif step.action == "update":
            assert step.current is not None
            manage.update_destination(
                engine,
                tenant_id=step.tenant_id,
                destination_id=step.current.id,
                changes=_update_of(step),
                secret=step.new_secret,
                keyring=keyring,
                development=development,
                egress=egress,
                actor=actor,
            )
        elif step.action == "remove":
            assert step.current is not None
            manage.remove_destination(
                engine, tenant_id=step.tenant_id, destination_id=step.current.id, actor=actor
            )


def _update_of(step: Step) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    options: dict[str, str | None] = {}
    for key, (_old, new) in step.changes.items():
        if key.startswith("options."):
            options[key.removeprefix("options.")] = new
        else:
            changes[key] = new
    if options:
        changes["options"] = options
    return changes


# -- writing --------------------------------------------------------------------------------


def export_yaml(destinations: Sequence[SiemDestination]) -> str:
    """The destinations as a declaration `apply` takes back unchanged (no credential: a
    destination with a stored one keeps it until the file names a `secret`)."""
    by_tenant: dict[UUID, list[dict[str, Any]]] = {}
    for d in destinations:
        entry: dict[str, Any] = {
            "name": d.name,
            "type": d.delivery_type.value,
            "format": d.format.value,
            "endpoint": d.endpoint,
        }
        if d.options:
            entry["options"] = {
                key: _option_text(value) for key, value in sorted(d.options.items())
            }
        if d.filters != EventFilter():
            entry["filters"] = {k: v for k, v in d.filters.to_dict().items() if v}
        if d.rate_limit != DEFAULT_RATE_LIMIT:
            entry["rate_limit"] = (
                None
                if d.rate_limit is None
                else {"events_per_s": d.rate_limit.events_per_s, "burst": d.rate_limit.burst}
            )
        if not d.enabled:
            entry["enabled"] = False
        by_tenant.setdefault(d.tenant_id, []).append(entry)
    document = {
        "version": VERSION,
        "tenants": [
            {"tenant": str(tenant), "destinations": items} for tenant, items in by_tenant.items()
        ],
    }
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
