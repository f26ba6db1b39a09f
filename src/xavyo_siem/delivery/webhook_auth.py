"""The secret part of a webhook destination: Standard Webhooks 1.0 signing, the `webhook-id`
of a batch, and the receiver's authentication (`WebhookCredentials`).

A destination's `secret` is whitespace-separated `whsec_<base64>` signing secrets, or a JSON
object of signing secrets and one auth scheme (bearer, basic or custom headers); see
`WebhookCredentials.from_secret`. Errors name the field `secret` and never quote it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from xavyo_siem.errors import InvalidDestination

__all__ = [
    "WebhookCredentials",
    "sign_webhook",
    "sign_with_keys",
    "webhook_id",
    "webhook_key",
]

SECRET_PREFIX: Final = "whsec_"
_SECRET_MIN_BYTES: Final = 24
_SECRET_MAX_BYTES: Final = 64


# --- Standard Webhooks signing (Standard Webhooks 1.0, "Signature scheme") --------------


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret: the base64-decoded bytes after the prefix.

    Raises `InvalidDestination("secret", ...)` (never quoting the secret) unless the secret
    has the prefix, is base64 (padding optional) and decodes to 24-64 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidDestination(
            "secret", f"a webhook signing secret must start with {SECRET_PREFIX}"
        )
    text = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDestination("secret", "the part after whsec_ must be base64") from None
    if not _SECRET_MIN_BYTES <= len(key) <= _SECRET_MAX_BYTES:
        raise InvalidDestination(
            "secret",
            f"must decode to {_SECRET_MIN_BYTES}-{_SECRET_MAX_BYTES} bytes, got {len(key)}",
        )
    return key


def sign_with_keys(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """`sign_webhook` with the HMAC keys already decoded (`WebhookCredentials.keys`)."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode() for key in keys
    )


def sign_webhook(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>` per
    secret, space-separated, in the order given (Standard Webhooks 1.0)."""
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.'")
    return sign_with_keys([webhook_key(s) for s in secrets], msg_id, timestamp, body)


def webhook_id(event_ids: Sequence[str]) -> str:
    """`msg_` + 32 hex digits of SHA-256 over the event ids: equal for equal batches."""
    digest = hashlib.sha256("\n".join(event_ids).encode()).hexdigest()
    return f"msg_{digest[:32]}"


# --- Credentials -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookCredentials:
    """The secret part of a webhook destination, checked on construction.

    `signing_secrets` are `whsec_` secrets, newest first (several during a rotation; empty
    means unsigned, though `webhook-id` and `webhook-timestamp` are still sent).
    Authentication is at most one of `bearer_token`, `basic_user` + `basic_password`, or
    the custom `auth_headers`. `repr` never shows a value.
    """

    signing_secrets: tuple[str, ...] = ()
    bearer_token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None
    auth_headers: tuple[tuple[str, str], ...] = ()
    keys: tuple[bytes, ...] = field(init=False, compare=False)

    def __repr__(self) -> str:
        return f"WebhookCredentials(<{len(self.signing_secrets)} signing secret(s), redacted>)"

    def __post_init__(self) -> None:
        schemes = (
            self.bearer_token is not None,
            self.basic_user is not None,
            bool(self.auth_headers),
        )
        if sum(schemes) > 1:
            raise InvalidDestination("secret", "use one of bearer, basic or custom-header auth")
        if (self.basic_user is None) != (self.basic_password is None):
            raise InvalidDestination("secret", "basic auth needs both a user and a password")
        for value in (self.bearer_token, self.basic_user, self.basic_password):
            if value is not None and (not value or not _one_line(value)):
                raise InvalidDestination("secret", "credentials must be non-empty single lines")
        if self.basic_user is not None and ":" in self.basic_user:
            raise InvalidDestination("secret", "a basic-auth user name may not contain ':'")
        for name, value in self.auth_headers:
            if not name or not name.isascii() or any(c in name for c in ":\r\n \t"):
                raise InvalidDestination("secret", "a custom auth header needs a valid name")
            if not _one_line(value):
                raise InvalidDestination("secret", f"custom header {name[:40]!r} must be one line")
            if name.lower().startswith("webhook-") or name.lower() in _RESERVED_HEADERS:
                raise InvalidDestination("secret", f"custom header {name[:40]!r} is reserved")
        object.__setattr__(self, "keys", tuple(webhook_key(s) for s in self.signing_secrets))

    def secret_values(self) -> tuple[str, ...]:
        """Every secret string these credentials hold (signing secrets with and without
        their prefix, bearer token, basic password, custom header values), for
        `scrub.scrub_reason` to remove from what a peer says."""
        return (
            *self.signing_secrets,
            *(s.removeprefix(SECRET_PREFIX).rstrip("=") for s in self.signing_secrets),
            *(v for v in (self.bearer_token, self.basic_password) if v is not None),
            *(value for _, value in self.auth_headers),
        )

    @classmethod
    def from_secret(cls, secret: str | None) -> WebhookCredentials:
        """Read a destination's `secret`: whitespace-separated `whsec_` secrets, or a JSON
        object `{"signing_secrets": [...], "bearer_token": "...", "basic": {"user": "...",
        "password": "..."}, "headers": {"X-Api-Key": "..."}}` (every key optional)."""
        if secret is None or not secret.strip():
            return cls()
        text = secret.strip()
        if not text.startswith("{"):
            return cls(signing_secrets=tuple(text.split()))
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise InvalidDestination(
                "secret", "is neither whsec_ secrets nor a JSON object"
            ) from None
        if not isinstance(data, dict) or not data.keys() <= _SECRET_KEYS:
            raise InvalidDestination(
                "secret", f"a JSON secret may hold only {', '.join(sorted(_SECRET_KEYS))}"
            )
        basic = data.get("basic") or {}
        headers = data.get("headers") or {}
        signing = data.get("signing_secrets") or []
        if (
            not isinstance(basic, dict)
            or not isinstance(headers, dict)
            or not isinstance(signing, list)
            or not all(isinstance(v, str) for v in (*signing, *headers.values()))
            or not all(isinstance(v, str) for v in basic.values())
            or not isinstance(data.get("bearer_token", ""), str)
        ):
            raise InvalidDestination("secret", "a JSON secret holds strings only")
        return cls(
            signing_secrets=tuple(signing),
            bearer_token=data.get("bearer_token"),
            basic_user=basic.get("user"),
            basic_password=basic.get("password"),
            auth_headers=tuple(headers.items()),
        )


def _one_line(value: str) -> bool:
    return value.isprintable()


_RESERVED_HEADERS: Final = frozenset(("content-type", "content-encoding", "content-length", "host"))
_SECRET_KEYS: Final = frozenset(("signing_secrets", "bearer_token", "basic", "headers"))
