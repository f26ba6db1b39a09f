"""The pure `_bulk` protocol: the NDJSON lines of a record, and the classification tables of
whole answers and of each item."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from xavyo_siem.delivery.base import Misconfigured, Record, RetryLater
from xavyo_siem.delivery.elasticsearch_bulk import (
    BulkAnswer,
    BulkEncoder,
    UnsendableRecord,
    bulk_error_text,
    classify_bulk_item,
    classify_bulk_response,
    iso_timestamp,
)
from xavyo_siem.delivery.http import TooLarge

EVENT_ID = "3f0c6c35-4a1e-4c55-9b62-8a64a2c8e0d1"
US = 1_736_083_211_123_456  # 2025-01-05T13:20:11.123456Z


def record(text: str, event_id: str = EVENT_ID, timestamp_us: int = US) -> Record:
    """A record as the pipeline hands it over."""
    return Record(event_id, timestamp_us, text)


def test_a_record_becomes_an_action_line_and_a_source_line() -> None:
    """`create` with `_id` = the event id, then the object with `@timestamp` first, each
    one line ending in LF."""
    lines = BulkEncoder("create")(record('{"event_id":"x","n":1}'))
    assert lines == (
        b'{"create":{"_id":"' + EVENT_ID.encode() + b'"}}\n'
        b'{"@timestamp":"2025-01-05T13:20:11.123456Z","event_id":"x","n":1}\n'
    )


def test_index_op_type_writes_an_index_action() -> None:
    """With op_type `index` the action line is `index`."""
    assert BulkEncoder("index")(record("{}")).startswith(b'{"index":{"_id":"')


def test_an_empty_object_gets_only_the_timestamp() -> None:
    """`{}` becomes `{"@timestamp":…}` (no dangling comma)."""
    source = BulkEncoder("create")(record("{}")).split(b"\n")[1]
    assert json.loads(source) == {"@timestamp": "2025-01-05T13:20:11.123456Z"}


def test_a_top_level_timestamp_is_kept_as_it_is() -> None:
    """A record that has `@timestamp` (ECS) is sent unchanged."""
    text = '{"@timestamp":"2020-01-01T00:00:00Z","a":1}'
    assert BulkEncoder("create")(record(text)).split(b"\n")[1] == text.encode()


def test_a_nested_timestamp_key_does_not_count() -> None:
    """`@timestamp` inside a nested object or a value is not the document's: one is added."""
    for text in ('{"metadata":{"@timestamp":"x"}}', '{"reason":"\\"@timestamp\\""}'):
        source = json.loads(BulkEncoder("create")(record(text)).split(b"\n")[1])
        assert source["@timestamp"] == "2025-01-05T13:20:11.123456Z"
        assert len(source) == 2


def test_a_record_spread_over_lines_is_written_on_one() -> None:
    """Pretty-printed JSON is compacted so that the document stays one NDJSON line."""
    lines = BulkEncoder("create")(record('{\n  "a": 1,\r\n  "b": "c"\n}'))
    assert lines.count(b"\n") == 2
    assert json.loads(lines.split(b"\n")[1]) == {
        "@timestamp": "2025-01-05T13:20:11.123456Z",
        "a": 1,
        "b": "c",
    }


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("CEF:0|xavyo|siem|1|USER_LOGIN|login|3|", "not JSON"),
        ('"a string"', "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ("\ud800{}", "UTF-8"),
    ],
)
def test_what_is_not_a_json_object_cannot_be_sent(text: str, why: str) -> None:
    """Text formats, other JSON values and invalid UTF-8 raise UnsendableRecord saying why."""
    with pytest.raises(UnsendableRecord) as raised:
        BulkEncoder("create")(record(text))
    assert why in raised.value.reason


def test_an_odd_event_id_is_escaped_in_the_action_line() -> None:
    """The `_id` is written by a JSON encoder: no id can break the action line."""
    lines = BulkEncoder("create")(record("{}", event_id='a"}\n{"delete":{'))
    action = json.loads(lines.split(b"\n")[0])
    assert action == {"create": {"_id": 'a"}\n{"delete":{'}}


