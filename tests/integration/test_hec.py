"""The Splunk HEC transport against a strict HEC server (tests/peers/hec_server.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
)
from xavyo_siem.delivery.hec_replies import classify_hec_response, hec_time
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.splunk_hec import HecConfig, HecTransport
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import AuditEvent
from xavyo_siem.sample import generate_events

from peers.hec_server import HecFaults, HecServer, TlsFiles, make_tls

TOKEN = "00000000-0000-4000-8000-000000000001"
CHANNEL = "11111111-2222-4333-8444-555555555555"


def json_records(count: int, seed: int = 1) -> list[Record]:
    """`count` sample events as JSON records."""
    return [_json_record(event) for event in generate_events(count, tenants=2, seed=seed)]


def _json_record(event: AuditEvent) -> Record:
    us = int(event.timestamp.timestamp()) * 1_000_000 + event.timestamp.microsecond
    return Record(str(event.event_id), us, orjson.dumps(event.to_dict()).decode())


def config(url: str, development: bool = True, **options: Any) -> HecConfig:
    """A validated HEC config, as the API would build it."""
    result = validate_destination("splunk_hec", url, options, development=development)
    assert isinstance(result, HecConfig)
    return result


def transport(server: HecServer, *, event_is_json: bool = True, **options: Any) -> HecTransport:
    """A transport to `server` over plain HTTP (development mode)."""
    return HecTransport(
        config(server.url, **options),
        token=TOKEN,
        event_is_json=event_is_json,
        development=True,
    )


async def send_once(server: HecServer, records: list[Record], **options: Any) -> DeliveryResult:
    """Send `records` through a fresh transport to `server`, then close it."""
    sender = transport(server, **options)
    try:
        return await sender.send(records)
    finally:
        await sender.aclose()


@pytest.fixture
async def hec() -> AsyncIterator[HecServer]:
    """A strict HEC without indexer acknowledgement."""
    async with HecServer(token=TOKEN, indexes={"main", "audit"}) as server:
        yield server


@pytest.fixture
async def hec_ack() -> AsyncIterator[HecServer]:
    """A strict HEC whose token has indexer acknowledgement on."""
    async with HecServer(token=TOKEN, ack=True) as server:
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for localhost."""
    return make_tls(tmp_path_factory.mktemp("hec-tls"))


async def test_batch_arrives_in_order_with_envelope_fields(hec: HecServer) -> None:
    """Every record arrives once, in order, with `time` exact to the µs and the metadata set."""
    records = json_records(50)
    sender = transport(hec, index="audit", source="xavyo", sourcetype="xavyo:audit", host="idp")
    try:
        assert await sender.send(records) == Delivered()
    finally:
        await sender.aclose()
    assert [e["event_id"] for e in hec.events()] == [r.event_id for r in records]
    for envelope, record in zip(hec.received, records, strict=True):
        assert envelope["time"] == Decimal(hec_time(record.timestamp_us))
        assert envelope["time"].as_tuple().exponent == -6
        assert envelope["event"] == orjson.loads(record.text)
        assert (envelope["index"], envelope["source"]) == ("audit", "xavyo")
        assert (envelope["sourcetype"], envelope["host"]) == ("xavyo:audit", "idp")


async def test_source_and_sourcetype_default_to_ours_and_empty_leaves_them_to_the_token(
    hec: HecServer,
) -> None:
    """Without options every envelope says source `xavyo-siem` and sourcetype
    `xavyo:identity:events`; set to "" they are left out (the token's defaults apply)."""
    for options, expected in (
        ({}, ("xavyo-siem", "xavyo:identity:events")),
        ({"source": "", "sourcetype": ""}, (None, None)),
    ):
        hec.received.clear()
        sender = transport(hec, **options)
        try:
            assert await sender.send(json_records(3)) == Delivered()
        finally:
            await sender.aclose()
        assert [(e.get("source"), e.get("sourcetype")) for e in hec.received] == [expected] * 3


