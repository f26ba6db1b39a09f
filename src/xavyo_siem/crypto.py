"""Encryption of destination credentials: AES-256-GCM under a key ring, bound to the destination.

A sealed secret reads `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The additional
authenticated data is the tenant and destination ids, so a ciphertext copied onto another
destination (or tenant) does not decrypt. The key ring holds every key that may still be
needed to open old secrets; new secrets are always sealed with the newest key.

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xavyo_siem.errors import SiemError
from xavyo_siem.settings import Settings

__all__ = ["DEV_KEY_FILE", "CryptoError", "KeyRing", "load_key_ring", "new_key_text"]

log = logging.getLogger("xavyo_siem.crypto")

DEV_KEY_FILE: Final = Path(".xavyo-siem.key")
_VERSION: Final = "v1"
_NONCE_BYTES: Final = 12
_KEY_FILE_MAX_BYTES: Final = 1 << 20  # a key ring of thousands of keys; never a stream


class CryptoError(SiemError):
    """A key ring is missing or malformed, or a sealed secret cannot be opened."""


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _aad(tenant_id: UUID, destination_id: UUID) -> bytes:
    return f"xavyo-siem/destination/{tenant_id}/{destination_id}".encode()


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

    def seal(self, secret: str, *, tenant_id: UUID, destination_id: UUID) -> str:
        """Encrypt `secret` for one destination with the primary key."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[self.primary]).encrypt(
            nonce, secret.encode(), _aad(tenant_id, destination_id)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self.primary}.{body}"

    def open(self, sealed: str, *, tenant_id: UUID, destination_id: UUID) -> str:
        """Decrypt a secret sealed for this destination; CryptoError if it cannot be."""
        version, _, rest = sealed.partition(".")
        kid, _, body = rest.partition(".")
        if version != _VERSION or not body:
            raise CryptoError("sealed secret: unknown format")
        key = self.keys.get(kid)
        if key is None:
            raise CryptoError(f"sealed secret: key {kid!r} is not in the key ring")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = AESGCM(key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(tenant_id, destination_id)
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise CryptoError(
                "sealed secret: does not decrypt for this destination (tampered or moved)"
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
