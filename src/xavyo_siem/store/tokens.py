"""API tokens: issued once, kept only as a SHA-256 hash, looked up by hash, revocable.

A token is `xsk_` followed by 43 URL-safe characters (256 random bits), so it is
recognisable in a leaked log or a secret scanner, and guessing one is hopeless. Only its
SHA-256 hash is stored: a copy of the database does not hand out working tokens, and a
high-entropy token needs no slow password hash. A token belongs to one tenant, or (no
tenant) to the platform, which may act on every tenant; its role is `admin` or `viewer`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import RowMapping

from xavyo_siem.model import format_timestamp, from_epoch_us, to_epoch_us, uuid_from_canonical
from xavyo_siem.store.tables import api_tokens

__all__ = [
    "TOKEN_PREFIX",
    "ApiToken",
    "Role",
    "authenticate_token",
    "find_token",
    "hash_token",
    "issue_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_PREFIX: Final = "xsk_"
_TOKEN_BYTES: Final = 32
_MAX_TOKEN_CHARS: Final = 200

_K = api_tokens.c


class Role(StrEnum):
    """What a token may do: `viewer` reads; `admin` also changes, tests and replays."""

    ADMIN = "admin"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """One issued token, without the token itself (which is never stored)."""

    id: UUID
    tenant_id: UUID | None
    role: Role
    name: str | None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def platform(self) -> bool:
        """True for a platform token, which may act on every tenant."""
        return self.tenant_id is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form shown by `tokens list --json` (never the token or its hash)."""
        return {
            "id": str(self.id),
            "tenant_id": None if self.tenant_id is None else str(self.tenant_id),
            "role": self.role.value,
            "name": self.name,
            "created_at": format_timestamp(self.created_at),
            "revoked_at": None if self.revoked_at is None else format_timestamp(self.revoked_at),
        }


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _token_of(row: RowMapping) -> ApiToken:
    tenant = row["tenant_id"]
    revoked = row["revoked_us"]
    return ApiToken(
        id=uuid_from_canonical(row["id"]),
        tenant_id=None if tenant is None else uuid_from_canonical(tenant),
        role=Role(row["role"]),
        name=row["name"],
        created_at=from_epoch_us(row["created_us"]),
        revoked_at=None if revoked is None else from_epoch_us(revoked),
    )


def issue_token(
    conn: Connection, *, tenant_id: UUID | None, role: Role, name: str | None, now: datetime
) -> tuple[ApiToken, str]:
    """Store a new token; returns its record and the token text, which is shown only now."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
    record = ApiToken(
        id=uuid.uuid4(), tenant_id=tenant_id, role=Role(role), name=name, created_at=now
    )
    conn.execute(
        insert(api_tokens).values(
            id=str(record.id),
            tenant_id=None if tenant_id is None else str(tenant_id),
            role=record.role.value,
            token_hash=hash_token(token),
            name=name,
            created_us=to_epoch_us(now),
        )
    )
    return record, token


def authenticate_token(conn: Connection, *, token: str) -> ApiToken | None:
    """The live token `token` is, or None (malformed, unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_CHARS:
        return None
    digest = hash_token(token)
    row = (
        conn.execute(select(api_tokens).where(_K.token_hash == digest, _K.revoked_us.is_(None)))
        .mappings()
        .first()
    )
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    return _token_of(row)


def find_token(conn: Connection, *, token_id: UUID) -> ApiToken | None:
    """The token with this id, revoked or not; None when there is none."""
    row = conn.execute(select(api_tokens).where(_K.id == str(token_id))).mappings().first()
    return None if row is None else _token_of(row)


def list_tokens(conn: Connection, *, tenant_id: UUID | None = None) -> list[ApiToken]:
    """Every token (or one tenant's), oldest first, revoked ones included."""
    statement = select(api_tokens).order_by(_K.created_us, _K.id)
    if tenant_id is not None:
        statement = statement.where(_K.tenant_id == str(tenant_id))
    return [_token_of(row) for row in conn.execute(statement).mappings()]


def revoke_token(conn: Connection, *, token_id: UUID, now: datetime) -> bool:
    """Revoke a token for good; False if there is no live token with this id."""
    result = conn.execute(
        update(api_tokens)
        .where(_K.id == str(token_id), _K.revoked_us.is_(None))
        .values(revoked_us=to_epoch_us(now))
    )
    return result.rowcount == 1
