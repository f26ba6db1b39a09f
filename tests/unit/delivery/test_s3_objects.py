"""The S3 transport's pure parts: object keys, bodies and digests, and the classification of
an S3 server's answers."""

from __future__ import annotations

import base64
import gzip
import hashlib
from datetime import UTC, datetime

import pytest

from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.s3_objects import (
    classify_s3_probe,
    classify_s3_put,
    object_key,
    plan_objects,
)

TENANT = "5f0c9a64-1111-4222-8333-444455556666"
HOUR_US = 3_600_000_000
T0 = int(datetime(2026, 1, 5, 13, 0, tzinfo=UTC).timestamp()) * 1_000_000


def records(count: int, *, start_us: int = T0, step_us: int = 1_000_000) -> list[Record]:
    return [
        Record(f"00000000-0000-4000-8000-{n:012d}", start_us + n * step_us, f'{{"n":{n}}}')
        for n in range(count)
    ]


def plan(batch: list[Record], name: str | None = "10.4-10.9", max_bytes: int = 1 << 20) -> list:
    return plan_objects(
        batch, prefix="audit", tenant=TENANT, name=name, extension=".ndjson.gz", max_bytes=max_bytes
    )


def test_the_key_holds_prefix_tenant_utc_hour_partitions_and_the_name() -> None:
    """Hive partitions, zero-padded, under the prefix; no prefix: the tenant first."""
    hour = datetime(2026, 1, 5, 3, tzinfo=UTC)
    assert object_key(prefix="a/b", tenant=TENANT, hour=hour, name="1.2-3.4", extension=".x") == (
        f"a/b/tenant={TENANT}/year=2026/month=01/day=05/hour=03/1.2-3.4.x"
    )
    assert object_key(prefix="", tenant=TENANT, hour=hour, name="n", extension=".x").startswith(
        f"tenant={TENANT}/year=2026/"
    )


def test_one_hour_of_records_is_one_object_of_ndjson_lines() -> None:
    """The body is gzip of one record per LF-ended line, in order; its digests are its own."""
    batch = records(5)
    (obj,) = plan(batch)
    assert obj.key == f"audit/tenant={TENANT}/year=2026/month=01/day=05/hour=13/10.4-10.9.ndjson.gz"
    assert gzip.decompress(obj.body) == b"".join(r.text.encode() + b"\n" for r in batch)
    assert obj.records == 5
    assert obj.md5_b64 == base64.b64encode(hashlib.md5(obj.body).digest()).decode()
    assert obj.sha256_hex == hashlib.sha256(obj.body).hexdigest()
    assert base64.b64decode(obj.sha256_b64) == hashlib.sha256(obj.body).digest()


