"""The webhook transport against a verifying receiver (tests/peers/webhook_receiver.py)."""

from __future__ import annotations

import base64
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from format_parsers import parse_ocsf
from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, Rejected, RetryLater
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.webhook import WebhookConfig, WebhookCredentials, WebhookTransport
from xavyo_siem.delivery.webhook_auth import webhook_id
from xavyo_siem.format import JSON_OBJECT_FORMATS, make_formatter
from xavyo_siem.model import ExportFormat
from xavyo_siem.sample import generate_events

from peers.hec_server import TlsFiles, make_tls
from peers.webhook_receiver import WebhookReceiver

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()


def records(count: int, seed: int = 2) -> list[Record]:
    """`count` sample events as JSON records."""
    out = []
    for event in generate_events(count, tenants=1, seed=seed):
        us = int(event.timestamp.timestamp()) * 1_000_000 + event.timestamp.microsecond
        out.append(Record(str(event.event_id), us, orjson.dumps(event.to_dict()).decode()))
    return out


def config(url: str, development: bool = True, **options: Any) -> WebhookConfig:
    """A validated webhook config, as the API would build it."""
    result = validate_destination("webhook", url, options, development=development)
    assert isinstance(result, WebhookConfig)
    return result


def transport(
    receiver: WebhookReceiver,
    *,
    secrets: tuple[str, ...] = (NEW,),
    event_is_json: bool = True,
    clock: Any = time.time,
    credentials: WebhookCredentials | None = None,
    **options: Any,
) -> WebhookTransport:
    """A transport to `receiver` over plain HTTP (development mode)."""
    return WebhookTransport(
        config(receiver.url, **options),
        event_is_json=event_is_json,
        credentials=credentials or WebhookCredentials(signing_secrets=secrets),
        development=True,
        clock=clock,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A receiver that knows the NEW secret."""
    async with WebhookReceiver(secrets=(NEW,)) as peer:
        yield peer


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for localhost."""
    return make_tls(tmp_path_factory.mktemp("webhook-tls"))


async def test_signed_json_array_is_verified_and_delivered(receiver: WebhookReceiver) -> None:
    """A JSON-array batch is signed, verified by the receiver, and arrives intact, in order."""
    batch = records(10)
    sender = transport(receiver)
    try:
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert receiver.refusals == []
    assert receiver.events() == [orjson.loads(r.text) for r in batch]
    message = receiver.messages[0]
    assert message.msg_id == webhook_id([r.event_id for r in batch])
    assert message.content_type == "application/json"


async def test_ocsf_records_arrive_as_ocsf_objects(receiver: WebhookReceiver) -> None:
    """An `ocsf` destination's records (a JSON object format) arrive as the OCSF objects
    themselves, each valid OCSF 1.5.0, in order."""
    assert ExportFormat.OCSF in JSON_OBJECT_FORMATS
    events = list(generate_events(20, tenants=1, seed=4))
    formatter = make_formatter(ExportFormat.OCSF)
    batch = [Record(str(e.event_id), i, formatter(e)) for i, e in enumerate(events)]
    sender = transport(receiver, event_is_json=True)
    try:
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    received = receiver.events()
    assert [parse_ocsf(orjson.dumps(item).decode()).event for item in received] == [
        orjson.loads(r.text) for r in batch
    ]


async def test_ndjson_with_lines_as_strings(receiver: WebhookReceiver) -> None:
    """With `body=ndjson` and a line format, each line is one JSON string per NDJSON line."""
    lines = ["CEF:0|Xavyo|IDP|1|LOGIN|Login|3|msg=a\\nb", "second\u2028line", 'q"uote']
    batch = [Record(f"e{i}", i, line) for i, line in enumerate(lines)]
    sender = transport(receiver, body="ndjson", event_is_json=False)
    try:
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert receiver.events() == lines
    assert receiver.messages[0].content_type == "application/x-ndjson"


async def test_ndjson_keeps_one_event_per_line_for_pretty_json(receiver: WebhookReceiver) -> None:
    """A JSON record holding a newline is written on one line, so NDJSON stays one per event."""
    batch = [Record("a", 1, '{\n  "k": 1\n}'), Record("b", 2, '{"k":2}')]
    sender = transport(receiver, body="ndjson")
    try:
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert receiver.events() == [{"k": 1}, {"k": 2}]


async def test_rotation_verifies_with_the_old_or_the_new_secret() -> None:
    """Signed with both secrets, a batch verifies at a receiver that knows only either one."""
    for known in ((OLD,), (NEW,)):
        async with WebhookReceiver(secrets=known) as peer:
            sender = transport(peer, secrets=(NEW, OLD))
            try:
                assert await sender.send(records(2)) == Delivered()
            finally:
                await sender.aclose()
            assert peer.refusals == []
            assert len(peer.events()) == 2


async def test_wrong_secret_is_misconfigured(receiver: WebhookReceiver) -> None:
    """A signature the receiver cannot verify gets a 401, which is misconfigured."""
    sender = transport(receiver, secrets=(OLD,))
    try:
        result = await sender.send(records(1))
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "401" in result.reason
    assert receiver.refusals == ["no matching signature"]


async def test_webhook_id_is_stable_across_retries_and_timestamp_is_not(
    receiver: WebhookReceiver,
) -> None:
    """A retried batch keeps its webhook-id while each attempt gets its own timestamp."""
    receiver.script = deque([503])
    ticks = iter([1_000.0, 1_060.0])
    receiver.clock = lambda: 1_030.0
    batch = records(3)
    sender = transport(receiver, clock=lambda: next(ticks))
    try:
        assert isinstance(await sender.send(batch), RetryLater)
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert receiver.attempts[0] == receiver.attempts[1]
    assert receiver.messages[0].timestamp == 1_060


async def test_receiver_deduplicates_a_redelivered_batch(receiver: WebhookReceiver) -> None:
    """Sending the same batch twice (at-least-once) is dropped by id at the receiver."""
    batch = records(4)
    sender = transport(receiver)
    try:
        assert await sender.send(batch) == Delivered()
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert receiver.duplicates == 1
    assert len(receiver.events()) == 4


async def test_a_skewed_clock_is_refused_by_the_tolerance(receiver: WebhookReceiver) -> None:
    """A timestamp more than five minutes off is refused by the receiver: misconfigured."""
    sender = transport(receiver, clock=lambda: time.time() - 301)
    try:
        result = await sender.send(records(1))
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert receiver.refusals == ["timestamp outside the tolerance"]


@pytest.mark.parametrize(
    ("peer_auth", "credentials"),
    [
        ({"bearer": "tok"}, WebhookCredentials(signing_secrets=(NEW,), bearer_token="tok")),
        (
            {"basic": ("siem", "pw")},
            WebhookCredentials(signing_secrets=(NEW,), basic_user="siem", basic_password="pw"),
        ),
        (
            {"auth_header": ("X-Api-Key", "k1")},
            WebhookCredentials(signing_secrets=(NEW,), auth_headers=(("X-Api-Key", "k1"),)),
        ),
    ],
)
async def test_each_auth_scheme_is_accepted_and_a_wrong_one_refused(
    peer_auth: dict[str, Any], credentials: WebhookCredentials
) -> None:
    """Bearer, basic and custom-header auth reach the receiver; without them it answers 401."""
    async with WebhookReceiver(secrets=(NEW,), **peer_auth) as peer:
        good = transport(peer, credentials=credentials)
        bare = transport(peer)
        try:
            assert await good.send(records(1)) == Delivered()
            assert isinstance(await bare.send(records(1, seed=9)), Misconfigured)
        finally:
            await good.aclose()
            await bare.aclose()
    assert peer.refusals == ["authentication failed"]


async def test_retry_after_is_passed_on(receiver: WebhookReceiver) -> None:
    """429 with Retry-After gives RetryLater with that delay."""
    receiver.script = deque([(429, {"Retry-After": "42"})])
    sender = transport(receiver)
    try:
        result = await sender.send(records(1))
    finally:
        await sender.aclose()
    assert isinstance(result, RetryLater)
    assert result.after_s == 42.0


async def test_gone_and_redirects_are_misconfigured_and_not_followed(
    receiver: WebhookReceiver,
) -> None:
    """410 says the endpoint is gone; a 307 is not followed: both are misconfigured."""
    receiver.script = deque([410, (307, {"Location": "/elsewhere"})])
    sender = transport(receiver)
    try:
        gone = await sender.send(records(1))
        moved = await sender.send(records(1))
    finally:
        await sender.aclose()
    assert isinstance(gone, Misconfigured)
    assert "410" in gone.reason
    assert isinstance(moved, Misconfigured)
    assert "redirect" in moved.reason
    assert len(receiver.attempts) == 2


async def test_client_errors_keep_the_body_as_reason(receiver: WebhookReceiver) -> None:
    """A 4xx from the receiver is misconfigured with its body, truncated, as the reason."""
    receiver.script = deque([422])
    sender = transport(receiver)
    try:
        result = await sender.send(records(1))
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "scripted 422" in result.reason


async def test_413_splits_the_batch_and_rejects_a_lone_giant() -> None:
    """413 halves the batch until parts fit; one record over the limit alone is rejected."""
    async with WebhookReceiver(secrets=(NEW,), max_body_bytes=3000) as peer:
        batch = records(12)
        batch[7] = Record("giant", 7, orjson.dumps({"blob": "x" * 5000}).decode())
        sender = transport(peer)
        try:
            result = await sender.send(batch)
        finally:
            await sender.aclose()
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [7]
    assert peer.events() == [orjson.loads(r.text) for i, r in enumerate(batch) if i != 7]
    assert len({m.msg_id for m in peer.messages}) == len(peer.messages)


async def test_batches_are_bounded_by_count(receiver: WebhookReceiver) -> None:
    """A send larger than `batch_max_events` becomes several messages with their own ids."""
    batch = records(7)
    sender = transport(receiver, batch_max_events=3)
    try:
        assert await sender.send(batch) == Delivered()
    finally:
        await sender.aclose()
    assert [len(m.events) for m in receiver.messages] == [3, 3, 1]
    assert len({m.msg_id for m in receiver.messages}) == 3


async def test_gzip_body_is_signed_uncompressed(receiver: WebhookReceiver) -> None:
    """With `gzip`, the receiver inflates the body and the signature verifies on the JSON."""
    sender = transport(receiver, gzip=True)
    try:
        assert await sender.send(records(5)) == Delivered()
    finally:
        await sender.aclose()
    assert receiver.refusals == []
    assert receiver.messages[0].headers["Content-Encoding"] == "gzip"
    assert len(receiver.events()) == 5


async def test_unsigned_destination_still_sends_id_and_timestamp() -> None:
    """Without signing secrets, webhook-id and webhook-timestamp are still sent."""
    async with WebhookReceiver() as peer:
        sender = transport(peer, secrets=())
        try:
            assert await sender.send(records(1)) == Delivered()
        finally:
            await sender.aclose()
    headers = peer.messages[0].headers
    assert "webhook-signature" not in {k.lower() for k in headers}
    assert headers["webhook-id"].startswith("msg_")


async def test_check_probes_without_sending(receiver: WebhookReceiver) -> None:
    """`check` reaches the receiver with OPTIONS and posts no event."""
    sender = transport(receiver)
    try:
        assert await sender.check() == Delivered()
    finally:
        await sender.aclose()
    assert receiver.messages == []


async def test_https_verified_with_ca_file(tls_files: TlsFiles) -> None:
    """Over HTTPS with `ca_file`, the receiver's certificate verifies and the batch lands."""
    async with WebhookReceiver(secrets=(NEW,), tls=tls_files) as peer:
        sender = WebhookTransport(
            config(peer.url, development=False, ca_file=str(tls_files.ca_file)),
            event_is_json=True,
            credentials=WebhookCredentials(signing_secrets=(NEW,)),
        )
        try:
            assert await sender.check() == Delivered()
            assert await sender.send(records(3)) == Delivered()
        finally:
            await sender.aclose()
    assert len(peer.events()) == 3


async def test_https_server_name_mismatch_is_misconfigured(tls_files: TlsFiles) -> None:
    """A `server_name` the certificate does not cover fails verification: misconfigured."""
    async with WebhookReceiver(secrets=(NEW,), tls=tls_files) as peer:
        sender = WebhookTransport(
            config(
                peer.url,
                development=False,
                ca_file=str(tls_files.ca_file),
                server_name="siem.example.com",
            ),
            event_is_json=True,
        )
        try:
            result = await sender.send(records(1))
        finally:
            await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert peer.attempts == []


async def test_a_record_that_is_not_utf8_is_rejected_before_sending(
    receiver: WebhookReceiver,
) -> None:
    """A record holding a lone surrogate is rejected without a request; the rest is sent."""
    batch = records(3)
    batch[2] = Record("bad", 1, '{"a":"\ud800"}')
    sender = transport(receiver)
    try:
        result = await sender.send(batch)
    finally:
        await sender.aclose()
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [2]
    assert len(receiver.events()) == 2
