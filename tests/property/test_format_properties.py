"""Any event, written in each format and read back by an independent strict parser, is unchanged.

The parsers (tests/format_parsers.py) share no code with the encoders. What a format cannot
carry is stated here, as documented in docs/formats.md: CEF keeps milliseconds, removes
CR/LF from header fields and pictures controls; SD pictures controls and CR/LF; CSV guards
formula-like cells; OCSF's `user` is the target user, else the actor, else a stand-in. Each
OCSF event is also validated against the OCSF 1.5.0 schema bundled in ocsf-json-schema.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from format_parsers import parse_cef, parse_csv, parse_json_line, parse_ocsf, parse_syslog
from xavyo_siem.errors import InvalidEvent
from xavyo_siem.format import (
    CSV_COLUMNS,
    CsvWriter,
    SyslogFormatter,
    csv_header,
    ocsf_event,
    to_cef,
    to_csv,
    to_json,
    to_ocsf,
    to_syslog,
)
from xavyo_siem.model import AuditEvent, to_epoch_us

from strategies import audit_events, hostile_text

PROPERTY = settings(max_examples=150, deadline=None)

# The documented rules, restated independently of the encoders.
SEVERITY_TABLE = {0: 6, 1: 6, 2: 6, 3: 6, 4: 5, 5: 5, 6: 4, 7: 4, 8: 3, 9: 2, 10: 1}
OCSF_SEVERITY = {0: 1, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 3, 7: 4, 8: 4, 9: 5, 10: 5}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ELLIPSIS = "\u2026"


def visible(text: str, *, newlines: bool) -> str:
    """Controls as documented: C0 and DEL as Control Pictures, C1 as U+FFFD, TAB kept.

    With `newlines`, CR and LF are pictured too; otherwise they are left as they are.
    """
    out = []
    for char in text:
        code = ord(char)
        if code == 9 or (code in (10, 13) and not newlines):
            out.append(char)
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        elif 0x80 <= code < 0xA0:
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def cef_header_text(text: str) -> str:
    return visible(text.replace("\r", "").replace("\n", ""), newlines=False)


def expected_cef_extension(event: AuditEvent) -> dict[str, str]:
    ext: dict[str, str] = {
        "rt": str(to_epoch_us(event.timestamp) // 1000),
        "externalId": str(event.event_id),
        "cat": event.category.value,
        "cs1Label": "tenantId",
        "cs1": str(event.tenant_id),
    }
    simple = {
        "act": event.action,
        "outcome": None if event.outcome is None else event.outcome.value,
        "suser": event.actor_email,
        "suid": event.actor_id,
        "duser": event.target_user,
        "reason": event.reason,
        "requestClientApplication": event.user_agent,
    }
    for key, value in simple.items():
        if value is not None:
            ext[key] = visible(value, newlines=False)
    labelled = {
        "cs2": ("sessionId", event.session_id),
        "cs3": ("requestId", event.request_id),
        "cs4": ("targetResource", event.target_resource),
    }
    for key, (label, value) in labelled.items():
        if value is not None:
            ext[key + "Label"] = label
            ext[key] = visible(value, newlines=False)
    if event.metadata:
        ext["cs5Label"] = "metadata"  # cs5 itself is compared as JSON
    ip = event.source_ip
    if ip is not None:
        if ":" in ip:
            ext["c6a2"] = ip.split("%")[0]
            ext["c6a2Label"] = "sourceIPv6Address"
            if "%" in ip:
                ext["cs6Label"] = "sourceAddressScoped"
                ext["cs6"] = visible(ip, newlines=False)
        else:
            ext["src"] = ip
    if event.normalized:
        ext["flexString1Label"] = "normalized"
        ext["flexString1"] = ",".join(event.normalized)
    if event.source_address is not None:
        ext["flexString2Label"] = "sourceAddress"
        ext["flexString2"] = visible(event.source_address, newlines=False)
    return ext


def check_cef(line: str, event: AuditEvent) -> None:
    record = parse_cef(line)
    assert (record.vendor, record.product) == ("Xavyo", "IDP")
    assert record.signature_id == cef_header_text(event.event_type)
    name = None if event.event_name is None else cef_header_text(event.event_name)
    assert record.name == (name if name and name.strip() else record.signature_id)
    assert record.severity == str(event.severity)
    ext = dict(record.extension)
    if event.metadata:
        assert json.loads(ext.pop("cs5")) == dict(event.metadata)
    assert ext == expected_cef_extension(event)


# Events whose text fits every cap (hostile_text is at most 40 characters), with IPv6
# zone indexes mixed in.
zone_ips = st.builds(
    lambda address, zone: f"{address}%{zone}",
    st.ip_addresses(v=6).map(str),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="%/\x00"), min_size=1),
)


@st.composite
def events(draw: st.DrawFn) -> AuditEvent:
    event = draw(audit_events())
    if draw(st.integers(0, 5)) == 0:
        ip = draw(zone_ips)
        with contextlib.suppress(InvalidEvent):  # a zone the model refuses
            event = dataclasses.replace(event, source_ip=ip)
    return event


@PROPERTY
@given(events())
def test_cef_line_parses_back_to_the_event(event: AuditEvent) -> None:
    """The CEF line is one valid record whose header and keys give back every field, no more."""
    check_cef(to_cef(event), event)


def expected_sd(event: AuditEvent) -> dict[str, list[str]]:
    fields: list[tuple[str, Any]] = [
        ("eventId", str(event.event_id)),
        ("tenantId", str(event.tenant_id)),
        ("eventType", event.event_type),
        ("category", event.category.value),
        ("severity", str(event.severity)),
        ("outcome", None if event.outcome is None else event.outcome.value),
        ("action", event.action),
        ("actorId", event.actor_id),
        ("actorEmail", event.actor_email),
        ("targetUser", event.target_user),
        ("sourceIp", event.source_ip),
        ("sessionId", event.session_id),
        ("requestId", event.request_id),
        ("normalized", ",".join(event.normalized) or None),
    ]
    return {name: [visible(v, newlines=True)] for name, v in fields if v is not None}


def sanitized(text: str, limit: int) -> str | None:
    cut = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text[:limit])
    return None if cut in ("", "-") else cut


def check_syslog(message: str, event: AuditEvent, *, facility: int, pen: int) -> str:
    record = parse_syslog(message)
    assert record.version == 1
    assert record.pri == facility * 8 + SEVERITY_TABLE[event.severity]
    assert datetime.fromisoformat(record.timestamp) == event.timestamp
    assert len(record.timestamp) == len("2024-01-01T00:00:00.000000Z")
    assert record.msgid == sanitized(event.event_type, 32)
    assert record.sd == {f"xavyo@{pen}": expected_sd(event)}
    assert record.msg is not None
    assert record.bom == (not record.msg.isascii())
    return record.msg


@PROPERTY
@given(events(), st.integers(0, 23), st.integers(1, 2**31))
def test_syslog_json_message_parses_back_to_the_event(
    event: AuditEvent, facility: int, pen: int
) -> None:
    """The RFC 5424 message is one strict record: PRI, time, SD and the JSON MSG give the event."""
    formatter = SyslogFormatter(facility=facility, enterprise_number=pen, hostname="h.example")
    msg = check_syslog(formatter(event), event, facility=facility, pen=pen)
    assert AuditEvent.from_dict(parse_json_line(msg)) == event


@PROPERTY
@given(events())
def test_syslog_cef_message_parses_back_to_the_event(event: AuditEvent) -> None:
    """With a CEF body, the MSG is the CEF line, which itself parses back to the event."""
    msg = check_syslog(to_syslog(event, body="cef"), event, facility=13, pen=32473)
    check_cef(msg, event)


@PROPERTY
@given(events())
def test_json_line_parses_back_to_the_event(event: AuditEvent) -> None:
    """The JSON line is one object in the to_dict form that rebuilds an equal event."""
    line = to_json(event)
    obj = parse_json_line(line)
    assert obj == event.to_dict()
    assert AuditEvent.from_dict(obj) == event


def guarded(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def expected_csv(event: AuditEvent, *, guard: bool) -> list[tuple[str, bool]]:
    data = event.to_dict()
    cells: list[tuple[str, bool]] = []
    for column in CSV_COLUMNS:
        value = data.get(column)
        if value is None:
            cells.append(("", False))
        elif column == "metadata":
            cells.append(("<json>", True))
        elif column == "normalized":
            cells.append((",".join(value), True))
        else:
            text = str(value)
            cells.append((guarded(text) if guard else text, True))
    return cells


@PROPERTY
@given(events(), st.booleans())
def test_csv_row_parses_back_to_the_event(event: AuditEvent, guard: bool) -> None:
    """Header plus row are exactly two RFC 4180 records whose cells give back every field."""
    text = csv_header() + "\r\n" + to_csv(event, formula_guard=guard) + "\r\n"
    header, row = parse_csv(text)
    assert [f.value for f in header] == list(CSV_COLUMNS)
    cells = [(f.value, f.quoted) for f in row]
    at = CSV_COLUMNS.index("metadata")
    if event.metadata:
        assert json.loads(cells[at][0]) == dict(event.metadata)
        cells[at] = ("<json>", True)
    assert cells == expected_csv(event, guard=guard)


@settings(max_examples=40, deadline=None)
@given(st.lists(events(), min_size=1, max_size=20))
def test_csv_export_is_one_record_per_event_for_the_stdlib_reader(
    batch: list[AuditEvent],
) -> None:
    """A streamed export of N events reads back, with csv.reader, as a header and N rows."""
    out = io.StringIO(newline="")
    CsvWriter(out, formula_guard=False).write_many(batch)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert len(rows) == len(batch) + 1
    assert [row[0] for row in rows[1:]] == [str(e.event_id) for e in batch]
    assert [row[15] for row in rows[1:]] == [e.reason or "" for e in batch]


# Long values: the CEF dictionary's length caps apply in CEF only, and a cut is marked.
# A random chunk repeated to 900-5000 characters, so cuts land on any kind of character
# without the entropy of 5000 independent draws.
long_text = st.builds(
    lambda chunk, length: (chunk * (length // len(chunk) + 1))[:length],
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1),
    st.integers(min_value=900, max_value=5000),
)


@settings(max_examples=60, deadline=None)
@given(long_text, long_text, long_text)
def test_long_values_are_cut_at_their_caps_in_cef_and_whole_elsewhere(
    action: str, reason: str, session: str
) -> None:
    """Over-cap CEF values are a prefix of the value plus "…" within the cap; JSON/SD keep all."""
    event = AuditEvent(
        event_id="7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37",
        tenant_id="0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
        timestamp=datetime(2024, 5, 1, tzinfo=UTC),
        event_type="T",
        category="security",
        action=action,
        reason=reason,
        session_id=session,
    )
    ext = parse_cef(to_cef(event)).extension
    for key, value, cap in (("act", action, 63), ("reason", reason, 1023), ("cs2", session, 4000)):
        shown = visible(value, newlines=False)
        if len(value) <= cap:
            assert ext[key] == shown
        else:
            assert len(ext[key]) <= cap
            assert ext[key].endswith(ELLIPSIS)
            assert shown.startswith(ext[key][:-1])
            assert len(ext[key]) >= cap - 12  # backs off a cluster at most
    record = parse_syslog(to_syslog(event))
    assert record.sd["xavyo@32473"]["sessionId"] == [visible(session, newlines=True)]
    assert record.msg is not None
    assert AuditEvent.from_dict(parse_json_line(record.msg)) == event


@PROPERTY
@given(hostile_text)
def test_no_text_anywhere_adds_a_key_an_element_or_a_record(text: str) -> None:
    """The same hostile text in every field leaves the key sets and record counts unchanged."""
    event = AuditEvent(
        event_id="7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37",
        tenant_id="0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
        timestamp=datetime(2024, 5, 1, tzinfo=UTC),
        event_type=text if text.strip() else "T",
        category="security",
        event_name=text,
        action=text,
        actor_id=text,
        actor_email=text,
        user_agent=text,
        target_user=text,
        target_resource=text,
        reason=text,
        session_id=text,
        request_id=text,
        source_address=text,
        metadata={text or "k": text},
        normalized=("metadata", "source_ip"),
    )
    assert set(parse_cef(to_cef(event)).extension) == {
        "rt", "externalId", "cat", "act", "suser", "suid", "duser", "reason",
        "requestClientApplication", "cs1", "cs1Label", "cs2", "cs2Label", "cs3", "cs3Label",
        "cs4", "cs4Label", "cs5", "cs5Label", "flexString1", "flexString1Label", "flexString2",
        "flexString2Label",
    }  # fmt: skip
    for body in ("json", "cef"):
        record = parse_syslog(to_syslog(event, body=body))  # type: ignore[arg-type]
        assert list(record.sd) == ["xavyo@32473"]
        assert len(record.sd["xavyo@32473"]) == 12
    assert len(parse_csv(csv_header() + "\r\n" + to_csv(event) + "\r\n")) == 2
    assert len(parse_json_line(to_json(event))) == 19
    ocsf = parse_ocsf(to_ocsf(event)).event
    assert set(ocsf) == {
        "class_uid", "class_name", "category_uid", "category_name", "activity_id",
        "activity_name", "type_uid", "type_name", "time", "severity_id", "severity",
        "status_id", "status", "message", "status_detail", "metadata", "finding_info",
        "evidences", "resources", "unmapped",
    }  # fmt: skip
    assert set(ocsf["unmapped"]) == {"category", "severity", "action", "metadata", "normalized"}
    assert len(ocsf["evidences"]) == 1
    assert len(ocsf["resources"]) == 2


def _without_email(user: dict[str, Any] | None) -> dict[str, Any] | None:
    """An OCSF user without `email_addr`, after checking it repeats `name` when present."""
    if user is None:
        return None
    if "email_addr" in user:
        assert user["email_addr"] == user["name"]
    return {key: value for key, value in user.items() if key != "email_addr"}


def expected_ocsf_user(event: AuditEvent) -> dict[str, Any]:
    """`user` as documented: the target user, else the actor's own account, else unknown."""
    if event.target_user is not None:
        return {"name": event.target_user}
    actor = {
        key: value
        for key, value in (("uid", event.actor_id), ("name", event.actor_email))
        if value is not None
    }
    return actor or {"name": "unknown", "type_id": 0}