async def test_gzip_bodies_are_compressed_and_accepted(hec: HecServer) -> None:
    """With `gzip`, every request says Content-Encoding: gzip and the server inflates it."""
    sender = transport(hec, gzip=True)
    try:
        assert await sender.send(json_records(20)) == Delivered()
    finally:
        await sender.aclose()
    assert hec.requests
    assert all(r.gzip for r in hec.requests)
    assert len(hec.received) == 20


async def test_lines_are_sent_as_string_events(hec: HecServer) -> None:
    """CEF/syslog records travel as JSON strings, byte for byte, escapes included."""
    lines = ['CEF:0|Xavyo|IDP|1|LOGIN|User "login"|3|msg=a\\=b\\nc', "<14>1 - - - - - - ü"]
    records = [Record(f"e{i}", 1_000_000 * i, line) for i, line in enumerate(lines)]
    sender = transport(hec, event_is_json=False)
    try:
        assert await sender.send(records) == Delivered()
    finally:
        await sender.aclose()
    assert hec.events() == lines


async def test_batches_are_bounded_by_count_and_bytes(hec: HecServer) -> None:
    """A send is cut into requests of at most `batch_max_events` and `batch_max_bytes`."""
    records = json_records(25)
    sender = transport(hec, batch_max_events=4, max_requests_in_flight=1)
    try:
        assert await sender.send(records) == Delivered()
    finally:
        await sender.aclose()
    assert [r.events for r in hec.requests] == [4, 4, 4, 4, 4, 4, 1]
    hec.requests.clear()
    sender = transport(hec, batch_max_bytes=2048, max_requests_in_flight=1)
    try:
        assert await sender.send(records) == Delivered()
    finally:
        await sender.aclose()
    sizes = [r.events for r in hec.requests]
    assert sum(sizes) == 25
    assert len(sizes) > 5
    assert [e["event_id"] for e in hec.events()[25:]] == [r.event_id for r in records]


async def test_wrong_token_is_misconfigured(hec: HecServer) -> None:
    """An unknown token (code 4) is misconfigured and nothing is accepted."""
    sender = HecTransport(
        config(hec.url),
        token="00000000-0000-4000-8000-00000000bad1",
        event_is_json=True,
        development=True,
    )
    try:
        result = await sender.send(json_records(3))
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "code 4" in result.reason
    assert hec.received == []


async def test_disabled_token_is_misconfigured() -> None:
    """A disabled token (code 1) is misconfigured."""
    async with HecServer(token=TOKEN, disabled=True) as server:
        result = await send_once(server, json_records(1))
    assert isinstance(result, Misconfigured)
    assert "code 1" in result.reason


async def test_index_outside_the_allow_list_is_misconfigured(hec: HecServer) -> None:
    """An index the token may not write (code 7) is misconfigured, not a data error."""
    result = await send_once(hec, json_records(2), index="secret-index")
    assert isinstance(result, Misconfigured)
    assert "code 7" in result.reason


async def test_busy_is_retry_later_with_retry_after_then_recovers(hec: HecServer) -> None:
    """503 code 9 gives RetryLater with the server's Retry-After; the same batch then lands."""
    hec.faults = HecFaults(busy=1, retry_after="3")
    records = json_records(5)
    sender = transport(hec)
    try:
        first = await sender.send(records)
        second = await sender.send(records)
    finally:
        await sender.aclose()
    assert isinstance(first, RetryLater)
    assert first.after_s == 3.0
    assert second == Delivered()
    assert [e["event_id"] for e in hec.events()] == [r.event_id for r in records]


async def test_internal_error_is_retry_later(hec: HecServer) -> None:
    """500 code 8 and a proxy's 502 page are RetryLater."""
    hec.faults = HecFaults(internal_error=1, plain_502=1)
    sender = transport(hec)
    try:
        assert isinstance(await sender.send(json_records(1)), RetryLater)
        assert isinstance(await sender.send(json_records(1)), RetryLater)
        assert await sender.send(json_records(1)) == Delivered()
    finally:
        await sender.aclose()


