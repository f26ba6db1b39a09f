"""Standard Webhooks signing and the webhook status table."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xavyo_siem.delivery.base import Delivered, Misconfigured, RetryLater
from xavyo_siem.delivery.http import TooLarge, cut_spans, gzip_body, parse_retry_after
from xavyo_siem.delivery.webhook import classify_webhook_status
from xavyo_siem.delivery.webhook_auth import (
    WebhookCredentials,
    sign_webhook,
    webhook_id,
    webhook_key,
)
from xavyo_siem.errors import InvalidDestination

from peers.webhook_receiver import verify_signature

# The test vector of the Standard Webhooks reference libraries (standard-webhooks/
# standard-webhooks, libraries/python/tests/test_webhooks.py, test_sign_function).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def test_spec_vector() -> None:
    """Signing the reference vector gives the reference signature, byte for byte."""
    assert sign_webhook([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_key_is_the_decoded_secret_not_the_text() -> None:
    """The HMAC key is the base64-decoded part after `whsec_` (24 bytes here)."""
    key = webhook_key(SPEC_SECRET)
    assert len(key) == 24
    expected = hmac.new(key, f"{SPEC_ID}.{SPEC_TIMESTAMP}.".encode() + SPEC_BODY, hashlib.sha256)
    assert "v1," + base64.b64encode(expected.digest()).decode() == SPEC_SIGNATURE


def test_rotation_lists_one_signature_per_secret_in_order() -> None:
    """With two secrets, the header holds two space-separated v1 signatures, newest first."""
    header = sign_webhook([OTHER_SECRET, SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    first, second = header.split(" ")
    assert second == SPEC_SIGNATURE
    assert first.startswith("v1,")
    assert first == sign_webhook([OTHER_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)


def test_a_receiver_knowing_either_secret_verifies_during_rotation() -> None:
    """A receiver with only the old, only the new, or both secrets accepts a rotated signature."""
    header = sign_webhook([OTHER_SECRET, SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    for known in ([SPEC_SECRET], [OTHER_SECRET], [SPEC_SECRET, OTHER_SECRET]):
        assert verify_signature(known, SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY, header)
    third = "whsec_" + base64.b64encode(b"z" * 32).decode()
    assert not verify_signature([third], SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY, header)


def test_signature_covers_id_timestamp_and_every_body_byte() -> None:
    """Changing the id, the timestamp or one byte of the body changes the signature."""
    base = sign_webhook([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert sign_webhook([SPEC_SECRET], SPEC_ID + "x", SPEC_TIMESTAMP, SPEC_BODY) != base
    assert sign_webhook([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY) != base
    assert sign_webhook([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY + b" ") != base


def test_ids_with_a_dot_are_refused() -> None:
    """A webhook id may not contain `.`, the separator of the signed content."""
    with pytest.raises(ValueError, match="must not contain"):
        sign_webhook([SPEC_SECRET], "msg.1", SPEC_TIMESTAMP, SPEC_BODY)


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_bad_secrets_are_refused_without_echoing_them(secret: str) -> None:
    """A secret without the prefix, not base64, or not 24-64 bytes is refused, never quoted."""
    with pytest.raises(InvalidDestination) as info:
        webhook_key(secret)
    assert info.value.field == "secret"
    assert secret not in str(info.value)


def test_unpadded_secrets_are_accepted() -> None:
    """A secret whose base64 lost its padding decodes to the same key."""
    padded = "whsec_" + base64.b64encode(b"k" * 25).decode()
    assert padded.endswith("=")
    assert webhook_key(padded.rstrip("=")) == webhook_key(padded)


def test_webhook_id_is_stable_and_content_derived() -> None:
    """Equal event ids give the same id; other ids or another order give another; no dot."""
    first = webhook_id(["a", "b", "c"])
    assert first == webhook_id(["a", "b", "c"])
    assert first != webhook_id(["a", "b"])
    assert first != webhook_id(["c", "b", "a"])
    assert first.startswith("msg_")
    assert len(first) == 36
    assert "." not in first


STATUS_TABLE = [
    (200, Delivered),
    (202, Delivered),
    (204, Delivered),
    (301, Misconfigured),
    (302, Misconfigured),
    (307, Misconfigured),
    (308, Misconfigured),
    (400, Misconfigured),
    (401, Misconfigured),
    (403, Misconfigured),
    (404, Misconfigured),
    (408, RetryLater),
    (410, Misconfigured),
    (413, TooLarge),
    (422, Misconfigured),
    (429, RetryLater),
    (500, RetryLater),
    (502, RetryLater),
    (503, RetryLater),
    (504, RetryLater),
    (101, RetryLater),
]


@pytest.mark.parametrize(("status", "kind"), STATUS_TABLE)
def test_status_table(status: int, kind: type) -> None:
    """Each status maps to the result class the webhook status table gives it."""
    assert isinstance(classify_webhook_status(status, {}, b""), kind)


def test_retry_after_is_honoured() -> None:
    """429 and 503 carry the Retry-After delay, in seconds or as an HTTP-date."""
    result = classify_webhook_status(429, {"Retry-After": "120"}, b"")
    assert isinstance(result, RetryLater)
    assert result.after_s == 120.0
    dated = classify_webhook_status(
        503, {"retry-after": "Thu, 01 Jan 2026 00:01:00 GMT"}, b"", now=1767225600.0
    )
    assert isinstance(dated, RetryLater)
    assert dated.after_s == 60.0


def test_4xx_keeps_the_body_truncated_as_reason() -> None:
    """A 4xx reason quotes the receiver's body on one line, truncated."""
    result = classify_webhook_status(400, {}, b"field 'x' is required\r\n" + b"y" * 10_000)
    assert isinstance(result, Misconfigured)
    assert "field 'x' is required" in result.reason
    assert "\n" not in result.reason
    assert len(result.reason) < 400