def test_the_same_batch_gives_the_same_keys_and_bytes() -> None:
    """Deterministic: a resend overwrites with identical bytes (gzip without a time stamp)."""
    first, again = plan(records(50)), plan(records(50))
    assert [(o.key, o.body, o.md5_b64) for o in first] == [
        (o.key, o.body, o.md5_b64) for o in again
    ]
    assert first[0].body[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME is zero


def test_a_batch_over_two_hours_becomes_one_object_per_hour_with_the_batch_name() -> None:
    """Records are partitioned by their own UTC hour; each object keeps the batch's name."""
    batch = records(4, start_us=T0 - 2_000_000, step_us=1_000_000)  # 12:59:58 .. 13:00:01
    objects = plan(batch)
    assert [o.key.split("/")[-2:] for o in objects] == [
        ["hour=12", "10.4-10.9.ndjson.gz"],
        ["hour=13", "10.4-10.9.ndjson.gz"],
    ]
    assert [o.records for o in objects] == [2, 2]


def test_late_records_go_to_their_own_hour_in_hour_order() -> None:
    """A late event (older hour) lands under its hour; objects come out oldest hour first."""
    batch = records(3)
    late = Record("00000000-0000-4000-8000-000000000099", T0 - 5 * HOUR_US, "late")
    objects = plan([batch[0], late, *batch[1:]])
    assert [o.key.split("/")[-2] for o in objects] == ["hour=08", "hour=13"]
    assert gzip.decompress(objects[1].body).count(b"\n") == 3


def test_an_hour_larger_than_the_cap_is_cut_into_numbered_parts() -> None:
    """Over `max_bytes` (uncompressed) an hour's records go in parts -p1, -p2, … in order."""
    batch = records(10)  # each line is 8 or 9 bytes
    objects = plan(batch, max_bytes=30)
    names = [o.key.rsplit("/", 1)[-1] for o in objects]
    assert names == [f"10.4-10.9-p{n}.ndjson.gz" for n in range(1, len(objects) + 1)]
    joined = b"".join(gzip.decompress(o.body) for o in objects)
    assert joined == b"".join(r.text.encode() + b"\n" for r in batch)
    assert all(len(gzip.decompress(o.body)) <= 30 for o in objects)


def test_without_a_span_the_name_is_the_first_and_last_event() -> None:
    """A replay or a test event names its object by the event ids it holds."""
    batch = records(3)
    (obj,) = plan(batch, name=None)
    assert obj.key.endswith(f"/{batch[0].event_id}-{batch[-1].event_id}.ndjson.gz")


def test_no_records_no_objects() -> None:
    """An empty batch writes nothing."""
    assert plan([]) == []


def _error(code: str, message: str = "m") -> bytes:
    text = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return f"<?xml version='1.0'?>{text}".encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "says"),
    [
        (200, b"", Delivered, ""),
        (204, b"", Delivered, ""),
        (500, _error("InternalError"), RetryLater, "InternalError"),
        (503, _error("SlowDown", "Reduce your request rate."), RetryLater, "SlowDown"),
        (429, b"", RetryLater, "429"),
        (408, b"", RetryLater, "408"),
        (400, _error("BadDigest"), RetryLater, "BadDigest"),
        (400, _error("XAmzContentSHA256Mismatch"), RetryLater, "XAmzContentSHA256Mismatch"),
        (400, _error("RequestTimeout"), RetryLater, "RequestTimeout"),
        (403, _error("InvalidAccessKeyId"), Misconfigured, "access key id or secret"),
        (403, _error("SignatureDoesNotMatch"), Misconfigured, "access key id or secret"),
        (400, _error("ExpiredToken"), Misconfigured, "access key id or secret"),
        (403, _error("AccessDenied", "Access Denied"), Misconfigured, "AccessDenied: Acc"),
        (403, b"", Misconfigured, "may not write"),
        (404, _error("NoSuchBucket"), Misconfigured, "bucket does not exist"),
        (404, b"", Misconfigured, "bucket does not exist"),
        (400, _error("AuthorizationHeaderMalformed"), Misconfigured, "HeaderMalformed"),
        (403, _error("RequestTimeTooSkewed"), Misconfigured, "RequestTimeTooSkewed"),
        (301, _error("PermanentRedirect"), Misconfigured, "PermanentRedirect"),
        (307, _error("TemporaryRedirect"), RetryLater, "TemporaryRedirect"),
        (400, _error("InvalidRequest"), Misconfigured, "InvalidRequest"),
        (100, b"", RetryLater, "100"),
    ],
)  # fmt: skip
def test_each_s3_answer_classifies_as_its_row(
    status: int, body: bytes, kind: type, says: str
) -> None:
    """A PUT's answer gives the result of its row in `classify_s3_put`'s table."""
    result = classify_s3_put(status, {}, body)
    assert isinstance(result, kind)
    assert says in getattr(result, "reason", "")


def test_retry_after_is_honoured() -> None:
    """A 503 with Retry-After asks for that delay."""
    result = classify_s3_put(503, {"Retry-After": "7"}, _error("SlowDown"))
    assert result == RetryLater(result.reason, 7.0)  # type: ignore[union-attr]


def test_a_secret_the_server_echoes_is_not_quoted() -> None:
    """The transport's secrets never reach a reason, even when the server quotes them."""
    result = classify_s3_put(
        403,
        {},
        _error("SignatureDoesNotMatch", "key s3cret-value-123"),
        secrets=["s3cret-value-123"],
    )
    assert isinstance(result, Misconfigured)
    assert "s3cret-value-123" not in result.reason


def test_the_probe_passes_a_key_that_may_only_write() -> None:
    """AccessDenied on the listing proves the signature was accepted; a bad key still fails."""
    assert classify_s3_probe(403, {}, _error("AccessDenied")) == Delivered()
    assert classify_s3_probe(200, {}, b"<ListBucketResult/>") == Delivered()
    assert isinstance(classify_s3_probe(403, {}, _error("InvalidAccessKeyId")), Misconfigured)
    assert isinstance(classify_s3_probe(404, {}, _error("NoSuchBucket")), Misconfigured)