async def test_invalid_event_number_resends_only_what_follows(hec: HecServer) -> None:
    """Code 6 at index 3: record 3 is rejected, 0-2 count as taken, 4-9 go in a new request."""
    hec.faults = HecFaults(invalid_event_at=3)
    records = json_records(10)
    result = await send_once(hec, records)
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [3]
    assert "code 6" in result.by_index[3]
    expected = [r.event_id for i, r in enumerate(records) if i != 3]
    assert [e["event_id"] for e in hec.events()] == expected
    assert [r.events for r in hec.requests] == [3, 6]


async def test_real_bad_records_are_rejected_one_by_one(hec: HecServer) -> None:
    """A record that is not JSON (6) and one whose event is blank (13) are rejected alone."""
    records = json_records(6)
    records[1] = Record("bad-json", 1, "{not json")
    records[4] = Record("blank", 2, '""')
    result = await send_once(hec, records)
    assert isinstance(result, Rejected)
    assert sorted(result.by_index) == [1, 4]
    assert "code 13" in result.by_index[4]
    expected = [r.event_id for i, r in enumerate(records) if i not in (1, 4)]
    assert [e["event_id"] for e in hec.events()] == expected


async def test_a_data_error_without_index_is_found_by_halving(hec: HecServer) -> None:
    """Without `invalid-event-number`, the part is halved until the bad record is alone;
    the halves may be in flight together, so only the set of arrivals is fixed."""
    hec.faults = HecFaults(invalid_without_index=True)
    hec.partial_ingest = False
    records = json_records(9)
    records[6] = Record("bad", 1, "[1, 2]")
    result = await send_once(hec, records)
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [6]
    expected = [r.event_id for i, r in enumerate(records) if i != 6]
    assert sorted(e["event_id"] for e in hec.events()) == sorted(expected)


async def test_too_large_requests_are_split_and_a_lone_giant_rejected() -> None:
    """413 halves the request until it fits; one record over the limit alone is rejected."""
    async with HecServer(token=TOKEN, max_content_length=3000) as server:
        records = json_records(12)
        records[5] = Record("giant", 5, orjson.dumps({"blob": "x" * 5000}).decode())
        result = await send_once(server, records, gzip=False)
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [5]
    assert "413" in result.by_index[5]
    expected = [r.event_id for i, r in enumerate(records) if i != 5]
    assert sorted(e["event_id"] for e in server.events()) == sorted(expected)


async def test_one_request_in_flight_keeps_store_order_through_splits() -> None:
    """With `max_requests_in_flight=1`, events arrive in record order even across 413 splits."""
    async with HecServer(token=TOKEN, faults=HecFaults(max_events_per_request=3)) as server:
        records = json_records(20)
        sender = transport(server, max_requests_in_flight=1)
        try:
            assert await sender.send(records) == Delivered()
        finally:
            await sender.aclose()
    assert [e["event_id"] for e in server.events()] == [r.event_id for r in records]
    assert max(r.events for r in server.requests) <= 3


async def test_requests_in_flight_are_bounded() -> None:
    """With `max_requests_in_flight=2`, two requests do overlap and never more than two."""
    async with HecServer(token=TOKEN) as server:
        busy = 0
        most = 0
        paired = asyncio.Event()
        original = server._event

        async def counting(request: Any) -> Any:
            nonlocal busy, most
            busy += 1
            most = max(most, busy)
            if busy == 2:
                paired.set()
            with contextlib.suppress(TimeoutError):  # a lone request waits for its pair
                await asyncio.wait_for(paired.wait(), 5)
            try:
                return await original(request)
            finally:
                busy -= 1

        server._event = counting  # type: ignore[method-assign]
        records = json_records(40)
        sender = transport(server, batch_max_events=4, max_requests_in_flight=2)
        try:
            assert await sender.send(records) == Delivered()
        finally:
            await sender.aclose()
    assert most == 2
    assert sorted(e["event_id"] for e in server.events()) == sorted(r.event_id for r in records)