@pytest.mark.parametrize(
    ("timestamp_us", "text"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (US, "2025-01-05T13:20:11.123456Z"),
        (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_iso_timestamp(timestamp_us: int, text: str) -> None:
    """Epoch microseconds become RFC 3339 UTC with six digits, before 1970 too."""
    assert iso_timestamp(timestamp_us) == text


# --- items ---------------------------------------------------------------------------------


def err(error_type: str, reason: str = "r") -> dict[str, Any]:
    """An item's error object."""
    return {"type": error_type, "reason": reason}


@pytest.mark.parametrize(
    ("status", "error", "op_type", "verdict"),
    [
        (201, None, "create", "stored"),
        (200, None, "index", "stored"),
        (409, err("version_conflict_engine_exception"), "create", "stored"),
        (409, err("version_conflict_engine_exception"), "index", "rejected"),
        (429, err("es_rejected_execution_exception"), "create", "retry"),
        (429, err("rejected_execution_exception"), "create", "retry"),
        (429, err("circuit_breaking_exception"), "create", "retry"),
        (429, err("cluster_block_exception", "flood-stage watermark"), "create", "retry"),
        (503, err("unavailable_shards_exception"), "create", "retry"),
        (500, err("exception"), "create", "retry"),
        (400, err("document_parsing_exception"), "create", "rejected"),
        (400, err("mapper_parsing_exception"), "create", "rejected"),
        (400, err("strict_dynamic_mapping_exception"), "create", "rejected"),
        (400, err("illegal_argument_exception", "Limit of total fields"), "create", "rejected"),
        (404, err("index_not_found_exception"), "create", "misconfigured"),
        (403, err("security_exception"), "create", "misconfigured"),
        (403, err("cluster_block_exception", "read-only-allow-delete"), "create", "misconfigured"),
        (400, err("invalid_index_name_exception"), "create", "misconfigured"),
        (
            400,
            err("illegal_argument_exception", "pipeline with id [p] does not exist"),
            "create",
            "misconfigured",
        ),
        (
            400,
            err(
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            ),
            "index",
            "misconfigured",
        ),
        (100, None, "create", "retry"),
    ],
)
def test_item_classification(status: int, error: Any, op_type: Any, verdict: str) -> None:
    """Each row of the per-document table."""
    assert classify_bulk_item(status, error, op_type) == verdict


def test_error_text_names_type_reason_and_cause() -> None:
    """An error is quoted as `type: reason (caused by type: reason)`."""
    error = {**err("document_parsing_exception", "failed"), "caused_by": err("x", "y")}
    assert bulk_error_text(error) == "document_parsing_exception: failed (caused by x: y)"
    assert bulk_error_text(None) == "no error detail"


# --- whole answers -------------------------------------------------------------------------

IDS = ["e0", "e1", "e2", "e3"]


def answer(*items: tuple[int, Any], op: str = "create", ids: list[str] = IDS) -> bytes:
    """A filtered `_bulk` answer with these (status, error) items."""
    out = []
    for (status, error), doc_id in zip(items, ids, strict=False):
        item: dict[str, Any] = {"_id": doc_id, "status": status}
        if error is not None:
            item["error"] = error
        out.append({op: item})
    return orjson.dumps({"errors": any(e for _, e in items), "items": out})


def classify(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    """The classification of an answer to a request of IDS."""
    return classify_bulk_response(status, headers, body, ids=IDS, op_type="create", now=0)


def test_a_mixed_answer_is_read_item_by_item() -> None:
    """Stored, duplicate, overloaded and unparseable documents are told apart by position."""
    body = answer(
        (201, None),
        (409, err("version_conflict_engine_exception")),
        (429, err("es_rejected_execution_exception", "queue full")),
        (400, err("document_parsing_exception", "bad field")),
    )
    result = classify(200, body)
    assert isinstance(result, BulkAnswer)
    assert set(result.retry) == {2}
    assert "queue full" in result.retry[2]
    assert set(result.rejected) == {3}
    assert "document_parsing_exception: bad field" in result.rejected[3]
    assert result.misconfigured is None


def test_a_settings_error_in_one_item_is_misconfigured() -> None:
    """An index that does not exist is reported for the destination, not the document."""
    body = answer((201, None), (404, err("index_not_found_exception", "no such index [x]")))
    result = classify_bulk_response(200, None, body, ids=IDS[:2], op_type="create")
    assert isinstance(result, BulkAnswer)
    assert result.misconfigured is not None
    assert "no such index" in result.misconfigured


@pytest.mark.parametrize(
    "body",
    [
        b"<html>ok</html>",
        b'{"took":1}',
        b'{"items":{}}',
        answer((201, None), (201, None), (201, None)),  # one item short
        answer((201, None), (201, None), (201, None), (201, None), ids=["e0", "e1", "e3", "e2"]),
        orjson.dumps({"items": [{"create": {"status": "201"}}] * 4}),
        orjson.dumps({"items": [{"create": {"status": 201}, "index": {}}] * 4}),
        orjson.dumps({"items": [{"index": {"status": 201}}] * 4}),
    ],
)
def test_a_200_that_cannot_be_read_is_retried_never_delivered(body: bytes) -> None:
    """Garbage, missing or misplaced items, a wrong shape: the request is sent again."""
    result = classify(200, body)
    assert isinstance(result, RetryLater)
    assert "cannot be read" in result.reason


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, Misconfigured),
        (403, Misconfigured),
        (404, Misconfigured),
        (400, Misconfigured),
        (406, Misconfigured),
        (301, Misconfigured),
        (413, TooLarge),
        (408, RetryLater),
        (429, RetryLater),
        (500, RetryLater),
        (502, RetryLater),
        (503, RetryLater),
        (504, RetryLater),
        (600, RetryLater),
    ],
)
def test_whole_request_statuses(status: int, kind: type) -> None:
    """Each row of the whole-request table."""
    body = orjson.dumps({"error": err("some_exception", "why"), "status": status})
    result = classify(status, body)
    assert isinstance(result, kind)
    if status != 301:
        assert "some_exception: why" in result.reason


def test_retry_after_is_honoured() -> None:
    """429 and 503 carry the delay the cluster asked for."""
    result = classify(429, b"{}", {"Retry-After": "7"})
    assert result == RetryLater(result.reason, 7.0)


def test_a_secret_in_an_answer_is_not_quoted() -> None:
    """A cluster (or proxy) that echoes the credential does not get it into a reason."""
    secret = "ApiKey aWQxOmtleTFrZXkxa2V5MQ=="
    body = orjson.dumps({"error": err("security_exception", f"bad header [{secret}]")})
    result = classify_bulk_response(401, None, body, ids=[], op_type="create", secrets=[secret])
    assert isinstance(result, Misconfigured)
    assert "aWQxOmtleTFrZXkxa2V5MQ" not in result.reason
    item = answer((400, err("mapper_parsing_exception", f"value [{secret}]")), ids=["e0"])
    read = classify_bulk_response(200, None, item, ids=["e0"], op_type="create", secrets=[secret])
    assert isinstance(read, BulkAnswer)
    assert "aWQxOmtleTFrZXkxa2V5MQ" not in read.rejected[0]