def test_redirect_reason_does_not_quote_the_location() -> None:
    """A redirect is refused without echoing its Location (it may carry a credential)."""
    result = classify_webhook_status(302, {"Location": "https://x/?key=secret"}, b"")
    assert isinstance(result, Misconfigured)
    assert "secret" not in result.reason


@pytest.mark.parametrize(
    ("value", "after"),
    [("0", 0.0), ("15", 15.0), (" 3 ", 3.0), ("-1", None), ("1.5", None), ("", None), (None, None)],
)
def test_parse_retry_after(value: str | None, after: float | None) -> None:
    """Retry-After is delta-seconds (digits only) or an HTTP-date; anything else is ignored."""
    assert parse_retry_after(value, now=0.0) == after


def test_retry_after_date_in_the_past_is_zero() -> None:
    """An HTTP-date already past means no wait, not a negative one."""
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now=100.0) == 0.0


@pytest.mark.parametrize(
    ("sizes", "max_events", "max_bytes", "spans"),
    [
        ([1] * 5, 2, 100, [(0, 2), (2, 4), (4, 5)]),
        ([40, 40, 40], 10, 100, [(0, 2), (2, 3)]),
        ([200, 1, 1], 10, 100, [(0, 1), (1, 3)]),
        ([1, 200, 1], 10, 100, [(0, 1), (1, 2), (2, 3)]),
        ([], 10, 100, []),
    ],
)
def test_cut_spans(
    sizes: list[int], max_events: int, max_bytes: int, spans: list[tuple[int, int]]
) -> None:
    """Spans respect both bounds, keep order, and an oversized item travels alone."""
    assert cut_spans(sizes, 0, len(sizes), max_events=max_events, max_bytes=max_bytes) == spans


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=5000) | st.text().map(str.encode))
def test_a_gzip_body_is_one_member_the_stdlib_reads_back(body: bytes) -> None:
    """`gzip_body` (ISA-L) writes one gzip member that Python's gzip reads back exactly."""
    packed = gzip_body(body)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == body


def spans_one_by_one(
    sizes: list[int], start: int, end: int, max_events: int, max_bytes: int
) -> list[tuple[int, int]]:
    """The spans as the general path cuts them: item by item, by count and by bytes."""
    out: list[tuple[int, int]] = []
    first, total = start, 0
    for index in range(start, end):
        if index > first and (index - first >= max_events or total + sizes[index] > max_bytes):
            out.append((first, index))
            first, total = index, 0
        total += sizes[index]
    return [*out, (first, end)] if first < end else out


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), max_size=30),
    bounds=st.tuples(st.integers(0, 30), st.integers(0, 30)),
    max_events=st.integers(1, 8),
    max_bytes=st.integers(1, 400),
)
def test_cut_spans_cuts_as_the_item_by_item_loop(
    sizes: list[int], bounds: tuple[int, int], max_events: int, max_bytes: int
) -> None:
    """Whether or not the bytes could cut (the short cut when they cannot), the spans are
    those of the item-by-item loop, for any part of the list."""
    start, end = sorted(min(b, len(sizes)) for b in bounds)
    assert cut_spans(
        sizes, start, end, max_events=max_events, max_bytes=max_bytes
    ) == spans_one_by_one(sizes, start, end, max_events, max_bytes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bearer_token": "t", "basic_user": "u", "basic_password": "p"},
        {"bearer_token": "t", "auth_headers": (("X-Key", "k"),)},
        {"basic_user": "u"},
        {"basic_user": "a:b", "basic_password": "p"},
        {"bearer_token": "line\nbreak"},
        {"bearer_token": ""},
        {"auth_headers": (("X-Key", "a\r\nb"),)},
        {"auth_headers": (("Bad Name", "v"),)},
        {"auth_headers": (("webhook-id", "1"),)},
        {"auth_headers": (("Content-Type", "text/plain"),)},
        {"signing_secrets": ("nope",)},
    ],
)
def test_bad_credentials_are_refused(kwargs: dict[str, object]) -> None:
    """Mixed auth schemes, half a basic pair, multi-line values, reserved headers and bad
    signing secrets are refused, naming the `secret` field."""
    with pytest.raises(InvalidDestination) as info:
        WebhookCredentials(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == "secret"


def test_credentials_repr_never_shows_a_value() -> None:
    """The repr of credentials names how many secrets there are, never their values."""
    credentials = WebhookCredentials(signing_secrets=(SPEC_SECRET,), bearer_token="tok-123")
    assert SPEC_SECRET not in repr(credentials)
    assert "tok-123" not in repr(credentials)


def test_credentials_from_a_secret_string() -> None:
    """A destination secret is whitespace-separated whsec_ secrets or a JSON object."""
    plain = WebhookCredentials.from_secret(f"{OTHER_SECRET} {SPEC_SECRET}")
    assert plain.signing_secrets == (OTHER_SECRET, SPEC_SECRET)
    assert WebhookCredentials.from_secret(None) == WebhookCredentials()
    rich = WebhookCredentials.from_secret(
        orjson.dumps(
            {"signing_secrets": [SPEC_SECRET], "basic": {"user": "u", "password": "p"}}
        ).decode()
    )
    assert rich.signing_secrets == (SPEC_SECRET,)
    assert (rich.basic_user, rich.basic_password) == ("u", "p")
    headers = WebhookCredentials.from_secret('{"headers": {"X-Api-Key": "k"}}')
    assert headers.auth_headers == (("X-Api-Key", "k"),)
    for bad in ('{"token": "x"}', '{"signing_secrets": "whsec_x"}', "{not json", '{"basic": 1}'):
        with pytest.raises(InvalidDestination):
            WebhookCredentials.from_secret(bad)
