"""Issuing and revoking the API's tokens, each recorded in the tenant's audit trail.

A tenant token's issue and revocation become `SIEM_API_TOKEN_CREATED` /
`SIEM_API_TOKEN_REVOKED` events of its tenant (the token's id, role and name; never the
token). A platform token belongs to no tenant: its issue and revocation are log lines on
the `xavyo_siem.audit` logger only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Engine

from xavyo_siem.store import writing
from xavyo_siem.store.tokens import ApiToken, Role, find_token, issue_token, revoke_token
from xavyo_siem.trail import Action, Actor, Change, audited, log, record

__all__ = ["create_api_token", "revoke_api_token"]


def _about(token: ApiToken) -> Change:
    details = {"role": token.role.value}
    return Change(target=f"api_token:{token.id}", target_name=token.name, details=details)


def _log_platform(action: Action, token: ApiToken, actor: Actor | None) -> None:
    who = "the program" if actor is None else f"{actor.actor_id} ({actor.role}) via {actor.via}"
    log.info("platform %s: api_token:%s (%s) by %s", action.verb, token.id, token.role, who)


@audited(Action.TOKEN_CREATED)
def create_api_token(
    engine: Engine,
    *,
    tenant_id: UUID | None,
    role: Role,
    name: str | None,
    actor: Actor | None = None,
) -> tuple[ApiToken, str]:
    """Issue a token of `tenant_id` (None: a platform token); its record and the token text,
    which exists only now (the store keeps its hash)."""
    with writing(engine) as conn:
        token, text = issue_token(
            conn, tenant_id=tenant_id, role=role, name=name, now=datetime.now(UTC)
        )
        if tenant_id is not None:
            record(
                conn, actor, tenant_id=tenant_id, action=Action.TOKEN_CREATED, change=_about(token)
            )
    if tenant_id is None:
        _log_platform(Action.TOKEN_CREATED, token, actor)
    return token, text


@audited(Action.TOKEN_REVOKED)
def revoke_api_token(engine: Engine, *, token_id: UUID, actor: Actor | None = None) -> bool:
    """Revoke a token for good; False when there is no live token with this id."""
    with writing(engine) as conn:
        token = find_token(conn, token_id=token_id)
        if token is None or not revoke_token(conn, token_id=token_id, now=datetime.now(UTC)):
            return False
        if token.tenant_id is not None:
            record(
                conn,
                actor,
                tenant_id=token.tenant_id,
                action=Action.TOKEN_REVOKED,
                change=_about(token),
            )
    if token.tenant_id is None:
        _log_platform(Action.TOKEN_REVOKED, token, actor)
    return True