async def test_acks_are_polled_until_every_request_is_indexed(hec_ack: HecServer) -> None:
    """With ack, `send` polls /ack until all ackIds are true and only then says Delivered."""
    hec_ack.faults = HecFaults(ack_after_polls=2)
    records = json_records(30)
    sender = transport(hec_ack, ack=True, batch_max_events=10, ack_poll_interval_s=0.01)
    try:
        assert await sender.send(records) == Delivered()
    finally:
        await sender.aclose()
    acked = sorted(e["event_id"] for e in hec_ack.acknowledged_events())
    assert acked == sorted(r.event_id for r in records)
    assert hec_ack.pending_acks() == 0
    polls = [r for r in hec_ack.requests if r.path.endswith("/ack")]
    assert len(polls) >= 3
    assert {r.channel for r in hec_ack.requests} == {sender.channel}


async def test_nothing_unacknowledged_is_reported_delivered(hec_ack: HecServer) -> None:
    """If acks never come, `send` gives RetryLater after `ack_timeout_s`, never Delivered."""
    hec_ack.faults = HecFaults(never_ack=True)
    sender = transport(
        hec_ack, ack=True, ack_timeout_s=0.05, ack_poll_interval_s=0.01, batch_max_events=2
    )
    try:
        result = await sender.send(json_records(5))
    finally:
        await sender.aclose()
    assert isinstance(result, RetryLater)
    assert "acknowledge" in result.reason
    assert hec_ack.acknowledged == []
    assert len(hec_ack.received) == 5


async def test_pending_acks_are_bounded(hec_ack: HecServer) -> None:
    """No more than `ack_max_pending` requests of a batch ever await their ack at once."""
    hec_ack.faults = HecFaults(ack_after_polls=1)
    seen: list[int] = []
    original = hec_ack._event

    async def watching(request: Any) -> Any:
        seen.append(hec_ack.pending_acks())
        return await original(request)

    hec_ack._event = watching  # type: ignore[method-assign]
    sender = transport(
        hec_ack, ack=True, batch_max_events=1, ack_max_pending=3, ack_poll_interval_s=0.01
    )
    try:
        assert await sender.send(json_records(12)) == Delivered()
    finally:
        await sender.aclose()
    assert max(seen) <= 2  # at most 3 pending once the new request is counted
    assert len(hec_ack.acknowledged) == 12


async def test_ack_garbage_is_never_success(hec_ack: HecServer) -> None:
    """An /ack answer that cannot be parsed, or says "true" as a string, is RetryLater."""
    hec_ack.faults = HecFaults(ack_garbage=1, ack_string_true=1)
    sender = transport(hec_ack, ack=True, ack_poll_interval_s=0.01)
    try:
        garbage = await sender.send(json_records(2))
        string_true = await sender.send(json_records(2))
        after = await sender.send(json_records(2))
    finally:
        await sender.aclose()
    assert isinstance(garbage, RetryLater)
    assert isinstance(string_true, RetryLater)
    assert after == Delivered()


async def test_partial_rejection_with_ack_resends_the_unacknowledged_prefix(
    hec_ack: HecServer,
) -> None:
    """With ack, an error reply acknowledges nothing, so records before the bad one go again."""
    hec_ack.faults = HecFaults(invalid_event_at=2)
    records = json_records(6)
    result = await send_once(hec_ack, records, ack=True, ack_poll_interval_s=0.01)
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [2]
    acked = sorted(e["event_id"] for e in hec_ack.acknowledged_events())
    assert acked == sorted(r.event_id for i, r in enumerate(records) if i != 2)


async def test_ack_on_but_token_without_ack_is_misconfigured(hec: HecServer) -> None:
    """`ack=true` against a token without acks (no ackId in replies) is misconfigured."""
    result = await send_once(hec, json_records(1), ack=True)
    assert isinstance(result, Misconfigured)
    assert "ackId" in result.reason


async def test_check_probes_health_and_token(hec: HecServer) -> None:
    """`check` is Delivered on a healthy HEC with a good token, and sends no event."""
    sender = transport(hec)
    try:
        assert await sender.check() == Delivered()
    finally:
        await sender.aclose()
    assert hec.received == []


