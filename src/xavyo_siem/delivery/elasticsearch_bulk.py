"""The pure part of the Elasticsearch / OpenSearch `_bulk` API: the NDJSON body, and what
the cluster's answers mean, for the whole request and for each document.

* `BulkEncoder`: one record as an action line and a source line, each one line of compact
  JSON ending in LF (`{"create":{"_id":"<event_id>"}}`, then the event object, with
  `@timestamp` added from the event's time when the object has none at its top level:
  data streams need it and Kibana filters on it).
* `classify_bulk_response`: the HTTP answer to one request; an HTTP 200 is read item by
  item (`classify_bulk_item`), in request order, because `_index` in an answer names the
  backing index rather than the data stream written to.

The tables follow the Elasticsearch `_bulk` API reference ("Bulk API": response body,
optimistic concurrency, data streams) and OpenSearch's equivalent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final, Literal

import orjson

from xavyo_siem.delivery.base import Misconfigured, Record, RetryLater
from xavyo_siem.delivery.http import (
    PEER_TEXT_MAX_CHARS,
    TooLarge,
    header,
    parse_retry_after,
    peer_text,
)
from xavyo_siem.delivery.scrub import scrub_reason

__all__ = [
    "BULK_FILTER_PATH",
    "BulkAnswer",
    "BulkEncoder",
    "OpType",
    "UnsendableRecord",
    "bulk_error_text",
    "bulk_lines",
    "classify_bulk_item",
    "classify_bulk_response",
    "iso_timestamp",
]

OpType = Literal["create", "index"]

# Only what classification reads. Keeping `status` and `_id` keeps every item in the answer
# (a filter of errors alone drops successful items and with them positional matching).
BULK_FILTER_PATH: Final = "errors,items.*.status,items.*._id,items.*.error"

_TIMESTAMP_KEY: Final = b'"@timestamp"'
_TIMESTAMP_TEXT: Final = '"@timestamp"'
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class UnsendableRecord(Exception):
    """A record that cannot be a `_bulk` document (not UTF-8, not a JSON object)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def iso_timestamp(timestamp_us: int) -> str:
    """Epoch microseconds as RFC 3339 UTC with six fraction digits and `Z`."""
    seconds, micros = divmod(timestamp_us, 1_000_000)
    return f"{_second_text(seconds)}.{micros:06d}Z"


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of an epoch second (events of a batch share few seconds)."""
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}"


class BulkEncoder:
    """Writes records as `_bulk` action and source lines for one operation type.

    Built once per transport; `__call__(record)` returns both lines, each ending in LF.
    The `_id` is the event id, so a record sent again is recognised: with `create` the
    cluster answers 409 (already stored), with `index` it overwrites the same document.

    The JSON formats write one line of compact JSON per event, and `__call__` takes two
    short cuts for such a line (`bulk_lines` is the general path, and both write the same
    bytes): a line without `"@timestamp"` anywhere gets it added without parsing, and a
    line that begins with the `@timestamp` member (ECS) has it at its top level and is
    sent as it is. Other lines are parsed where the answer depends on it. A one-line
    record is not otherwise checked to be JSON: the cluster refuses a document that is
    not, and that document is rejected alone.
    """

    def __init__(self, op_type: OpType) -> None:
        self._op_type = op_type
        self._head = b'{"' + op_type.encode() + b'":{"_id":'

    def __call__(self, record: Record) -> bytes:
        # The tests are made on the text: `x in bytes` first tries `x` as an integer and
        # raises (and clears) a TypeError, which costs more than the search itself.
        text = record.text
        if text[:1] == "{" and "\n" not in text and "\r" not in text:
            if _TIMESTAMP_TEXT not in text:
                if text[1:2] not in _EMPTY_OR_SPACE:
                    seconds, micros = divmod(record.timestamp_us, 1_000_000)
                    return b'%s%s}}\n{"@timestamp":"%s.%06dZ",%s\n' % (
                        self._head,
                        orjson.dumps(record.event_id),
                        _second_bytes(seconds),
                        micros,
                        _utf8(text[1:]),
                    )
            elif text.startswith(_LEADING_TIMESTAMP):
                return b"%s%s}}\n%s\n" % (
                    self._head,
                    orjson.dumps(record.event_id),
                    _utf8(text),
                )
        return bulk_lines(record, self._op_type)


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise UnsendableRecord("the record is not valid UTF-8 text") from None


# What follows `{` in an object with no member (or one written with spaces).
_EMPTY_OR_SPACE: Final = frozenset(("}", " ", "\t"))
# A one-line JSON object whose first member is `@timestamp` (the ECS format writes it so).
_LEADING_TIMESTAMP: Final = '{"@timestamp":'


@lru_cache(maxsize=4096)
def _second_bytes(seconds: int) -> bytes:
    """`_second_text` as ASCII bytes."""
    return _second_text(seconds).encode()


def bulk_lines(record: Record, op_type: OpType) -> bytes:
    """The action and source lines of `record` by the general path (see `BulkEncoder`):
    a record on several lines is re-written as one, and `@timestamp` is added when the
    object has none among its own members, parsing it when the text names one anywhere."""
    source = _utf8(record.text)
    head = b'{"%s":{"_id":%s}}\n' % (op_type.encode(), orjson.dumps(record.event_id))
    if source[:1] != b"{" or b"\n" in source or b"\r" in source:
        source = _one_line_object(source)
    if _TIMESTAMP_KEY in source and _has_top_level_timestamp(source):
        return b"%s%s\n" % (head, source)
    stamp = iso_timestamp(record.timestamp_us).encode()
    rest = source[1:]
    if rest.strip() == b"}":
        return b'%s{"@timestamp":"%s"}\n' % (head, stamp)
    return b'%s{"@timestamp":"%s",%s\n' % (head, stamp, rest)


def _one_line_object(source: bytes) -> bytes:
    """`source` re-written as one line of compact JSON; it must be a JSON object."""
    try:
        value = orjson.loads(source)
    except orjson.JSONDecodeError:
        raise UnsendableRecord("the record is not JSON: use a JSON format") from None
    if not isinstance(value, dict):
        raise UnsendableRecord("the record is not a JSON object: use a JSON format")
    return orjson.dumps(value)


def _has_top_level_timestamp(source: bytes) -> bool:
    """Whether the JSON object `source` has `@timestamp` as one of its own members."""
    try:
        value = orjson.loads(source)
    except orjson.JSONDecodeError:
        raise UnsendableRecord("the record is not JSON: use a JSON format") from None
    return isinstance(value, dict) and "@timestamp" in value


# --- Answers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkAnswer:
    """What the cluster did with each document of one request that it read (HTTP 200).

    Positions are those of the request's documents; every position in neither map was
    stored (created, updated, or already there). `retry` are documents refused for now
    (overload, a shard unavailable), `rejected` those refused for good (the document cannot
    be indexed as it is), and `misconfigured` the first refusal that a person must fix (an
    index that does not exist, missing privileges, a pipeline that does not exist), if any.
    """

    retry: Mapping[int, str] = field(default_factory=dict)
    rejected: Mapping[int, str] = field(default_factory=dict)
    misconfigured: str | None = None


# A 400 whose error says that the destination's settings, not the document, are wrong.
_CONFIG_ERROR_TYPES: Final = frozenset(
    (
        "index_not_found_exception",
        "invalid_index_name_exception",
        "index_closed_exception",
        "security_exception",
        "authorization_exception",
    )
)
_CONFIG_REASONS: Final = re.compile(
    r"op_type of create|pipeline with id|no write index|require_data_stream"
    r"|must be a data stream|is not a data stream|require_alias",
    re.IGNORECASE,
)

ItemVerdict = Literal["stored", "retry", "rejected", "misconfigured"]


def bulk_error_text(error: object) -> str:
    """An `error` object of an answer as `type: reason (caused by type: reason)`."""
    if not isinstance(error, Mapping):
        return str(error) if error is not None else "no error detail"
    text = f"{error.get('type', 'error')}: {error.get('reason') or ''}".rstrip(": ")
    cause = error.get("caused_by")
    if isinstance(cause, Mapping):
        text += f" (caused by {cause.get('type', 'error')}: {cause.get('reason') or ''})"
    return text


def classify_bulk_item(status: int, error: object, op_type: OpType) -> ItemVerdict:
    """What one item's status and error mean.

    | item status / `error.type`                                   | verdict       |
    | ------------------------------------------------------------ | ------------- |
    | 2xx (`created`, `updated`)                                   | stored        |
    | 409 `version_conflict_engine_exception` with `create`        | stored (sent before) |
    | 429 (rejected execution, circuit breaker, flood-stage block), 5xx | retry    |
    | 401, 403, 404; 400 naming the index, privileges, a pipeline, | misconfigured |
    |   data-stream rules (`op_type of create`), an alias          |               |
    | other 4xx (`document_parsing_exception`,                     | rejected      |
    |   `mapper_parsing_exception`, `strict_dynamic_mapping_exception`, ...) |     |
    | anything else                                                | retry         |
    """
    if 200 <= status < 300:
        return "stored"
    error_type = error.get("type") if isinstance(error, Mapping) else None
    if status == 409 and op_type == "create" and error_type == "version_conflict_engine_exception":
        return "stored"
    if status == 429 or 500 <= status < 600:
        return "retry"
    if status in (401, 403, 404) or error_type in _CONFIG_ERROR_TYPES:
        return "misconfigured"
    if 400 <= status < 500:
        reason = error.get("reason") if isinstance(error, Mapping) else None
        if isinstance(reason, str) and _CONFIG_REASONS.search(reason):
            return "misconfigured"
        return "rejected"
    return "retry"


def classify_bulk_response(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    ids: Sequence[str],
    op_type: OpType,
    secrets: Sequence[str] = (),
    now: float | None = None,
) -> BulkAnswer | TooLarge | RetryLater | Misconfigured:
    """What the answer to one `_bulk` request of the documents `ids` (in order) means.

    | HTTP status        | result                                                  |
    | ------------------ | ------------------------------------------------------- |
    | 200                | BulkAnswer, item by item (an answer that does not list  |
    |                    | one item per document, in order, is RetryLater)         |
    | 401, 403           | Misconfigured (the credential or its privileges)        |
    | 413                | TooLarge (the transport sends the halves)               |
    | 408, 429, 5xx      | RetryLater, with Retry-After when given                 |
    | 3xx                | Misconfigured (redirects are not followed)              |
    | other 4xx          | Misconfigured (the request itself was refused: a path,  |
    |                    | a parameter or an index the cluster does not know)      |
    | anything else      | RetryLater                                              |

    What the cluster says is quoted only scrubbed of `secrets` and credential shapes.
    """
    if status == 200:
        return _read_items(body, ids, op_type, secrets)
    detail = _error_detail(body, secrets)
    if status in (408, 429) or 500 <= status < 600:
        after = parse_retry_after(header(headers, "Retry-After"), now=now)
        return RetryLater(f"Elasticsearch answered HTTP {status}: {detail}", after)
    if status == 413:
        return TooLarge(f"Elasticsearch answered HTTP 413 (request too large): {detail}")
    if status in (401, 403):
        what = "refused the credential" if status == 401 else "refused the privileges"
        return Misconfigured(f"Elasticsearch answered HTTP {status} ({what}): {detail}")
    if 300 <= status < 400:
        return Misconfigured(
            f"Elasticsearch redirected (HTTP {status}); redirects are not followed:"
            " configure the final URL"
        )
    if 400 <= status < 500:
        return Misconfigured(f"Elasticsearch refused the request (HTTP {status}): {detail}")
    return RetryLater(f"Elasticsearch answered an unexpected HTTP {status}: {detail}")


def _error_detail(body: bytes, secrets: Sequence[str]) -> str:
    """The `error` of a whole-request refusal as text, or the body itself."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return peer_text(body, secrets=secrets) or "(no body)"
    if isinstance(answer, dict) and "error" in answer:
        return _quote(bulk_error_text(answer["error"]), secrets)
    return peer_text(body, secrets=secrets) or "(no body)"


