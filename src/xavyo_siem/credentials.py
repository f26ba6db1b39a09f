"""Every stored destination credential at once: which key sealed each, whether each opens
under its destination's binding, key rotation, and binding credentials sealed before
bindings existed.

A credential is bound to its destination's delivery type and the origins it is sent to
(`delivery.credential_binding`). `check_credentials` opens every one under the binding its
destination has now; one that does not open (its endpoint was changed in the store
directly, or its key is gone) is named, and the worker refuses it the same way.

Rotation re-seals every credential with the key ring's primary (newest) key in one
transaction, each under the binding it already had (rotation never moves a credential);
the older keys keep opening what they sealed until the operator removes them from the ring,
which is safe once `keys status` shows no credential under them. Rotation also binds the
credentials sealed before bindings (`v1`): each is re-sealed under the binding its
destination has at that moment, as migration 0006 does on `db upgrade` when the key ring is
at hand (`CredentialBinder`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import Engine

from xavyo_siem.crypto import CryptoError, KeyRing, is_bound
from xavyo_siem.delivery import credential_binding, credential_required
from xavyo_siem.errors import SiemError
from xavyo_siem.model import DeliveryType, SiemDestination
from xavyo_siem.store import destinations as rows
from xavyo_siem.store import writing
from xavyo_siem.trail import Action, Actor, Change, audited, record

__all__ = [
    "CredentialBinder",
    "CredentialProblem",
    "RotationReport",
    "check_credentials",
    "count_credentials_by_key",
    "rotate_credentials",
]


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What a rotation did: credentials re-sealed, by the key that had sealed them; those
    bound to their endpoint for the first time; and, afterwards, every destination whose
    credential does not open for where it points now (`check_credentials`)."""

    primary: str
    resealed: dict[str, int] = field(default_factory=dict)
    already_primary: int = 0
    changed_meanwhile: int = 0
    bound: int = 0
    not_opening: tuple[CredentialProblem, ...] = ()

    @property
    def total_resealed(self) -> int:
        """How many credentials now use the primary key that did not before."""
        return sum(self.resealed.values())


@dataclass(frozen=True, slots=True)
class CredentialProblem:
    """A destination whose credential does not open under its binding, and why."""

    tenant_id: UUID
    destination_id: UUID
    name: str
    reason: str

    def __str__(self) -> str:
        where = f"tenant {self.tenant_id} destination {self.name!r} ({self.destination_id})"
        return f"{where}: {self.reason}"


class _Target(NamedTuple):
    """The parts of a stored row that decide its binding (`delivery.Targeted`)."""

    delivery_type: DeliveryType
    endpoint: str
    options: Mapping[str, Any]


def count_credentials_by_key(engine: Engine, keyring: KeyRing) -> dict[str, int]:
    """How many stored credentials each key id sealed (ids missing from `keyring` too)."""
    with engine.connect() as conn:
        sealed = rows.all_sealed_secrets(conn)
    return dict(sorted(Counter(keyring.key_id_of(text) for text in sealed.values()).items()))


def _open(keyring: KeyRing, destination: SiemDestination, sealed: str) -> str:
    """The credential, opened under the destination's binding (CryptoError, or
    InvalidDestination when its settings no longer validate, if it does not open)."""
    return keyring.open(
        sealed,
        tenant_id=destination.tenant_id,
        destination_id=destination.id,
        binding=credential_binding(destination),
    )


def _problem(destination: SiemDestination, reason: str) -> CredentialProblem:
    return CredentialProblem(destination.tenant_id, destination.id, destination.name, reason)


def check_credentials(engine: Engine, keyring: KeyRing) -> list[CredentialProblem]:
    """Every destination whose credential does not open under its current binding (or
    that needs one and has none), by tenant and name; empty when all is well."""
    with engine.connect() as conn:
        stored = rows.all_credentials(conn)
    problems = []
    for destination, sealed in stored:
        if sealed is None:
            if credential_required(destination.delivery_type):
                problems.append(_problem(destination, "needs a credential and has none"))
            continue
        try:
            _open(keyring, destination, sealed)
        except SiemError as exc:
            problems.append(_problem(destination, str(exc)))
    return problems


