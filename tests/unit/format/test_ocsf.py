"""OCSF 1.5.0: exact events, the class of every event type, stand-ins, the schema's captions.

Validity is checked by `parse_ocsf` (tests/format_parsers.py), which validates each event
against the OCSF 1.5.0 schema bundled in ocsf-json-schema, offline, with jsonschema-rs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import orjson
import pytest

from format_events import make_event
from format_parsers import ocsf_schema, parse_ocsf
from xavyo_siem.errors import EncodeError
from xavyo_siem.format import OCSF_VERSION, OcsfFormatter, ocsf_event, to_ocsf
from xavyo_siem.format.ocsf import CATEGORY_CLASSES, EVENT_CLASSES, SEVERITY_IDS, UNKNOWN_USER
from xavyo_siem.model import AuditEvent, EventCategory
from xavyo_siem.sample import generate_events

# Every event type the sample generator emits, and its OCSF class and activity.
SAMPLE_CLASSES = {
    "USER_LOGIN": (3002, 1),
    "AUTH_FAILURE": (3002, 1),
    "USER_LOGOUT": (3002, 2),
    "MFA_CHALLENGE": (3002, 99),
    "TOKEN_ISSUED": (3002, 3),
    "MFA_ENROLLED": (3001, 10),
    "PASSWORD_RESET": (3001, 4),
    "USER_CREATED": (3001, 1),
    "USER_DISABLED": (3001, 5),
    "ACCOUNT_PROVISIONED": (3001, 1),
    "GROUP_MEMBER_ADDED": (3006, 3),
    "GROUP_MEMBER_REMOVED": (3006, 4),
    "ROLE_ASSIGNED": (3005, 1),
    "ROLE_REVOKED": (3005, 2),
    "ACCESS_REQUESTED": (3005, 99),
    "ADMIN_SETTINGS_CHANGED": (6003, 3),
    "SOD_VIOLATION": (2004, 1),
}


def sample_by_type() -> dict[str, list[AuditEvent]]:
    found: dict[str, list[AuditEvent]] = {}
    for event in generate_events(3000, tenants=3, seed=11):
        found.setdefault(event.event_type, []).append(event)
    return found


def test_golden_login() -> None:
    """A login is Authentication: Logon, with every documented attribute in its place."""
    event = make_event(
        outcome="success",
        event_name="User login",
        action="login",
        actor_id="u-17",
        actor_email="alice@example.com",
        source_ip="203.0.113.7",
        session_id="s-1",
        metadata={"geo": "FR"},
    )
    assert ocsf_event(event, version="2.4.1") == {
        "class_uid": 3002,
        "class_name": "Authentication",
        "category_uid": 3,
        "category_name": "Identity & Access Management",
        "activity_id": 1,
        "activity_name": "Logon",
        "type_uid": 300201,
        "type_name": "Authentication: Logon",
        "time": 1714566896789,
        "severity_id": 2,
        "severity": "Low",
        "status_id": 1,
        "status": "Success",
        "message": "User login",
        "metadata": {
            "version": "1.5.0",
            "product": {"name": "IDP", "vendor_name": "Xavyo", "version": "2.4.1"},
            "uid": "7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37",
            "tenant_uid": "0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
            "original_time": "2024-05-01T12:34:56.789000Z",
            "event_code": "USER_LOGIN",
        },
        "actor": {
            "user": {"uid": "u-17", "name": "alice@example.com", "email_addr": "alice@example.com"},
            "session": {"uid": "s-1"},
        },
        "user": {"uid": "u-17", "name": "alice@example.com", "email_addr": "alice@example.com"},
        "service": {"name": "Xavyo IDP"},
        "src_endpoint": {"ip": "203.0.113.7"},
        "unmapped": {
            "category": "authentication",
            "severity": 3,
            "action": "login",
            "metadata": {"geo": "FR"},
        },
    }


def test_the_line_is_the_dict_as_compact_json_with_plain_values() -> None:
    """`to_ocsf` is `ocsf_event` as one compact JSON line; the dict holds only JSON types."""

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(type(k) is str and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return type(value) in (str, int, bool)

    for event in generate_events(300, tenants=2, seed=3):
        line = to_ocsf(event)
        assert orjson.loads(line) == ocsf_event(event)
        assert line == orjson.dumps(ocsf_event(event)).decode()
        assert plain(ocsf_event(event))


def test_every_sample_event_type_has_its_class_and_is_valid_ocsf() -> None:
    """Every type `xavyo-siem sample` emits maps to its documented class and activity, and
    each of its events is valid against the OCSF 1.5.0 schema and reads back whole."""
    found = sample_by_type()
    assert set(found) == set(SAMPLE_CLASSES)
    for event_type, events in found.items():
        for event in events:
            record = parse_ocsf(to_ocsf(event))
            assert (record.class_uid, record.activity_id) == SAMPLE_CLASSES[event_type]
            assert record.fields["event_id"] == str(event.event_id)
            assert record.fields["tenant_id"] == str(event.tenant_id)
            assert record.fields["event_type"] == event_type


@pytest.mark.parametrize("category", list(EventCategory))
def test_an_unknown_type_is_classed_by_its_category(category: EventCategory) -> None:
    """A type outside the table takes its category's class (activity Other, or a new
    finding), and the event is valid OCSF."""
    record = parse_ocsf(to_ocsf(make_event(event_type="CUSTOM_THING", category=category)))
    kind = CATEGORY_CLASSES[category]
    assert (record.class_uid, record.activity_id) == (kind.class_uid, kind.activity_id)
    assert record.activity_id == (1 if record.class_uid == 2004 else 99)


def test_a_known_type_under_another_category_is_classed_by_the_category() -> None:
    """USER_LOGIN filed as a security event is a finding, not a logon."""
    record = parse_ocsf(to_ocsf(make_event(event_type="USER_LOGIN", category="security")))
    assert record.class_uid == 2004


def test_captions_and_uids_are_the_schemas() -> None:
    """Class, category and activity names and ids are those of the OCSF 1.5.0 schema, and
    type_uid is class_uid * 100 + activity_id."""
    schema = ocsf_schema()
    classes = {c["uid"]: c for c in schema["classes"].values()}
    for kind in (*EVENT_CLASSES.values(), *CATEGORY_CLASSES.values()):
        head = kind.head
        spec = classes[head["class_uid"]]
        assert head["class_name"] == spec["caption"]
        activity = spec["attributes"]["activity_id"]["enum"][str(head["activity_id"])]
        assert head["activity_name"] == activity["caption"]
        assert head["type_uid"] == head["class_uid"] * 100 + head["activity_id"]
        assert head["type_name"] == f"{spec['caption']}: {activity['caption']}"
        category = schema["classes"][spec["name"]]["category"]
        assert head["category_name"] == _category_caption(category)
    severities = schema["base_event"]["attributes"]["severity_id"]["enum"]
    for severity_id, caption in SEVERITY_IDS:
        assert severities[str(severity_id)]["caption"] == caption


def _category_caption(name: str) -> str:
    return {
        "iam": "Identity & Access Management",
        "findings": "Findings",
        "application": "Application Activity",
    }[name]


@pytest.mark.parametrize(
    ("severity", "severity_id"),
    [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (6, 3), (7, 4), (8, 4), (9, 5), (10, 5)],
)
def test_severity_bands(severity: int, severity_id: int) -> None:
    """0-1 Informational, 2-3 Low, 4-6 Medium, 7-8 High, 9-10 Critical; the 0-10 is kept."""
    event = ocsf_event(make_event(severity=severity))
    assert event["severity_id"] == severity_id
    assert event["unmapped"]["severity"] == severity


def test_outcomes_are_status_ids_and_a_finding_keeps_its_outcome_unmapped() -> None:
    """success 1, failure 2, unknown 0, absent left out; a finding is status 1 New."""
    for outcome, status_id in (("success", 1), ("failure", 2), ("unknown", 0)):
        assert ocsf_event(make_event(outcome=outcome))["status_id"] == status_id
    assert "status_id" not in ocsf_event(make_event())
    finding = ocsf_event(make_event(category="sod_violation", outcome="failure"))
    assert (finding["status_id"], finding["status"]) == (1, "New")
    assert finding["unmapped"]["outcome"] == "failure"


def test_user_is_the_target_else_the_actor_else_unknown() -> None:
    """In Account Change, `user` is the account changed: the target, else the actor's own
    (self-service), else the unknown user; each is valid OCSF."""
    changed = make_event(event_type="PASSWORD_RESET", category="user_lifecycle")
    by_self = dataclasses.replace(changed, actor_id="u-1")
    for_other = dataclasses.replace(changed, actor_id="u-1", target_user="bob")
    assert ocsf_event(changed)["user"] == UNKNOWN_USER
    assert ocsf_event(by_self)["user"] == {"uid": "u-1"}
    assert ocsf_event(by_self)["actor"] == {"user": {"uid": "u-1"}}
    assert ocsf_event(for_other)["user"] == {"name": "bob"}
    assert ocsf_event(for_other)["actor"] == {"user": {"uid": "u-1"}}
    for event in (changed, by_self, for_other):
        assert parse_ocsf(to_ocsf(event)).class_uid == 3001


def test_required_attributes_get_stand_ins_when_the_event_lacks_them() -> None:
    """API Activity without actor or source, a group change without a group, a grant
    without a resource, a finding with only a request: still valid OCSF."""
    api = ocsf_event(make_event(event_type="X", category="administrative"))
    assert api["actor"] == {"app_name": "Xavyo IDP"}
    assert api["api"] == {"operation": "X"}
    assert api["src_endpoint"] == {"name": "unknown"}
    group = ocsf_event(make_event(event_type="GROUP_MEMBER_ADDED", category="group_changes"))
    assert group["group"] == {"name": "unknown"}
    assert "user" not in group
    grant = ocsf_event(make_event(event_type="ROLE_ASSIGNED", category="entitlement"))
    assert grant["privileges"] == ["ROLE_ASSIGNED"]
    acted = ocsf_event(
        make_event(event_type="ROLE_ASSIGNED", category="entitlement", action="grant_role")
    )
    assert acted["privileges"] == ["grant_role"]
    finding = ocsf_event(make_event(category="security", request_id="r-1"))
    assert finding["evidences"] == [
        {"http_request": {"uid": "r-1"}, "actor": {"app_name": "Xavyo IDP"}}
    ]
    for event in (
        make_event(event_type="X", category="administrative"),
        make_event(event_type="GROUP_MEMBER_ADDED", category="group_changes"),
        make_event(event_type="ROLE_ASSIGNED", category="entitlement"),
        make_event(category="security", request_id="r-1"),
    ):
        parse_ocsf(to_ocsf(event))


def test_group_and_role_changes_name_their_group_member_and_privilege() -> None:
    """A member added: group and resource from target_resource, user from target_user; a
    role grant: privileges and resource from target_resource."""
    added = ocsf_event(
        make_event(
            event_type="GROUP_MEMBER_ADDED",
            category="group_changes",
            target_user="bob@example.com",
            target_resource="group:finance",
            actor_email="admin@example.com",
        )
    )
    assert added["group"] == {"name": "group:finance"}
    assert added["resource"] == {"name": "group:finance"}
    assert added["user"] == {"name": "bob@example.com", "email_addr": "bob@example.com"}
    assert added["actor"]["user"]["name"] == "admin@example.com"
    granted = ocsf_event(
        make_event(event_type="ROLE_ASSIGNED", category="entitlement", target_resource="role:x")
    )
    assert granted["privileges"] == ["role:x"]
    assert granted["resource"] == {"name": "role:x"}


def test_email_addr_only_for_text_the_schema_accepts_as_an_address() -> None:
    """`email_addr` is written for plain ASCII addresses; other text stays in `name` only."""
    for text, shaped in (
        ("alice@example.com", True),
        ("zoë@example.com", False),
        ("alice", False),
        ("a@b@c.d", False),
        ("alice@example.com\n", False),
    ):
        user = ocsf_event(make_event(actor_email=text))["actor"]["user"]
        assert user["name"] == text
        assert ("email_addr" in user) is shaped, text
        parse_ocsf(to_ocsf(make_event(actor_email=text)))


def test_an_address_with_a_zone_index_is_kept_exactly_in_unmapped() -> None:
    """OCSF's IP type holds no zone index and at most 40 characters: the address goes to
    src_endpoint (without zone, compressed), the exact text to unmapped.source_ip."""
    event = ocsf_event(make_event(source_ip="fe80::1%eth0", source_address="gw.example"))
    assert event["src_endpoint"] == {"ip": "fe80::1", "hostname": "gw.example"}
    assert event["unmapped"]["source_ip"] == "fe80::1%eth0"
    assert "source_ip" not in ocsf_event(make_event(source_ip="203.0.113.7"))["unmapped"]
    long_form = "0000:0000:0000:0000:0000:ffff:192.168.100.200"  # 45 characters
    event = ocsf_event(make_event(source_ip=long_form))
    written = event["src_endpoint"]["ip"]  # the compressed form (its spelling varies by Python)
    assert ipaddress.ip_address(written) == ipaddress.ip_address(long_form)
    assert len(written) <= 40
    assert event["unmapped"]["source_ip"] == long_form
    assert parse_ocsf(to_ocsf(make_event(source_ip=long_form))).fields["source_ip"] == long_form
    assert parse_ocsf(to_ocsf(make_event(source_ip="fe80::1%eth0"))).fields["source_ip"] == (
        "fe80::1%eth0"
    )


def test_hostile_text_stays_inside_one_json_line() -> None:
    """CR, LF, U+2028, quotes and braces in every text leave one line holding one object."""
    text = 'x"}\n{"class_uid":1}\r\u2028\\'
    event = make_event(
        event_name=text, actor_email=text, reason=text, target_user=text, metadata={text: text}
    )
    line = to_ocsf(event)
    assert "\n" not in line
    assert "\r" not in line
    record = parse_ocsf(line)
    assert record.fields["event_name"] == text
    assert record.fields["metadata"] == {text: text}


def test_normalized_names_and_the_source_address_are_carried() -> None:
    """`normalized` is unmapped.normalized; source_address is src_endpoint.hostname."""
    event = ocsf_event(make_event(source_address="not an ip", normalized=("source_ip",)))
    assert event["unmapped"]["normalized"] == ["source_ip"]
    assert event["src_endpoint"] == {"hostname": "not an ip"}


def test_the_pinned_version_and_the_product() -> None:
    """metadata.version is the pinned OCSF version; the product is Xavyo IDP at the package
    version unless the option says otherwise."""
    from xavyo_siem import __version__

    assert OCSF_VERSION == "1.5.0"
    product = ocsf_event(make_event())["metadata"]["product"]
    assert product == {"name": "IDP", "vendor_name": "Xavyo", "version": __version__}


@pytest.mark.parametrize("version", ["", "  ", 3, None, "x" * 256])
def test_a_bad_version_option_is_refused(version: Any) -> None:
    """The product version must be non-blank text of at most 255 characters."""
    with pytest.raises(EncodeError) as info:
        OcsfFormatter(version=version)
    assert info.value.field == "version"
