"""AuditEvent validation and its JSON form."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import pytest

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.model import (
    EVENT_FIELDS,
    FIELD_NAMES,
    MAX_EVENT_TYPE_CHARS,
    MAX_METADATA_ENTRIES,
    MAX_TEXT_CHARS,
    TEXT_FIELDS,
    AuditEvent,
    EventCategory,
    FieldKind,
    Outcome,
)

EVENT_ID = "0b5f3c9e-2a0d-4d7e-9d4c-3f1e2b6a7c80"
TENANT_ID = "7d1c0f2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f"


def minimal(**extra: Any) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "tenant_id": TENANT_ID,
        "timestamp": "2026-03-01T10:15:30.123456Z",
        "event_type": "USER_LOGIN",
        "category": "authentication",
        **extra,
    }


def test_minimal_event_gets_default_severity_of_its_category() -> None:
    """An event without severity takes its category's default, and absent fields stay None."""
    event = AuditEvent.from_dict(minimal(category="sod_violation"))
    assert event.severity == EventCategory.SOD_VIOLATION.default_severity == 8
    assert event.actor_email is None
    assert event.metadata == {}


def test_every_category_has_a_default_severity_in_range() -> None:
    """Each category's default severity is a valid 0-10 severity."""
    assert all(0 <= category.default_severity <= 10 for category in EventCategory)