@audited(Action.KEYS_ROTATED)
def rotate_credentials(
    engine: Engine, keyring: KeyRing, *, actor: Actor | None = None
) -> RotationReport:
    """Re-seal every credential not yet under the primary key, all in one transaction, and
    bind those sealed before bindings to their destination's current type and origins.

    A re-sealed credential keeps its own binding: rotation never moves a credential. One
    that no key of the ring opens aborts the rotation (nothing changes) with a
    `CryptoError` naming every such destination. One whose destination now points
    elsewhere is rotated all the same and named in `not_opening` (the worker refuses it
    until its secret is given again). One changed by someone else meanwhile keeps the new
    value (counted in `changed_meanwhile`). Each tenant with a credential re-sealed gets one
    `SIEM_CREDENTIAL_KEY_ROTATED` event in its audit trail.
    """
    resealed: Counter[str] = Counter()
    tenants: Counter[UUID] = Counter()
    current = changed = bound = 0
    with writing(engine) as conn:
        stored = rows.all_credentials(conn)
        fresh: list[tuple[SiemDestination, str, str]] = []
        lost: list[CredentialProblem] = []
        for destination, sealed in stored:
            if sealed is None or (
                is_bound(sealed) and keyring.key_id_of(sealed) == keyring.primary
            ):
                current += sealed is not None
                continue
            where = {"tenant_id": destination.tenant_id, "destination_id": destination.id}
            try:
                if is_bound(sealed):
                    fresh.append((destination, sealed, keyring.reseal(sealed, **where)))
                    continue
                secret = keyring.open_unbound(sealed, **where)
            except CryptoError as exc:
                lost.append(_problem(destination, str(exc)))
                continue
            try:
                binding = credential_binding(destination)
            except SiemError:  # no binding to give it: it stays refused, and is named below
                continue
            fresh.append((destination, sealed, keyring.seal(secret, **where, binding=binding)))
        if lost:
            named = "; ".join(str(problem) for problem in lost)
            raise CryptoError(f"{named}; nothing was rotated")
        for destination, sealed, resealed_text in fresh:
            if rows.replace_sealed_secret(
                conn,
                tenant_id=destination.tenant_id,
                destination_id=destination.id,
                expected=sealed,
                sealed=resealed_text,
            ):
                tenants[destination.tenant_id] += 1
                bound += not is_bound(sealed)
                if not is_bound(sealed) and keyring.key_id_of(sealed) == keyring.primary:
                    continue
                resealed[keyring.key_id_of(sealed)] += 1
            else:
                changed += 1
        for tenant_id, count in tenants.items():
            change = Change(details={"credentials": str(count), "primary_key": keyring.primary})
            record(conn, actor, tenant_id=tenant_id, action=Action.KEYS_ROTATED, change=change)
    return RotationReport(
        keyring.primary,
        dict(sorted(resealed.items())),
        current,
        changed,
        bound,
        tuple(check_credentials(engine, keyring)),
    )


class CredentialBinder:
    """Binds one credential sealed before bindings (`v1`) to its destination's current
    type and origins: what migration 0006 calls for each such row when `db upgrade` has
    the key ring. Counts what it bound; a row it cannot bind is left as it is (None), and
    `keys status` and the worker keep refusing it until `keys rotate` binds it."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring
        self.bound = 0
        self.left: list[str] = []

    def __call__(
        self,
        tenant_id: UUID,
        destination_id: UUID,
        delivery_type: str,
        endpoint: str,
        options: Mapping[str, Any],
        sealed: str,
    ) -> str | None:
        """`sealed` re-sealed under the destination's binding, or None if it cannot be."""
        try:
            secret = self._keyring.open_unbound(
                sealed, tenant_id=tenant_id, destination_id=destination_id
            )
            binding = credential_binding(_Target(DeliveryType(delivery_type), endpoint, options))
        except (SiemError, ValueError) as exc:
            self.left.append(f"tenant {tenant_id} destination {destination_id}: {exc}")
            return None
        self.bound += 1
        return self._keyring.seal(
            secret, tenant_id=tenant_id, destination_id=destination_id, binding=binding
        )
