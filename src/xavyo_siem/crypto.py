"""Encryption of destination credentials: AES-256-GCM under a key ring, bound to where they go.

A sealed secret reads `v2.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The additional
authenticated data is the tenant and destination ids and the destination's *binding*: its
delivery type and the origins (`scheme://host:port`) the credential is sent to
(`delivery.credential_binding`). A ciphertext copied onto another destination or tenant,
or left in place while the endpoint is pointed elsewhere, does not decrypt. The key ring
holds every key that may still be needed to open old secrets; new secrets are always sealed
with the newest key.

Secrets sealed before the binding (`v1.…`, tenant and destination only) are refused by
`open`; only `open_unbound` reads them, for `credentials.bind_credentials`, which re-seals
each one under its destination's binding once (on `db upgrade` or `keys rotate`).

Key ring text (the value of `XAVYO_SIEM_SECRET_KEY`, or the content of the file named by
`XAVYO_SIEM_SECRET_KEY_FILE`): keys separated by commas or newlines, each `base64(32 bytes)`
or `<key id>:base64(32 bytes)`, oldest first; the last one seals. Without an explicit id a
key's id is the first 8 hex digits of its SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xavyo_siem.errors import SiemError
from xavyo_siem.settings import Settings

__all__ = [
    "DEV_KEY_FILE",
    "CryptoError",
    "KeyRing",
    "is_bound",
    "load_key_ring",
    "new_key_text",
]

log = logging.getLogger("xavyo_siem.crypto")

DEV_KEY_FILE: Final = Path(".xavyo-siem.key")
_VERSION: Final = "v2"
_UNBOUND_VERSION: Final = "v1"
_NONCE_BYTES: Final = 12


class CryptoError(SiemError):
    """A key ring is missing or malformed, or a sealed secret cannot be opened."""


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _unbound_aad(tenant_id: UUID, destination_id: UUID) -> bytes:
    """The authenticated data of a `v1` secret: tenant and destination only."""
    return f"xavyo-siem/destination/{tenant_id}/{destination_id}".encode()


def _aad(tenant_id: UUID, destination_id: UUID, binding: Sequence[str]) -> bytes:
    """The authenticated data of a `v2` secret: one line per part, so no two bindings
    read the same (no part holds a line break: `_check_binding`)."""
    return "\n".join(
        ("xavyo-siem/credential/v2", str(tenant_id), str(destination_id), *binding)
    ).encode()


def _check_binding(binding: Sequence[str]) -> None:
    if isinstance(binding, str) or not binding or any("\n" in part for part in binding):
        raise CryptoError("credential binding: must be a non-empty sequence of one-line parts")


def is_bound(sealed: str) -> bool:
    """Whether `sealed` is bound to its destination's targets (not a `v1` secret)."""
    return sealed.startswith(_VERSION + ".")


def new_key_text() -> str:
    """A fresh random 256-bit key as key-ring text (`<id>:<base64>`)."""
    key = secrets.token_bytes(32)
    return f"{_key_id(key)}:{base64.b64encode(key).decode()}"


@dataclass(frozen=True)
class KeyRing:
    """Keys by id; `primary` seals, every key opens what it sealed."""

    keys: Mapping[str, bytes]
    primary: str

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Parse key-ring text; raises CryptoError saying what is wrong (never the key)."""
        keys: dict[str, bytes] = {}
        primary = ""
        for number, part in enumerate(text.replace("\n", ",").split(","), start=1):
            part = part.strip()
            if not part:
                continue
            kid, sep, encoded = part.rpartition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise CryptoError(f"secret key {number}: is not base64") from None
            if len(key) != 32:
                raise CryptoError(
                    f"secret key {number}: must be 32 bytes (AES-256), got {len(key)}"
                )
            kid = kid if sep else _key_id(key)
            if not kid or "." in kid or not kid.isascii():
                raise CryptoError(f"secret key {number}: key id must be ASCII without '.'")
            keys[kid] = key
            primary = kid
        if not keys:
            raise CryptoError("secret key: the key ring is empty")
        return cls(keys, primary)

    def seal(
        self, secret: str, *, tenant_id: UUID, destination_id: UUID, binding: Sequence[str]
    ) -> str:
        """Encrypt `secret` for one destination and its binding with the primary key."""
        _check_binding(binding)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[self.primary]).encrypt(
            nonce, secret.encode(), _aad(tenant_id, destination_id, binding)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self.primary}.{body}"

    def open(
        self, sealed: str, *, tenant_id: UUID, destination_id: UUID, binding: Sequence[str]
    ) -> str:
        """Decrypt a secret sealed for this destination and this binding; CryptoError if
        it cannot be (another destination, another type or origin, a `v1` secret)."""
        _check_binding(binding)
        if sealed.startswith(_UNBOUND_VERSION + "."):
            raise CryptoError(
                "sealed secret: sealed before credentials were bound to their endpoint;"
                " `xavyo-siem keys rotate` binds it"
            )
        return self._open(sealed, _VERSION, _aad(tenant_id, destination_id, binding))

    def open_unbound(self, sealed: str, *, tenant_id: UUID, destination_id: UUID) -> str:
        """Decrypt a `v1` secret (bound to tenant and destination only).

        For `credentials.bind_credentials` alone, which re-seals it under the destination's
        binding; nothing that sends a credential may call this.
        """
        return self._open(sealed, _UNBOUND_VERSION, _unbound_aad(tenant_id, destination_id))

    def _open(self, sealed: str, expected_version: str, aad: bytes) -> str:
        version, _, rest = sealed.partition(".")
        kid, _, body = rest.partition(".")
        if version != expected_version or not body:
            raise CryptoError("sealed secret: unknown format")
        key = self.keys.get(kid)
        if key is None:
            raise CryptoError(f"sealed secret: key {kid!r} is not in the key ring")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
        except (InvalidTag, binascii.Error, ValueError):
            raise CryptoError(
                "sealed secret: does not open for this destination's type and endpoint"
                " origin (moved, tampered, or pointed elsewhere without the secret)"
            ) from None
        return plain.decode()

    def key_id_of(self, sealed: str) -> str:
        """The id of the key that sealed `sealed`."""
        return sealed.split(".", 2)[1] if sealed.count(".") >= 2 else ""


def load_key_ring(settings: Settings, *, key_file: Path = DEV_KEY_FILE) -> KeyRing:
    """The key ring the settings name; in development a key file is made on first use.

    In production a missing key is an error: credentials are never stored in clear and
    never sealed with a key the operator does not hold.
    """
    if settings.secret_key:
        return KeyRing.parse(settings.secret_key)
    if settings.secret_key_file:
        path = Path(settings.secret_key_file)
        try:
            return KeyRing.parse(path.read_text())
        except OSError as exc:
            raise CryptoError(
                f"XAVYO_SIEM_SECRET_KEY_FILE: cannot read {path}: {exc.strerror}"
            ) from None
    if not settings.development:
        raise CryptoError(
            "no credential key: set XAVYO_SIEM_SECRET_KEY or XAVYO_SIEM_SECRET_KEY_FILE "
            "(make one with `xavyo-siem keys new`)"
        )
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key_text() + "\n")
        log.warning(
            "development mode: made a credential key in %s; production needs "
            "XAVYO_SIEM_SECRET_KEY or XAVYO_SIEM_SECRET_KEY_FILE",
            key_file.resolve(),
        )
    return KeyRing.parse(key_file.read_text())