def _quote(text: str, secrets: Sequence[str]) -> str:
    return scrub_reason(text, secrets, limit=PEER_TEXT_MAX_CHARS)


def _garbled(why: str) -> RetryLater:
    return RetryLater(f"Elasticsearch sent a _bulk answer that cannot be read ({why})")


def _read_items(
    body: bytes, ids: Sequence[str], op_type: OpType, secrets: Sequence[str]
) -> BulkAnswer | RetryLater:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _garbled("not JSON")
    items = answer.get("items") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return _garbled("no items")
    if len(items) != len(ids):
        return _garbled(f"{len(items)} items for {len(ids)} documents")
    if _all_stored(items, ids, op_type):
        return BulkAnswer()
    retry: dict[int, str] = {}
    rejected: dict[int, str] = {}
    misconfigured: str | None = None
    for position, item in enumerate(items):
        result = _item_result(item, op_type)
        if result is None:
            return _garbled(f"item {position} has no operation and status")
        status, found_id, error = result
        if found_id is not None and found_id != ids[position]:
            return _garbled(f"item {position} is not the document sent at that position")
        verdict = classify_bulk_item(status, error, op_type)
        if verdict == "stored":
            continue
        reason = _quote(f"HTTP {status} {bulk_error_text(error)}", secrets)
        if verdict == "retry":
            retry[position] = reason
        elif verdict == "rejected":
            rejected[position] = f"Elasticsearch refused the document: {reason}"
        elif misconfigured is None:
            misconfigured = f"Elasticsearch refused a document for its settings: {reason}"
    return BulkAnswer(retry, rejected, misconfigured)


