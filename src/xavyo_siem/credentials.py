"""Every stored destination credential at once: which key sealed each, and key rotation.

Rotation re-seals every credential with the key ring's primary (newest) key in one
transaction; the older keys keep opening what they sealed until the operator removes them
from the ring, which is safe once `keys status` shows no credential under them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import Engine

from xavyo_siem.crypto import CryptoError, KeyRing
from xavyo_siem.store import destinations as rows
from xavyo_siem.store import writing
from xavyo_siem.trail import Action, Actor, Change, audited, record

__all__ = ["RotationReport", "count_credentials_by_key", "rotate_credentials"]


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What a rotation did: credentials re-sealed, by the key that had sealed them."""

    primary: str
    resealed: dict[str, int] = field(default_factory=dict)
    already_primary: int = 0
    changed_meanwhile: int = 0

    @property
    def total_resealed(self) -> int:
        """How many credentials now use the primary key that did not before."""
        return sum(self.resealed.values())


def count_credentials_by_key(engine: Engine, keyring: KeyRing) -> dict[str, int]:
    """How many stored credentials each key id sealed (ids missing from `keyring` too)."""
    with engine.connect() as conn:
        sealed = rows.all_sealed_secrets(conn)
    return dict(sorted(Counter(keyring.key_id_of(text) for text in sealed.values()).items()))


@audited(Action.KEYS_ROTATED)
def rotate_credentials(
    engine: Engine, keyring: KeyRing, *, actor: Actor | None = None
) -> RotationReport:
    """Re-seal every credential not yet under the primary key, all in one transaction.

    A credential that no key of the ring opens aborts the rotation (nothing changes) with a
    `CryptoError` naming its tenant and destination. One changed by someone else meanwhile
    keeps the new value (counted in `changed_meanwhile`). Each tenant with a credential
    re-sealed gets one `SIEM_CREDENTIAL_KEY_ROTATED` event in its audit trail.
    """
    resealed: Counter[str] = Counter()
    tenants: Counter[UUID] = Counter()
    current = changed = 0
    with writing(engine) as conn:
        for (tenant_id, destination_id), sealed in rows.all_sealed_secrets(conn).items():
            key_id = keyring.key_id_of(sealed)
            if key_id == keyring.primary:
                current += 1
                continue
            try:
                secret = keyring.open(sealed, tenant_id=tenant_id, destination_id=destination_id)
            except CryptoError as exc:
                raise CryptoError(
                    f"tenant {tenant_id} destination {destination_id}: {exc}; nothing was rotated"
                ) from None
            fresh = keyring.seal(secret, tenant_id=tenant_id, destination_id=destination_id)
            if rows.replace_sealed_secret(
                conn,
                tenant_id=tenant_id,
                destination_id=destination_id,
                expected=sealed,
                sealed=fresh,
            ):
                resealed[key_id] += 1
                tenants[tenant_id] += 1
            else:
                changed += 1
        for tenant_id, count in tenants.items():
            change = Change(details={"credentials": str(count), "primary_key": keyring.primary})
            record(conn, actor, tenant_id=tenant_id, action=Action.KEYS_ROTATED, change=change)
    return RotationReport(keyring.primary, dict(sorted(resealed.items())), current, changed)