async def test_check_reports_a_bad_token_and_an_unhealthy_hec(hec: HecServer) -> None:
    """`check` is Misconfigured for a wrong token and RetryLater while HEC is unhealthy."""
    bad = HecTransport(
        config(hec.url),
        token="00000000-0000-4000-8000-00000000bad2",
        event_is_json=True,
        development=True,
    )
    try:
        assert isinstance(await bad.check(), Misconfigured)
    finally:
        await bad.aclose()
    hec.faults = HecFaults(unhealthy=True)
    sender = transport(hec)
    try:
        assert isinstance(await sender.check(), RetryLater)
    finally:
        await sender.aclose()


async def test_check_with_ack_uses_the_channel(hec_ack: HecServer) -> None:
    """With acks on, `check` passes the channel checks (codes 10/11) of the token probe."""
    sender = HecTransport(
        config(hec_ack.url, ack=True),
        token=TOKEN,
        event_is_json=True,
        development=True,
        channel=CHANNEL,
    )
    try:
        assert await sender.check() == Delivered()
    finally:
        await sender.aclose()
    assert {r.channel for r in hec_ack.requests} == {CHANNEL}


async def test_https_with_the_ca_file_delivers(tls_files: TlsFiles) -> None:
    """Over HTTPS, a certificate that chains to `ca_file` is verified and delivery works."""
    async with HecServer(token=TOKEN, tls=tls_files) as server:
        sender = HecTransport(
            config(server.url, development=False, ca_file=str(tls_files.ca_file), gzip=True),
            token=TOKEN,
            event_is_json=True,
        )
        try:
            assert await sender.check() == Delivered()
            assert await sender.send(json_records(10)) == Delivered()
        finally:
            await sender.aclose()
    assert len(server.received) == 10


async def test_https_with_an_unknown_ca_is_misconfigured(tls_files: TlsFiles) -> None:
    """A certificate that does not chain to a trusted CA is misconfigured, nothing is sent."""
    async with HecServer(token=TOKEN, tls=tls_files) as server:
        sender = HecTransport(
            config(server.url, development=False), token=TOKEN, event_is_json=True
        )
        try:
            result = await sender.send(json_records(1))
        finally:
            await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "certificate" in result.reason
    assert server.requests == []


async def test_pinned_fingerprint_is_the_trust_anchor(tls_files: TlsFiles) -> None:
    """A matching SHA-256 pin is trusted without a CA; a wrong pin is misconfigured."""
    async with HecServer(token=TOKEN, tls=tls_files) as server:
        good = f"SHA256:{tls_files.fingerprint_sha256}"
        wrong = "SHA256:" + "00" * 32
        for pin, expected in ((good, Delivered), (wrong, Misconfigured)):
            sender = HecTransport(
                config(server.url, development=False, fingerprint=pin),
                token=TOKEN,
                event_is_json=True,
            )
            try:
                assert isinstance(await sender.send(json_records(1)), expected)
            finally:
                await sender.aclose()
    assert len(server.received) == 1