def _all_stored(items: list[Any], ids: Sequence[str], op_type: OpType) -> bool:
    """Whether every item is `{op_type: {"_id": <the id sent at its position>, "status": 2xx
    (an int)}}`, the answer to a request that went through: the loop of `_read_items`
    would find each one stored. Checked with C-level maps over the lists, which costs a
    fraction of that loop; False sends the answer through the loop."""
    try:
        outcomes = list(map(itemgetter(op_type), items))
        statuses = list(map(itemgetter("status"), outcomes))
        return (
            set(map(len, items)) == {1}
            and set(map(type, statuses)) == {int}
            and min(statuses) >= 200
            and max(statuses) < 300
            and list(map(itemgetter("_id"), outcomes)) == list(ids)
        )
    except (KeyError, TypeError, ValueError):
        return False


def _item_result(item: object, op_type: OpType) -> tuple[int, str | None, Any] | None:
    """(status, `_id`, error) of one item of an answer, or None when it has no such shape."""
    if not isinstance(item, dict) or len(item) != 1:
        return None
    outcome = item.get(op_type)
    if not isinstance(outcome, dict):
        return None
    status = outcome.get("status")
    if type(status) is not int:
        return None
    found_id = outcome.get("_id")
    return status, found_id if isinstance(found_id, str) else None, outcome.get("error")
