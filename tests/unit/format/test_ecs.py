"""ECS 9.4.0: exact documents for small events, the categorisation table, every field's place."""

from __future__ import annotations

import json

import pytest

from format_events import make_event
from format_parsers import check_ecs_document
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import ECS_VERSION, ecs_categorisation, ecs_object, to_ecs
from xavyo_siem.model import EventCategory
from xavyo_siem.sample import generate_events


def test_minimal_event_is_the_exact_document() -> None:
    """An event with only the required fields gives exactly this one-line document."""
    assert to_ecs(make_event()) == (
        '{"@timestamp":"2024-05-01T12:34:56.789000Z","ecs":{"version":"9.4.0"},'
        '"event":{"kind":"event","category":["authentication"],"type":["start"],'
        '"action":"user-login","id":"7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37","severity":3,'
        '"module":"xavyo","dataset":"xavyo.audit"},'
        '"organization":{"id":"0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58"},'
        '"labels":{"event_type":"USER_LOGIN","category":"authentication"}}'
    )
    assert ECS_VERSION == "9.4.0"


def test_every_field_has_its_ecs_place() -> None:
    """Each optional field lands in its documented ECS field (or label, or xavyo.*)."""
    event = make_event(
        event_name="User login",
        action="login",
        outcome="failure",
        actor_id="usr_1",
        actor_email="a@example.com",
        target_user="bob",
        target_resource="app:crm",
        source_ip="2001:db8::1",
        reason="bad password",
        user_agent="curl/8",
        session_id="s1",
        request_id="r1",
        metadata={"geo": "FR", "a.b": "dotted"},
        normalized=("actor_email",),
    )
    fields = check_ecs_document(to_ecs(event))
    assert fields == {
        "@timestamp": "2024-05-01T12:34:56.789000Z",
        "ecs.version": "9.4.0",
        "event.kind": "event",
        "event.category": ["authentication"],
        "event.type": ["start"],
        "event.action": "login",
        "event.outcome": "failure",
        "event.id": "7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37",
        "event.severity": 3,
        "event.reason": "bad password",
        "event.module": "xavyo",
        "event.dataset": "xavyo.audit",
        "message": "User login",
        "organization.id": "0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
        "user.id": "usr_1",
        "user.email": "a@example.com",
        "user.target.name": "bob",
        "source.ip": "2001:db8::1",
        "source.address": "2001:db8::1",
        "user_agent.original": "curl/8",
        "related.user": ["usr_1", "a@example.com", "bob"],
        "related.ip": ["2001:db8::1"],
        "labels": {
            "event_type": "USER_LOGIN",
            "category": "authentication",
            "target_resource": "app:crm",
            "session_id": "s1",
            "request_id": "r1",
        },
        "xavyo.metadata": {"geo": "FR", "a.b": "dotted"},
        "xavyo.normalized": ["actor_email"],
    }


def test_group_changes_name_the_group_and_users_are_related_once() -> None:
    """A group change puts the resource in group.name; a repeated user is related once."""
    event = make_event(
        event_type="GROUP_MEMBER_ADDED",
        category="group_changes",
        actor_id="alice",
        actor_email="alice",
        target_user="alice",
        target_resource="admins",
    )
    doc = ecs_object(event)
    assert doc["group"] == {"name": "admins"}
    assert doc["related"] == {"user": ["alice"]}
    assert "target_resource" not in doc["labels"]


def test_a_zoned_ip_keeps_its_text_in_source_address_only() -> None:
    """source.ip and related.ip drop the IPv6 zone; source.address keeps it exactly."""
    doc = ecs_object(make_event(source_ip="fe80::1%eth0", source_address="gw"))
    assert doc["source"] == {"ip": "fe80::1", "address": "fe80::1%eth0"}
    assert doc["related"] == {"ip": ["fe80::1"]}
    assert doc["labels"]["source_address"] == "gw"