def test_aware_timestamp_is_normalised_to_utc_keeping_microseconds() -> None:
    """A +02:00 timestamp becomes the same instant in UTC, with its microseconds."""
    event = AuditEvent.from_dict(minimal(timestamp="2026-03-01T12:15:30.000007+02:00"))
    assert event.timestamp == datetime(2026, 3, 1, 10, 15, 30, 7, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC
    assert event.to_dict()["timestamp"] == "2026-03-01T10:15:30.000007Z"


def test_full_event_round_trips_through_its_json_form() -> None:
    """to_dict -> JSON -> from_dict gives back an equal event, field for field."""
    event = AuditEvent.from_dict(
        minimal(
            severity=9,
            event_name="Login",
            action="login",
            outcome="failure",
            actor_id="u1",
            actor_email="alice@example.com",
            source_ip="2001:db8::1",
            user_agent="curl/8",
            target_user="bob",
            target_resource="app:payroll",
            reason="bad password",
            session_id="s1",
            request_id="r1",
            metadata={"key with space": "v=1", "emoji": "🔐"},
        )
    )
    assert AuditEvent.from_dict(orjson.loads(orjson.dumps(event.to_dict()))) == event
    assert event.outcome is Outcome.FAILURE


def test_direct_construction_validates_like_from_dict() -> None:
    """Building an AuditEvent directly runs the same checks, so no invalid event exists."""
    with pytest.raises(InvalidEvent, match="severity"):
        AuditEvent(
            event_id=UUID(EVENT_ID),
            tenant_id=UUID(TENANT_ID),
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            event_type="X",
            category=EventCategory.SECURITY,
            severity=11,
        )


def test_unicode_is_kept_as_given() -> None:
    """Non-ASCII text (emoji, right-to-left, combining marks) is stored exactly as given."""
    text = "Zoë 🔐 שלום e\u0301 \u200b"
    event = AuditEvent.from_dict(minimal(actor_email=text, metadata={"ключ": text}))
    assert event.actor_email == text
    assert event.to_dict()["metadata"] == {"ключ": text}


def test_ipv6_with_zone_index_is_accepted() -> None:
    """A link-local IPv6 address with a zone index is a valid source address."""
    assert AuditEvent.from_dict(minimal(source_ip="fe80::1%eth0")).source_ip == "fe80::1%eth0"


# A bad value of each kind, the field the error names and words of its rule.
BAD_VALUES = [
    ({"event_id": "not-a-uuid"}, "event_id", "must be a UUID"),
    ({"event_id": 42}, "event_id", "must be a UUID string"),
    ({"tenant_id": "1234"}, "tenant_id", "must be a UUID"),
    ({"timestamp": "2026-03-01T10:15:30"}, "timestamp", "UTC offset"),
    ({"timestamp": "yesterday"}, "timestamp", "ISO 8601"),
    ({"timestamp": 1700000000}, "timestamp", "ISO 8601"),
    ({"severity": 11}, "severity", "0 to 10"),
    ({"severity": "3"}, "severity", "0 to 10"),
    ({"severity": True}, "severity", "0 to 10"),
    ({"severity": 2.5}, "severity", "0 to 10"),
    ({"category": "weather"}, "category", "must be one of"),
    ({"outcome": "maybe"}, "outcome", "success, failure or unknown"),
    ({"source_ip": "300.1.2.3"}, "source_ip", "IPv4 or IPv6"),
    ({"source_ip": "localhost"}, "source_ip", "IPv4 or IPv6"),
    ({"metadata": {"k": 1}}, "metadata.k", "must be a string"),
    ({"metadata": ["a"]}, "metadata", "object of strings"),
    ({"metadata": {"": "v"}}, "metadata", "keys must not be empty"),
    ({"actor_email": "a\ud800b"}, "actor_email", "lone surrogate"),
    ({"reason": "a\x00b"}, "reason", "NUL"),
    ({"user_agent": 7}, "user_agent", "must be a string"),
    ({"event_type": "  "}, "event_type", "must not be empty"),
]
# Only from_dict refuses these: an unknown key, a required key present as null, and -1,
# which the constructor's default uses for "the category's severity".
FROM_DICT_ONLY = [
    ({"severity": -1}, "severity", "0 to 10"),
    ({"colour": "red"}, "colour", "not a field"),
    ({"event_type": None}, "event_type", "is required"),
]


def assert_rejected(build: Any, changes: dict[str, Any], field: str, rule: str) -> None:
    data = minimal()
    data.update(changes)
    with pytest.raises(InvalidEvent) as caught:
        build(data)
    assert caught.value.field == field
    assert rule in str(caught.value)


# What makes a line no event at all: from_dict refuses only these.
NOT_AN_EVENT = [
    (changes, field, rule)
    for changes, field, rule in BAD_VALUES
    if field in ("event_id", "tenant_id", "timestamp")
]


@pytest.mark.parametrize(("changes", "field", "rule"), NOT_AN_EVENT)
def test_an_event_without_id_tenant_or_time_is_refused_naming_field_and_rule(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    """A bad id, tenant or time raises InvalidEvent whose field and message name the rule."""
    assert_rejected(AuditEvent.from_dict, changes, field, rule)


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [entry for entry in BAD_VALUES + FROM_DICT_ONLY if entry not in NOT_AN_EVENT],
)
def test_from_dict_normalises_every_other_bad_value_and_names_the_field(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    """Every other bad value is normalised, never refused, and `normalized` names its field
    (a metadata entry's: metadata; a key that is not a field goes into metadata)."""
    event = AuditEvent.from_dict({**minimal(), **changes})
    named = field.partition(".")[0] if field in FIELD_NAMES or "." in field else "metadata"
    assert named in event.normalized
    assert AuditEvent.from_dict(event.to_dict()) == event


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        *BAD_VALUES,
        ({"severity": 2.0}, "severity", "0 to 10"),  # from_dict takes 2.0 as 2 (JSON numbers)
        ({"metadata": None}, "metadata", "object of strings"),  # from_dict: absent
    ],
)
def test_direct_construction_names_the_field_and_rule_as_from_dict_does(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    """Building an AuditEvent directly applies each field's rule with the same message."""
    assert_rejected(lambda data: AuditEvent(**data), changes, field, rule)


def test_from_dict_lists_every_field_it_normalised_sorted() -> None:
    """With several bad fields, from_dict repairs each and `normalized` lists them all,
    sorted, with what the input said was normalised before."""
    data = {
        **minimal(),
        "category": "weather",
        "severity": 11,
        "reason": "\x00",
        "outcome": "maybe",
        "source_ip": "z",
        "actor_id": "",
        "normalized": ["event_name"],
    }
    event = AuditEvent.from_dict(data)
    assert event.normalized == (
        "actor_id",
        "category",
        "event_name",
        "outcome",
        "reason",
        "severity",
        "source_address",
        "source_ip",
    )
    assert (event.category, event.severity, event.outcome) == ("security", 10, "unknown")
    assert (event.reason, event.source_address, event.actor_id) == ("\ufffd", "z", None)


def test_a_leap_second_is_the_last_microsecond_of_its_minute() -> None:
    """A leap second (23:59:60, with or without fraction or offset) is kept as 23:59:59.999999
    of the same minute, and `normalized` names the timestamp."""
    for given in ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5+00:00"):
        event = AuditEvent.from_dict(minimal(timestamp=given))
        assert event.timestamp.isoformat() == "2016-12-31T23:59:59.999999+00:00"
        assert event.normalized == ("timestamp",)


def test_the_field_declaration_is_the_class_body() -> None:
    """EVENT_FIELDS lists AuditEvent's fields in order, each required exactly when it has no
    default, and TEXT_FIELDS is the optional free text in that order."""
    assert tuple(f.name for f in dataclasses.fields(AuditEvent)) == FIELD_NAMES
    required = [f.name for f in EVENT_FIELDS if f.required]
    assert required == ["event_id", "tenant_id", "timestamp", "event_type", "category"]
    assert {f.kind for f in EVENT_FIELDS} == set(FieldKind)
    assert TEXT_FIELDS == (
        "event_name",
        "action",
        "actor_id",
        "actor_email",
        "user_agent",
        "target_user",
        "target_resource",
        "reason",
        "session_id",
        "request_id",
        "source_address",
    )


def test_to_dict_writes_the_fields_in_declaration_order() -> None:
    """An event with every field present has its JSON keys in FIELD_NAMES order."""
    values = dict.fromkeys(TEXT_FIELDS, "x")
    event = AuditEvent.from_dict(
        minimal(
            severity=1,
            outcome="success",
            source_ip="192.0.2.1",
            metadata={"k": "v"},
            normalized=["reason"],
            **values,
        )
    )
    assert tuple(event.to_dict()) == FIELD_NAMES


def test_missing_required_field_is_named() -> None:
    """Leaving out a required field names that field."""
    data = minimal()
    del data["tenant_id"]
    with pytest.raises(InvalidEvent, match="tenant_id: is required"):
        AuditEvent.from_dict(data)


def test_non_object_is_rejected() -> None:
    """A JSON value that is not an object is refused as an event."""
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        AuditEvent.from_dict([1, 2])  # type: ignore[arg-type]


def test_line_number_is_prefixed_when_located() -> None:
    """An error located in a file says the line before the field."""
    error = InvalidEvent("severity", "must be an integer from 0 to 10").at_line(12)
    assert str(error) == "line 12: severity: must be an integer from 0 to 10"
    assert error.line == 12


@pytest.mark.parametrize(
    "form",
    [
        EVENT_ID,
        EVENT_ID.upper(),
        "{" + EVENT_ID + "}",
        "urn:uuid:" + EVENT_ID,
        EVENT_ID.replace("-", ""),
    ],
)
def test_every_uuid_form_python_accepts_gives_the_same_id(form: str) -> None:
    """The fast path for canonical ids and the general one agree on every form UUID() takes."""
    event = AuditEvent.from_dict(minimal(event_id=form))
    assert event.event_id == UUID(EVENT_ID)
    assert str(event.event_id) == EVENT_ID
    assert event.event_id.int == UUID(EVENT_ID).int


def test_a_trusted_event_is_an_ordinary_frozen_event() -> None:
    """from_values (the store's read path) builds an AuditEvent equal to the validated one,
    as immutable and as usable with dataclasses.replace."""
    checked = AuditEvent.from_dict(minimal(outcome="success", metadata={"geo": "FR"}))
    trusted = AuditEvent.from_values([getattr(checked, name) for name in FIELD_NAMES])
    assert type(trusted) is AuditEvent
    assert trusted == checked
    assert repr(trusted) == repr(checked)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trusted.severity = 1  # type: ignore[misc]
    assert dataclasses.replace(trusted, severity=9).severity == 9


def test_a_uuid_subclass_becomes_a_plain_uuid() -> None:
    """An id given as a UUID subclass is kept as a plain UUID, which every encoder writes."""

    class TaggedUUID(UUID):
        pass

    event = AuditEvent.from_dict(minimal(event_id=TaggedUUID(EVENT_ID)))
    assert type(event.event_id) is UUID
    assert event.event_id == UUID(EVENT_ID)


def test_from_dict_cuts_over_long_values_and_the_constructor_keeps_them() -> None:
    """from_dict, the way events come in, cuts text and metadata to their limits (what is
    cut away is never looked at, a NUL there included) and names them in `normalized`;
    building an event directly keeps the values whole."""
    long_reason = "r" * MAX_TEXT_CHARS + "\x00"
    metadata = {f"k{n}": "v" for n in range(MAX_METADATA_ENTRIES + 5)}
    data = minimal(event_type="T" * 500, reason=long_reason, metadata=metadata)
    cut = AuditEvent.from_dict(data)
    assert cut.event_type == "T" * MAX_EVENT_TYPE_CHARS
    assert cut.reason == "r" * MAX_TEXT_CHARS
    assert list(cut.metadata) == [f"k{n}" for n in range(MAX_METADATA_ENTRIES)]
    assert cut.normalized == ("event_type", "metadata", "reason")
    fields = {f.name: getattr(cut, f.name) for f in dataclasses.fields(AuditEvent)}
    whole = AuditEvent(**{**fields, "event_type": "T" * 500, "metadata": metadata})
    assert (whole.event_type, whole.metadata) == ("T" * 500, metadata)
    with pytest.raises(InvalidEvent, match="NUL"):
        AuditEvent(**{**fields, "reason": long_reason})
