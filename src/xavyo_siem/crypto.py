"""Encryption of destination credentials: AES-256-GCM under a key ring, bound to where they go.

A sealed secret reads `v2.<key id>.<base64url(binding)>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
The *binding* is where the credential may go: the destination's delivery type and the
origins (`scheme://host:port`) it is sent to (`delivery.credential_binding`), one per line.
The additional authenticated data is the tenant and destination ids and that binding, so a
ciphertext copied onto another destination or tenant does not decrypt, and a binding
edited in the text does not either. `open` takes the binding the destination has now and
refuses a secret given for another one, saying which (origins are not secret); `reseal`
(key rotation) keeps a secret's own binding, so rotating keys never depends on how today's
code reads an endpoint. The key ring holds every key that may still be needed to open old
secrets; new secrets are always sealed with the newest key.

Secrets sealed before bindings (`v1.<key id>.<body>`, tenant and destination only) are
refused by `open`; only `open_unbound` reads them, for `credentials`, which re-seals each
one under its destination's binding (on `db upgrade` with the key ring, or `keys rotate`).

Key ring text (the value of `XAVYO_SIEM_SECRET_KEY`, or the content of the file named by
`XAVYO_SIEM_SECRET_KEY_FILE`): keys separated by commas or newlines, each `base64(32 bytes)`
or `<key id>:base64(32 bytes)`, oldest first; the last one seals. Without an explicit id a
key's id is the first 8 hex digits of its SHA-256. Only one of the two settings may be set.

A key file must be a regular file of UTF-8 text, owned by the process's user or by root,
and writable by no one else (whoever can replace the key would have new credentials sealed
with a key they know); one that its group or others may read is used, with a warning.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import pwd
import secrets
import stat
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
    "binding_of",
    "is_bound",
    "load_key_ring",
    "new_key_text",
]

log = logging.getLogger("xavyo_siem.crypto")

DEV_KEY_FILE: Final = Path(".xavyo-siem.key")
_VERSION: Final = "v2"
_UNBOUND_VERSION: Final = "v1"
_NONCE_BYTES: Final = 12
_KEY_FILE_MAX_BYTES: Final = 1 << 20  # a key ring of thousands of keys; never a stream


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


def _check_binding(binding: Sequence[str]) -> tuple[str, ...]:
    if isinstance(binding, str) or not binding or any("\n" in part for part in binding):
        raise CryptoError("credential binding: must be a non-empty sequence of one-line parts")
    return tuple(binding)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_bound(sealed: str) -> bool:
    """Whether `sealed` carries a binding (not a `v1` secret)."""
    return sealed.startswith(_VERSION + ".")


def binding_of(sealed: str) -> tuple[str, ...] | None:
    """The binding a `v2` secret was sealed under, as its text says (authenticated only
    once the secret opens), or None for a `v1` or malformed one."""
    parts = sealed.split(".")
    if len(parts) != 4 or parts[0] != _VERSION:
        return None
    try:
        return tuple(_b64decode(parts[2]).decode().split("\n"))
    except (binascii.Error, ValueError):
        return None


def _show(binding: Sequence[str]) -> str:
    """A binding as an error message names it: `splunk_hec https://siem.example:8088`
    (a part that is not short printable text, which only an edited row holds, is not
    repeated)."""
    if not all(0 < len(part) <= 300 and part.isprintable() for part in binding):
        return "an unreadable binding"
    return " ".join(binding) if len(binding) > 1 else f"{binding[0]} (no endpoint)"


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
        bound = _check_binding(binding)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[self.primary]).encrypt(
            nonce, secret.encode(), _aad(tenant_id, destination_id, bound)
        )
        label = base64.urlsafe_b64encode("\n".join(bound).encode()).decode().rstrip("=")
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self.primary}.{label}.{body}"

    def open(
        self, sealed: str, *, tenant_id: UUID, destination_id: UUID, binding: Sequence[str]
    ) -> str:
        """Decrypt a secret sealed for this destination and this binding (the one the
        destination has now); CryptoError if it cannot be: given for another type or
        origins (the message names both), another destination, a `v1` secret."""
        wanted = _check_binding(binding)
        if sealed.startswith(_UNBOUND_VERSION + "."):
            raise CryptoError(
                "sealed secret: sealed before credentials were bound to their endpoint;"
                " `xavyo-siem keys rotate` binds it"
            )
        given = binding_of(sealed)
        if given is not None and given != wanted:
            raise CryptoError(
                f"sealed secret: given for {_show(given)}, but the destination now sends to"
                f" {_show(wanted)}; changing the type or an endpoint origin needs the secret"
                " again"
            )
        return self._open(sealed, tenant_id, destination_id)[0]

    def reseal(self, sealed: str, *, tenant_id: UUID, destination_id: UUID) -> str:
        """`sealed` sealed again with the primary key under its own binding (rotation: the
        credential stays bound to where it was given for, whatever its destination says
        now); CryptoError if it does not open."""
        secret, binding = self._open(sealed, tenant_id, destination_id)
        return self.seal(
            secret, tenant_id=tenant_id, destination_id=destination_id, binding=binding
        )

    def _open(
        self, sealed: str, tenant_id: UUID, destination_id: UUID
    ) -> tuple[str, tuple[str, ...]]:
        """The secret of a `v2` text and the binding it was sealed under."""
        parts = sealed.split(".")
        binding = binding_of(sealed)
        if binding is None:
            raise CryptoError("sealed secret: unknown format")
        aad = _aad(tenant_id, destination_id, binding)
        return self._decrypt(parts[1], parts[3], aad), binding

    def open_unbound(self, sealed: str, *, tenant_id: UUID, destination_id: UUID) -> str:
        """Decrypt a `v1` secret (bound to tenant and destination only).

        For `credentials` alone, which re-seals it under its destination's binding;
        nothing that sends a credential may call this.
        """
        version, kid, body = ([*sealed.split(".", 2), "", ""])[:3]
        if version != _UNBOUND_VERSION or not body or "." in body:
            raise CryptoError("sealed secret: unknown format")
        return self._decrypt(kid, body, _unbound_aad(tenant_id, destination_id))

    def _decrypt(self, kid: str, body: str, aad: bytes) -> str:
        key = self.keys.get(kid)
        if key is None:
            raise CryptoError(f"sealed secret: key {kid!r} is not in the key ring")
        try:
            raw = _b64decode(body)
            plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
        except (InvalidTag, binascii.Error, ValueError):
            raise CryptoError(
                "sealed secret: does not open for this destination (moved or tampered)"
            ) from None
        return plain.decode()

    def key_id_of(self, sealed: str) -> str:
        """The id of the key that sealed `sealed`."""
        return sealed.split(".", 2)[1] if sealed.count(".") >= 2 else ""


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _check_key_file(path: Path, info: os.stat_result, label: str) -> None:
    """Refuse a key file that someone besides this process's user (or root) could replace;
    warn when others may read it."""
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        raise CryptoError(f"{label}: {path} is not a regular file")
    if info.st_uid not in (os.geteuid(), 0):
        raise CryptoError(
            f"{label}: {path} belongs to {_user_name(info.st_uid)}, neither this process's "
            f"user ({_user_name(os.geteuid())}) nor root; whoever owns it can replace the "
            f"key: chown it to the service's user and chmod 600 {path}"
        )
    if mode & 0o022:
        raise CryptoError(
            f"{label}: {path} is writable by its group or others (mode {mode:04o}); whoever "
            f"can write it can replace the key: chmod 600 {path}"
        )
    if mode & 0o044:
        log.warning(
            "%s: %s is readable by its group or others (mode %04o); whoever can read it can "
            "decrypt every stored credential: chmod 600 %s",
            label,
            path,
            mode,
            path,
        )


def _read_key_file(path: Path, label: str) -> KeyRing:
    """The key ring in the file at `path`, once it passed `_check_key_file`; `label` names
    where the path came from in every error."""
    try:  # not blocking: a pipe named as the key file is refused, not waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CryptoError(f"{label}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        _check_key_file(path, os.fstat(fd), label)
        chunks = []
        size = 0
        while size <= _KEY_FILE_MAX_BYTES and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
        raw = b"".join(chunks)
    except OSError as exc:
        raise CryptoError(f"{label}: cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > _KEY_FILE_MAX_BYTES:
        raise CryptoError(f"{label}: {path} is larger than a key ring can be (1 MiB)")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise CryptoError(
            f"{label}: {path} is not UTF-8 text (byte {exc.start} cannot be decoded); it "
            "must hold base64 keys separated by commas or newlines"
        ) from None
    try:
        return KeyRing.parse(text)
    except CryptoError as exc:
        raise CryptoError(f"{label}: {path}: {exc}") from None


def load_key_ring(settings: Settings, *, key_file: Path = DEV_KEY_FILE) -> KeyRing:
    """The key ring the settings name; in development a key file is made on first use.

    In production a missing key is an error: credentials are never stored in clear and
    never sealed with a key the operator does not hold. Both settings at once are refused
    (neither silently wins), and a key file must pass `_check_key_file`.
    """
    if settings.secret_key and settings.secret_key_file:
        raise CryptoError(
            "XAVYO_SIEM_SECRET_KEY and XAVYO_SIEM_SECRET_KEY_FILE are both set; set only one "
            "(the key ring itself, or the file that holds it)"
        )
    if settings.secret_key:
        return KeyRing.parse(settings.secret_key)
    if settings.secret_key_file:
        return _read_key_file(Path(settings.secret_key_file), "XAVYO_SIEM_SECRET_KEY_FILE")
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
    return _read_key_file(key_file, "development key file")