def test_a_source_that_is_not_an_ip_is_source_address() -> None:
    """Without source_ip, source_address is source.address and nothing is related."""
    doc = ecs_object(make_event(source_address="gateway-7"))
    assert doc["source"] == {"address": "gateway-7"}
    assert "related" not in doc


@pytest.mark.parametrize(
    ("category", "event_type", "expected"),
    [
        ("authentication", "USER_LOGIN", ("event", ("authentication",), ("start",))),
        ("authentication", "AUTH_FAILURE", ("event", ("authentication",), ("start",))),
        ("authentication", "USER_LOGOUT", ("event", ("authentication", "session"), ("end",))),
        ("authentication", "SESSION_EXPIRED",
         ("event", ("authentication", "session"), ("end",))),
        ("authentication", "MFA_CHALLENGE", ("event", ("authentication",), ("info",))),
        ("user_lifecycle", "USER_CREATED", ("event", ("iam",), ("user", "creation"))),
        ("user_lifecycle", "USER_DELETED", ("event", ("iam",), ("user", "deletion"))),
        ("user_lifecycle", "PASSWORD_RESET", ("event", ("iam",), ("user", "change"))),
        ("provisioning", "ACCOUNT_PROVISIONED", ("event", ("iam",), ("user", "creation"))),
        ("group_changes", "GROUP_MEMBER_ADDED", ("event", ("iam",), ("group", "change"))),
        ("group_changes", "GROUP_MEMBER_REMOVED", ("event", ("iam",), ("group", "change"))),
        ("group_changes", "GROUP_CREATED", ("event", ("iam",), ("group", "creation"))),
        ("entitlement", "ROLE_ASSIGNED", ("event", ("iam",), ("user", "change"))),
        ("entitlement", "ADMIN_ROLE_GRANTED", ("event", ("iam",), ("admin", "change"))),
        ("access_requests", "ACCESS_REQUESTED", ("event", ("iam",), ("user", "info"))),
        ("administrative", "ADMIN_SETTINGS_CHANGED", ("event", ("configuration",), ("change",))),
        ("security", "MFA_ENROLLED", ("event", ("iam",), ("info",))),
        ("sod_violation", "SOD_VIOLATION", ("alert", ("iam",), ("info",))),
    ],
)  # fmt: skip
def test_categorisation_follows_the_documented_table(
    category: str, event_type: str, expected: tuple[str, tuple[str, ...], tuple[str, ...]]
) -> None:
    """Each category and event type gives the documented kind, categories and types."""
    assert ecs_categorisation(EventCategory(category), event_type) == expected


@pytest.mark.parametrize("category", list(EventCategory))
@pytest.mark.parametrize("event_type", ["X", "USER_LOGOUT", "GROUP_DELETED", "MFA_VERIFY"])
def test_every_categorisation_uses_only_allowed_values(
    category: EventCategory, event_type: str
) -> None:
    """Whatever the event type, the document passes the ECS 9.4.0 checks."""
    check_ecs_document(to_ecs(make_event(category=category, event_type=event_type)))


def test_sample_events_are_valid_ecs_documents() -> None:
    """Every kind of sample event is an ECS document with allowed categorisation values."""
    for event in generate_events(200, seed=11):
        fields = check_ecs_document(to_ecs(event))
        assert fields["event.id"] == str(event.event_id)


def test_control_characters_are_escaped_by_json() -> None:
    """A CR/LF or control in any text is a JSON escape: the line stays one line."""
    line = to_ecs(make_event(reason="a\r\nb\x01", metadata={"k\n": "\x7f"}))
    assert "\n" not in line
    assert "\r" not in line
    assert json.loads(line)["event"]["reason"] == "a\r\nb\x01"


def test_a_lone_surrogate_is_an_encode_error() -> None:
    """An unvalidated event holding a lone surrogate cannot be written as JSON."""
    event = make_event()
    object.__setattr__(event, "reason", "a\ud800")
    with pytest.raises(EncodeError):
        to_ecs(event)
