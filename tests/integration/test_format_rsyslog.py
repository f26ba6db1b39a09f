"""A real rsyslog receives our RFC 5424 messages and its own parser extracts the same fields.

rsyslog (imtcp, then mmpstrucdata for the SD, written out as JSON by tests/peers/rsyslog.py)
is the peer. What it showed, and what the assertions pin down:

* the UTF-8 BOM before a non-ASCII MSG is *kept* by rsyslog in `%msg%` (it does not strip it);
* mmpstrucdata lower-cases PARAM-NAMEs (`eventId` arrives as `eventid`) and unescapes
  `\\"`, `\\\\` and `\\]` in PARAM-VALUEs;
* LF framing is safe because no message holds a raw LF; octet counting works as well;
* a LEEF MSG is split by rsyslog's own normaliser (mmnormalize with a liblognorm rule for
  LEEF 2.0) into the same header fields and attributes as our strict parser reads;
* mmjsonparse reads an ECS MSG as the same JSON document, but only when the MSG is pure
  ASCII: it does not skip the BOM that RFC 5424 puts before a UTF-8 MSG, and keeps such a
  MSG unparsed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from format_parsers import check_ecs_document, parse_cef, parse_json_line, parse_leef, parse_syslog
from xavyo_siem.format import SyslogFormatter
from xavyo_siem.model import AuditEvent
from xavyo_siem.sample import generate_events

from peers.rsyslog import RsyslogPeer, start_rsyslog

pytestmark = pytest.mark.peer

HOSTILE = 'a"b\\c]d\r\ne\tf\x01\x1b\x7f\x85 😀 zoë |=|'


def _hostile_events() -> list[AuditEvent]:
    base = {
        "event_id": "7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37",
        "tenant_id": "0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
        "timestamp": datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC),
        "category": "security",
    }
    return [
        AuditEvent(
            **base,
            event_type='USER LOGIN ]"',
            event_name=HOSTILE,
            action=HOSTILE,
            actor_id=HOSTILE,
            actor_email="",
            source_ip="fe80::1%eth0",
            reason="alice act=allowed",
            session_id='s] [origin ip="6.6.6.6"]',
            metadata={"key with space": HOSTILE, "k=v": "=cmd|' /C calc'!A0"},
        ),
        AuditEvent(**base, event_type="BIG", reason='"]\\' * 34_000),
        AuditEvent(**base, event_type="PLAIN", outcome="failure", source_ip="203.0.113.9"),
    ]


def _events() -> list[AuditEvent]:
    return _hostile_events() + list(generate_events(20, tenants=3, seed=11))


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[RsyslogPeer]:
    """An rsyslog peer with a TCP listener writing what it parsed as JSON."""
    with start_rsyslog(tmp_path, tcp=True, output="json", max_message_bytes=1 << 20) as running:
        yield running


def _send(peer: RsyslogPeer, messages: list[str], *, octet_counting: bool) -> None:
    assert peer.tcp_port is not None
    with socket.create_connection(("127.0.0.1", peer.tcp_port), timeout=10) as sock:
        for message in messages:
            data = message.encode()
            sock.sendall(f"{len(data)} ".encode() + data if octet_counting else data + b"\n")


def _check_against_rsyslog(
    peer: RsyslogPeer, messages: list[str], events: list[AuditEvent]
) -> list[str]:
    """Compare what rsyslog parsed with our strict parser and with the events; return MSGs."""
    peer.wait_for(len(messages))
    received = peer.read_json()
    assert len(received) == len(messages)  # one record each, none split, none merged
    bodies = []
    for got, sent, event in zip(received, messages, events, strict=True):
        ours = parse_syslog(sent)
        assert got["pri"] == ours.pri
        assert got["version"] == "1"
        assert datetime.fromisoformat(got["timestamp"]) == event.timestamp
        assert got["hostname"] == (ours.hostname or "-")
        assert got["app_name"] == ours.app_name
        assert got["procid"] == (ours.procid or "-")
        assert got["msgid"] == ours.msgid
        expected_sd = {
            sd_id: {name.lower(): values[0] for name, values in params.items()}
            for sd_id, params in ours.sd.items()
        }
        assert got["sd"] == expected_sd
        params = got["sd"]["xavyo@32473"]
        assert params["eventid"] == str(event.event_id)
        assert params["tenantid"] == str(event.tenant_id)
        assert params["severity"] == str(event.severity)
        if "\r" not in event.event_type and "\n" not in event.event_type:
            assert params["eventtype"] == event.event_type
        msg = got["msg"]
        assert msg.startswith("\ufeff") == (not msg.isascii())  # rsyslog keeps the BOM
        bodies.append(msg.removeprefix("\ufeff"))
    return bodies


def test_rsyslog_parses_json_body_messages_over_lf_framing(peer: RsyslogPeer) -> None:
    """LF-framed RFC 5424 messages with JSON bodies arrive one each; rsyslog's fields match."""
    events = _events()
    formatter = SyslogFormatter(hostname="idp1.example.com", procid=4242)
    messages = [formatter(event) for event in events]
    _send(peer, messages, octet_counting=False)
    bodies = _check_against_rsyslog(peer, messages, events)
    for body, event in zip(bodies, events, strict=True):
        # The JSON object itself, not `from_dict` (ingest cuts over-long values; a format
        # carries them whole).
        assert parse_json_line(body) == event.to_dict()


