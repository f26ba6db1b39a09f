"""The audit trail's events: built from hostile names without failing, never carrying a secret."""

from __future__ import annotations

from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem.model import AuditEvent, EventCategory, Outcome
from xavyo_siem.trail import Action, Actor, Change, blank_secret, management_event

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)  # NUL, lone surrogates


@given(
    name=ANY_TEXT,
    agent=ANY_TEXT,
    detail=ANY_TEXT,
    client=st.one_of(st.none(), ANY_TEXT, st.ip_addresses().map(str)),
    reason=st.one_of(st.none(), ANY_TEXT),
)
def test_any_names_make_a_valid_event_that_round_trips(
    name: str, agent: str, detail: str, client: str | None, reason: str | None
) -> None:
    """Whatever a destination, a file, a user agent or a client address holds, the trail's
    event is built (recording never refuses a change) and survives its JSON form."""
    actor = Actor.api_token(
        token_id=uuid4(), role="admin", platform=False, client=client, user_agent=agent
    )
    event = management_event(
        tenant_id=uuid4(),
        actor=actor,
        action=Action.DESTINATION_UPDATED,
        change=Change(target="destination:x", target_name=name, details={"detail": detail}),
        outcome=Outcome.FAILURE,
        reason=reason,
    )
    assert event.category is EventCategory.ADMINISTRATIVE
    assert AuditEvent.from_dict(event.to_dict()) == event
    assert len(event.metadata["target_name"]) <= 200


@given(secret=st.text(min_size=1, max_size=40), before=ANY_TEXT, after=ANY_TEXT)
def test_a_blanked_reason_never_holds_the_secret(secret: str, before: str, after: str) -> None:
    """A refusal's reason that quotes the request's secret keeps none of it: blanked, or
    dropped when even the blank would spell it."""
    blanked = blank_secret(f"{before}{secret}{after}", secret)
    assert blanked is None or secret not in blanked


def test_every_action_reads_as_an_object_and_a_verb() -> None:
    """Each action's `action` field is `<object>.<past tense>`, taken from its event type."""
    assert Action.DESTINATION_CREATED.verb == "destination.created"
    assert Action.DEAD_LETTERS_PURGED.verb == "dead_letters.purged"
    assert Action.TOKEN_REVOKED.verb == "api_token.revoked"
    assert Action.KEYS_ROTATED.verb == "credential_key.rotated"
    assert all(a.value.startswith("SIEM_") and "." in a.verb for a in Action)
