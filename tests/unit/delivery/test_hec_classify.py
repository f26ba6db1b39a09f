"""Table tests for the pure parts of the Splunk HEC transport: envelopes and reply classes."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.hec_replies import (
    HEC_CODES,
    Accepted,
    HecEnvelope,
    HecEventRejected,
    classify_hec_ack,
    classify_hec_health,
    classify_hec_response,
    hec_time,
)
from xavyo_siem.delivery.http import TooLarge


def reply(code: int, text: str = "x", **extra: object) -> bytes:
    return orjson.dumps({"text": text, "code": code, **extra})


# (HTTP status, code) exactly as Splunk documents its HEC status codes, and the class each
# must give.
SPEC_TABLE = [
    (200, 0, Accepted),
    (403, 1, Misconfigured),
    (401, 2, Misconfigured),
    (401, 3, Misconfigured),
    (403, 4, Misconfigured),
    (400, 5, Misconfigured),
    (400, 6, HecEventRejected),
    (400, 7, Misconfigured),
    (500, 8, RetryLater),
    (503, 9, RetryLater),
    (400, 10, Misconfigured),
    (400, 11, Misconfigured),
    (400, 12, HecEventRejected),
    (400, 13, HecEventRejected),
    (400, 14, Misconfigured),
    (400, 15, HecEventRejected),
    (400, 16, Misconfigured),
    (200, 17, RetryLater),
    (503, 18, RetryLater),
    (503, 19, RetryLater),
    (503, 20, RetryLater),
]


@pytest.mark.parametrize(("status", "code", "kind"), SPEC_TABLE)
def test_every_documented_code_has_its_class(status: int, code: int, kind: type) -> None:
    """Each documented HEC code, with its documented HTTP status, maps to its result class."""
    assert isinstance(classify_hec_response(status, reply(code)), kind)


def test_table_covers_every_code_the_transport_knows() -> None:
    """The spec table above lists exactly the codes the classifier knows, plus success."""
    assert {code for _, code, _ in SPEC_TABLE} == {0, *HEC_CODES}


def test_success_carries_the_ack_id() -> None:
    """A success reply with `ackId` yields that id; without one, None."""
    assert classify_hec_response(200, reply(0, "Success", ackId=7)) == Accepted(7)
    assert classify_hec_response(200, reply(0, "Success")) == Accepted(None)


@pytest.mark.parametrize("ack_id", [-1, True, "3", 1.5, None])
def test_a_malformed_ack_id_is_not_an_ack_id(ack_id: object) -> None:
    """An `ackId` that is not a non-negative integer is treated as absent."""
    assert classify_hec_response(200, reply(0, ackId=ack_id)) == Accepted(None)


@pytest.mark.parametrize("code", [6, 12, 13, 15])
def test_data_errors_carry_the_invalid_event_number(code: int) -> None:
    """Codes 6, 12, 13 and 15 pass `invalid-event-number` on, or None when absent or bad."""
    with_index = classify_hec_response(400, reply(code, **{"invalid-event-number": 3}))
    assert isinstance(with_index, HecEventRejected)
    assert with_index.index == 3
    without = classify_hec_response(400, reply(code))
    assert isinstance(without, HecEventRejected)
    assert without.index is None
    bad = classify_hec_response(400, reply(code, **{"invalid-event-number": "3"}))
    assert isinstance(bad, HecEventRejected)
    assert bad.index is None


def test_busy_honours_retry_after_seconds_and_dates() -> None:
    """Code 9 takes its delay from Retry-After, as delta-seconds or as an HTTP-date."""
    seconds = classify_hec_response(503, reply(9), {"Retry-After": "7"})
    assert seconds == RetryLater(seconds.reason, 7.0) if isinstance(seconds, RetryLater) else False
    dated = classify_hec_response(
        503, reply(9), {"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT"}, now=1767225600.0
    )
    assert isinstance(dated, RetryLater)
    assert dated.after_s == 30.0
    assert classify_hec_response(503, reply(9), {"Retry-After": "soon"}) == RetryLater(
        "HEC code 9 (x)", None
    )


def test_413_is_too_large_whatever_the_body() -> None:
    """HTTP 413 asks for a split, with or without a JSON body."""
    assert isinstance(classify_hec_response(413, b"<html>too big</html>"), TooLarge)
    assert isinstance(classify_hec_response(413, reply(413)), TooLarge)


# Replies with no known HEC code fall back on the HTTP status.
FALLBACK_TABLE = [
    (200, b"", RetryLater),
    (200, b"<html>ok</html>", RetryLater),
    (200, b'{"text":"Success"}', RetryLater),
    (200, b'[{"code":0}]', RetryLater),
    (201, reply(99), RetryLater),
    (301, b"", Misconfigured),
    (307, b"", Misconfigured),
    (400, b"bad", Misconfigured),
    (401, b"", Misconfigured),
    (403, b"", Misconfigured),
    (404, reply(404, "The requested URL was not found on this server."), Misconfigured),
    (408, b"", RetryLater),
    (429, b"slow down", RetryLater),
    (500, b"", RetryLater),
    (502, b"<html>Bad Gateway</html>", RetryLater),
    (504, b"", RetryLater),
    (600, b"", RetryLater),
]


@pytest.mark.parametrize(("status", "body", "kind"), FALLBACK_TABLE)
def test_unknown_replies_fall_back_on_the_status(status: int, body: bytes, kind: type) -> None:
    """Without a known code, 2xx is never success, 3xx/4xx are misconfigured, 408/429/5xx retry."""
    assert isinstance(classify_hec_response(status, body), kind)


def test_success_code_with_an_error_status_is_not_success() -> None:
    """A body saying code 0 on an HTTP 503 is classified by the status, never as success."""
    assert isinstance(classify_hec_response(503, reply(0, "Success")), RetryLater)


def test_reasons_name_the_code_and_never_the_whole_body() -> None:
    """A reason names the HEC code and keeps at most a truncated, one-line peer text."""
    result = classify_hec_response(403, reply(4, "Invalid token\n" + "x" * 5000))
    assert isinstance(result, Misconfigured)
    assert "HEC code 4" in result.reason
    assert "\n" not in result.reason
    assert len(result.reason) < 500


ACK_TABLE = [
    (b'{"acks":{"0":true,"1":false,"2":true}}', frozenset({0, 2})),
    (b'{"acks":{}}', frozenset()),
    (b'{"acks":{"0":true,"9":true}}', frozenset({0})),
]


@pytest.mark.parametrize(("body", "done"), ACK_TABLE)
def test_ack_answers_give_the_acknowledged_ids(body: bytes, done: frozenset[int]) -> None:
    """A well-formed /ack answer yields the asked ids marked true, ignoring ids not asked."""
    assert classify_hec_ack(200, body, asked=[0, 1, 2]) == done


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"<html>OK</html>",
        b"[]",
        b'{"acks":[0,1]}',
        b'{"acks":"soon"}',
        b'{"acks":{"0":"true"}}',
        b'{"acks":{"0":1}}',
        b'{"acks":{"zero":true}}',
        b'{"acks":{"-1":true}}',
        b'{"text":"Success","code":0}',
    ],
)
def test_an_ack_answer_that_cannot_be_parsed_is_never_success(body: bytes) -> None:
    """Any 200 /ack answer not of the exact documented form is RetryLater, never acks."""
    assert isinstance(classify_hec_ack(200, body, asked=[0]), RetryLater)


def test_ack_errors_are_classified_like_event_errors() -> None:
    """/ack code 14 is misconfigured, 503 retries, and an odd success reply is not an ack."""
    assert isinstance(classify_hec_ack(400, reply(14), asked=[0]), Misconfigured)
    assert isinstance(classify_hec_ack(403, reply(4), asked=[0]), Misconfigured)
    assert isinstance(classify_hec_ack(503, reply(9), asked=[0]), RetryLater)
    assert isinstance(classify_hec_ack(201, reply(0), asked=[0]), RetryLater)


def test_health_codes() -> None:
    """/health 200 code 17 is healthy, 503 codes 18-20 retry, 401 is misconfigured."""
    assert classify_hec_health(200, reply(17)) == Delivered()
    for code in (18, 19, 20):
        assert isinstance(classify_hec_health(503, reply(code)), RetryLater)
    assert isinstance(classify_hec_health(401, reply(2)), Misconfigured)


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (999_999, "0.999999"),
        (1_000_000, "1.000000"),
        (1_714_566_896_789_123, "1714566896.789123"),
        (253_402_300_799_999_999, "253402300799.999999"),
        (-1, "-0.000001"),
        (-1_500_000, "-1.500000"),
    ],
)
def test_hec_time_is_seconds_with_six_digits_and_no_exponent(us: int, text: str) -> None:
    """`time` is `<sec>.<6 digits>`, exact for every microsecond, never in exponent form."""
    assert hec_time(us) == text
    assert Decimal(text) * 1_000_000 == us
    assert orjson.loads(HecEnvelope(event_is_json=False)(Record("e", us, "x")))["time"] == float(
        text
    )


def test_envelope_for_json_records_embeds_the_object() -> None:
    """A JSON record becomes the `event` object as is, with the metadata set once."""
    envelope = HecEnvelope(event_is_json=True, host="h", source="s", sourcetype="st", index="i")
    out = envelope(Record("e1", 1_714_566_896_000_001, '{"event_id":"e1","n":1}'))
    assert out == (
        b'{"time":1714566896.000001,"host":"h","source":"s","sourcetype":"st","index":"i",'
        b'"event":{"event_id":"e1","n":1}}'
    )


def test_envelope_for_lines_writes_a_json_string() -> None:
    """A CEF or syslog line becomes a JSON string event, escaped, with unset metadata left out."""
    envelope = HecEnvelope(event_is_json=False, index='we"ird')
    line = 'CEF:0|xavyo|siem|1|login|User "login"|3|msg=a\\=b\tc'
    out = envelope(Record("e1", 5, line))
    parsed = orjson.loads(out)
    assert parsed == {"time": 0.000005, "index": 'we"ird', "event": line}
    assert out.startswith(b'{"time":0.000005,"index":')