def check_ocsf(line: str, event: AuditEvent) -> None:
    """`line` is one OCSF 1.5.0 event valid against the bundled schema, and every field of
    `event` reads back from its documented place."""
    record = parse_ocsf(line)
    expected = event.to_dict()
    time_ms = to_epoch_us(event.timestamp) // 1000
    assert record.event["time"] == time_ms
    assert record.event["severity_id"] == OCSF_SEVERITY[event.severity]
    if record.class_uid in (3001, 3002, 3005):
        assert _without_email(record.user) == expected_ocsf_user(event)
        expected.pop("target_user", None)
    assert record.fields == expected


@PROPERTY
@given(events())
def test_ocsf_line_is_a_valid_ocsf_event_that_parses_back_to_the_event(event: AuditEvent) -> None:
    """Any event is one line holding one OCSF 1.5.0 event valid against the bundled schema,
    every field reads back from its documented place, and the dict is the line."""
    line = to_ocsf(event)
    check_ocsf(line, event)
    assert orjson.loads(line) == ocsf_event(event)


@PROPERTY
@given(events())
def test_syslog_ocsf_message_parses_back_to_the_event(event: AuditEvent) -> None:
    """With an OCSF body, the MSG is the OCSF event, which itself parses back to the event."""
    msg = check_syslog(to_syslog(event, body="ocsf"), event, facility=13, pen=32473)
    check_ocsf(msg, event)