def test_rsyslog_parses_cef_body_messages_over_octet_counting(peer: RsyslogPeer) -> None:
    """Octet-counted messages with CEF bodies arrive intact; the CEF MSG gives the event's keys."""
    events = _events()
    formatter = SyslogFormatter(body="cef", facility=10)
    messages = [formatter(event) for event in events]
    _send(peer, messages, octet_counting=True)
    bodies = _check_against_rsyslog(peer, messages, events)
    for body, event in zip(bodies, events, strict=True):
        record = parse_cef(body)
        assert record.extension["externalId"] == str(event.event_id)
        assert record.extension["cs1"] == str(event.tenant_id)
        if event.reason is not None and len(event.reason) <= 1023:
            assert record.extension["reason"] == event.reason
    hostile = parse_cef(bodies[0]).extension
    assert hostile["cs6"] == "fe80::1%eth0"
    assert "act" in hostile
    assert hostile["reason"] == "alice act=allowed"


@pytest.fixture
def leef_peer(tmp_path: Path) -> Iterator[RsyslogPeer]:
    """An rsyslog peer that also splits each MSG with its LEEF 2.0 normaliser rule."""
    with start_rsyslog(
        tmp_path, tcp=True, output="json", max_message_bytes=1 << 20, msg_parser="leef"
    ) as running:
        yield running


def test_rsyslog_normaliser_splits_leef_bodies_as_our_parser_does(leef_peer: RsyslogPeer) -> None:
    """LEEF MSGs arrive whole; rsyslog's LEEF rule finds our header fields and attributes."""
    events = _events()
    formatter = SyslogFormatter(body="leef", hostname="idp1.example.com")
    messages = [formatter(event) for event in events]
    _send(leef_peer, messages, octet_counting=True)
    bodies = _check_against_rsyslog(leef_peer, messages, events)
    received = leef_peer.read_json()
    for got, body, event in zip(received, bodies, events, strict=True):
        ours = parse_leef(body)
        fields = got["msg_fields"]
        assert "originalmsg" not in fields, fields  # the rule matched
        header = (fields["version"], fields["vendor"], fields["product"], fields["event_id"])
        assert header == ("2.0", ours.vendor, ours.product, ours.event_id)
        assert fields["delimiter"] == "x09"
        pairs = [(pair["key"], pair["value"]) for pair in fields["attributes"]]
        assert dict(pairs) == ours.attributes
        assert len(pairs) == len(ours.attributes)  # no attribute forged, none repeated
        assert ours.attributes["eventId"] == str(event.event_id)
    hostile = parse_leef(bodies[0]).attributes
    assert hostile["reason"] == "alice act=allowed"
    assert hostile["sourceAddressScoped"] == "fe80::1%eth0"


@pytest.fixture
def json_peer(tmp_path: Path) -> Iterator[RsyslogPeer]:
    """An rsyslog peer that also parses each MSG with mmjsonparse."""
    with start_rsyslog(
        tmp_path, tcp=True, output="json", max_message_bytes=1 << 20, msg_parser="json"
    ) as running:
        yield running


def test_rsyslog_reads_ascii_ecs_bodies_as_json_and_keeps_bom_ones_whole(
    json_peer: RsyslogPeer,
) -> None:
    """mmjsonparse gives the ECS document of each ASCII MSG; a BOM MSG stays unparsed, intact."""
    events = _events()
    formatter = SyslogFormatter(body="ecs")
    messages = [formatter(event) for event in events]
    _send(json_peer, messages, octet_counting=False)
    bodies = _check_against_rsyslog(json_peer, messages, events)
    received = json_peer.read_json()
    parsed = 0
    for got, body in zip(received, bodies, strict=True):
        check_ecs_document(body)
        if body.isascii():
            assert got["msg_fields"] == json.loads(body)
            parsed += 1
        else:
            assert got["msg_fields"] == {"msg": "\ufeff" + body}
    assert 0 < parsed < len(events)