async def test_tls_verification_off_only_in_development(
    tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """`tls_verify=false` is refused in production; in development it works and warns."""
    async with HecServer(token=TOKEN, tls=tls_files) as server:
        with pytest.raises(InvalidDestination):
            config(server.url, development=False, tls_verify=False)
        with caplog.at_level(logging.WARNING, logger="xavyo_siem.delivery"):
            sender = HecTransport(
                config(server.url, development=True, tls_verify=False),
                token=TOKEN,
                event_is_json=True,
                development=True,
            )
            try:
                assert await sender.send(json_records(1)) == Delivered()
            finally:
                await sender.aclose()
    assert any("TLS verification is OFF" in r.getMessage() for r in caplog.records)


def test_plain_http_needs_development_mode() -> None:
    """An http:// HEC endpoint is refused outside development mode."""
    cfg = config("http://127.0.0.1:8088", development=True)
    with pytest.raises(InvalidDestination):
        HecTransport(cfg, token=TOKEN, event_is_json=True, development=False)


def _server_requests() -> list[tuple[str, dict[str, str], bytes, int]]:
    """Requests that make the strict server answer each client-side error code Splunk lists."""
    good = {"Authorization": f"Splunk {TOKEN}"}
    channel = {**good, "X-Splunk-Request-Channel": CHANNEL}
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    envelope = b'{"time":1.000000,"event":{"a":1}}'
    return [
        ("/services/collector/event", {**channel, "Authorization": f"Basic {basic}"}, envelope, 0),
        ("/services/collector/event", {}, envelope, 2),
        ("/services/collector/event", {"Authorization": TOKEN}, envelope, 3),
        ("/services/collector/event", {"Authorization": "Splunk other"}, envelope, 4),
        ("/services/collector/event", channel, b"", 5),
        ("/services/collector/event", channel, b"[" + envelope + b"]", 6),
        ("/services/collector/event", channel, b'{"event":{}}{"time":1}', 12),
        ("/services/collector/event", channel, b'{"event":""}', 13),
        ("/services/collector/event", channel, b'{"event":null}', 13),
        ("/services/collector/event", channel, b'{"time":1.7E9,"event":"x"}', 15),
        ("/services/collector/event", channel, b'{"time":"soon","event":"x"}', 15),
        ("/services/collector/event", channel, b'{"event":"x","fields":{"n":1}}', 15),
        ("/services/collector/event", good, envelope, 10),
        ("/services/collector/event", {**good, "X-Splunk-Request-Channel": "nope"}, envelope, 11),
        ("/services/collector/event?token=" + TOKEN, channel, envelope, 16),
        ("/services/collector/event", channel, envelope + b" \n " + envelope, 0),
    ]


@pytest.mark.parametrize(("path", "headers", "body", "code"), _server_requests())
async def test_the_strict_server_answers_each_code_and_it_classifies(
    hec_ack: HecServer, path: str, headers: dict[str, str], body: bytes, code: int
) -> None:
    """The test HEC answers each malformed request with its HEC error code, and the classifier
    maps that reply to the class the transport promises for it."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(hec_ack.url + path, data=body, headers=headers) as response,
    ):
        status, answer = response.status, await response.read()
    reply = orjson.loads(answer)
    assert reply["code"] == code
    outcome = classify_hec_response(status, answer)
    kinds = {0: "Accepted", 6: "HecEventRejected", 12: "HecEventRejected"}
    kinds[13] = kinds[15] = "HecEventRejected"
    assert type(outcome).__name__ == kinds.get(code, "Misconfigured")


async def test_the_strict_server_takes_gzip_and_refuses_bad_gzip(hec: HecServer) -> None:
    """The test HEC inflates gzip bodies and answers a corrupt one with code 6."""
    headers = {"Authorization": f"Splunk {TOKEN}", "Content-Encoding": "gzip"}
    envelope = b'{"time":1.000001,"event":"x"}'
    async with aiohttp.ClientSession() as session:
        for body, code in ((gzip.compress(envelope), 0), (b"\x1f\x8b\x08garbage", 6)):
            async with session.post(
                hec.url + "/services/collector/event", data=body, headers=headers
            ) as response:
                assert (await response.json())["code"] == code


async def test_the_strict_server_ack_endpoint_refuses_a_token_without_ack(
    hec: HecServer,
) -> None:
    """/ack on a token without acks is code 14, which is misconfigured."""
    headers = {"Authorization": f"Splunk {TOKEN}", "X-Splunk-Request-Channel": CHANNEL}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            hec.url + "/services/collector/ack", data=b'{"acks":[0]}', headers=headers
        ) as response,
    ):
        status, answer = response.status, await response.read()
    assert orjson.loads(answer)["code"] == 14
    assert isinstance(classify_hec_response(status, answer), Misconfigured)


async def test_a_record_that_is_not_utf8_is_rejected_before_sending(hec: HecServer) -> None:
    """A record holding a lone surrogate is rejected without a request; the rest is sent."""
    records = json_records(3)
    records[1] = Record("bad", 1, '{"a":"\ud800"}')
    for event_is_json in (True, False):
        result = await send_once(hec, records, event_is_json=event_is_json)
        assert isinstance(result, Rejected)
        assert list(result.by_index) == [1]
    assert len(hec.received) == 4
