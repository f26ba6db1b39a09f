"""The Elasticsearch transport against the `_bulk` contract peer
(tests/peers/elasticsearch_peer.py): what is stored, document by document, and what each
answer becomes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from bulk_records import API_KEY, KEY, KEY_ID, STREAM, config, json_records
from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, Rejected, RetryLater
from xavyo_siem.delivery.elasticsearch import ElasticsearchTransport
from xavyo_siem.delivery.elasticsearch_bulk import iso_timestamp

from peers.elasticsearch_peer import ElasticsearchPeer
from peers.hec_server import TlsFiles, make_tls


def transport(
    peer: ElasticsearchPeer, secret: str | None = API_KEY, **options: Any
) -> ElasticsearchTransport:
    """A transport to `peer` over plain HTTP (development mode)."""
    return ElasticsearchTransport(config(peer.url, **options), secret=secret, development=True)


async def send_once(
    peer: ElasticsearchPeer, records: list[Record], secret: str | None = API_KEY, **options: Any
) -> Any:
    """Send `records` through a fresh transport to `peer`, then close it."""
    sender = transport(peer, secret, **options)
    try:
        return await sender.send(records)
    finally:
        await sender.aclose()


def expected_source(record: Record) -> dict[str, Any]:
    """The document a record should become: the event object with `@timestamp`."""
    return {"@timestamp": iso_timestamp(record.timestamp_us), **orjson.loads(record.text)}


@pytest.fixture
async def peer() -> AsyncIterator[ElasticsearchPeer]:
    """A contract peer with security on: one API key, one user, one bearer token, and a
    user that may log in but not write."""
    async with ElasticsearchPeer(
        api_keys={KEY_ID: KEY},
        users={"xavyo": "p:ss word", "reader": "r"},
        bearer_tokens={"AAEAAWVsYXN0aWM"},
        read_only={"reader"},
        pipelines={"xavyo@custom"},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for localhost."""
    return make_tls(tmp_path_factory.mktemp("es-tls"))


async def test_every_event_is_stored_once_with_its_id_and_timestamp(
    peer: ElasticsearchPeer,
) -> None:
    """Each record becomes the document `_id` = event id in the data stream, in order, with
    `@timestamp` from the event; one gzip request with the API key."""
    records = json_records(40)
    assert await send_once(peer, records) == Delivered()
    stored = peer.documents(STREAM)
    assert list(stored) == [r.event_id for r in records]
    for record in records:
        assert stored[record.event_id] == expected_source(record)
    (request,) = peer.requests
    assert request.path == f"/{STREAM}/_bulk"
    assert request.headers["authorization"] == f"ApiKey {API_KEY}"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.headers["content-encoding"] == "gzip"
    assert request.query["filter_path"] == "errors,items.*.status,items.*._id,items.*.error"


async def test_a_resend_stores_nothing_twice(peer: ElasticsearchPeer) -> None:
    """The same batch again is answered 409 per document, which counts as delivered."""
    records = json_records(10)
    assert await send_once(peer, records) == Delivered()
    assert await send_once(peer, records) == Delivered()
    assert len(peer.documents(STREAM)) == 10
    assert peer.document_count == 10


async def test_a_resend_after_a_rollover_is_stored_again_in_the_new_write_index(
    peer: ElasticsearchPeer,
) -> None:
    """The documented limit of `create` with `_id`: it de-duplicates within one backing
    index only, so a batch sent again after the data stream rolled over exists twice."""
    records = json_records(3)
    assert await send_once(peer, records) == Delivered()
    peer.rollover(STREAM)
    assert await send_once(peer, records) == Delivered()
    backing = {index: docs for index, docs in peer.stored.items() if STREAM in index}
    assert len(backing) == 2
    assert all(list(docs) == [r.event_id for r in records] for docs in backing.values())


async def test_op_type_index_overwrites_on_a_resend(peer: ElasticsearchPeer) -> None:
    """With op_type `index` to a plain index a resend replaces the same documents."""
    records = json_records(5)
    for _ in range(2):
        assert await send_once(peer, records, index="audit", op_type="index") == Delivered()
    assert list(peer.documents("audit")) == [r.event_id for r in records]
    assert peer.document_count == 10  # written twice, stored once each


@pytest.mark.parametrize(
    ("secret", "header"),
    [
        ('{"username": "xavyo", "password": "p:ss word"}', "Basic eGF2eW86cDpzcyB3b3Jk"),
        ('{"bearer": "AAEAAWVsYXN0aWM"}', "Bearer AAEAAWVsYXN0aWM"),
        (f'{{"api_key_id": "{KEY_ID}", "api_key": "{KEY}"}}', f"ApiKey {API_KEY}"),
    ],
)
async def test_basic_bearer_and_split_api_key_credentials(
    peer: ElasticsearchPeer, secret: str, header: str
) -> None:
    """Every credential form authenticates and is sent as its header."""
    assert await send_once(peer, json_records(3), secret) == Delivered()
    assert peer.requests[-1].headers["authorization"] == header


@pytest.mark.parametrize("secret", [None, base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:wrong").decode()])
async def test_a_missing_or_wrong_credential_is_misconfigured(
    peer: ElasticsearchPeer, secret: str | None
) -> None:
    """401 is a configuration error, and nothing is stored."""
    result = await send_once(peer, json_records(3), secret)
    assert isinstance(result, Misconfigured)
    assert "HTTP 401" in result.reason
    assert peer.documents(STREAM) == {}


async def test_a_credential_without_write_privilege_is_misconfigured(
    peer: ElasticsearchPeer,
) -> None:
    """The probe passes (the user logs in) but every document is refused 403: the
    destination is misconfigured, no document is dead-lettered."""
    sender = transport(peer, '{"username": "reader", "password": "r"}')
    try:
        assert await sender.check() == Delivered()
        result = await sender.send(json_records(3))
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "security_exception" in result.reason


async def test_check_refuses_a_wrong_credential(peer: ElasticsearchPeer) -> None:
    """`check` presents the credential: a wrong one is Misconfigured with HTTP 401."""
    sender = transport(peer, base64.b64encode(b"x:y").decode())
    try:
        result = await sender.check()
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "HTTP 401" in result.reason


async def test_without_gzip_the_body_is_plain_ndjson(peer: ElasticsearchPeer) -> None:
    """gzip off: no Content-Encoding, and the body is the NDJSON itself."""
    records = json_records(2)
    assert await send_once(peer, records, gzip=False) == Delivered()
    (request,) = peer.requests
    assert "content-encoding" not in request.headers
    lines = request.body.split(b"\n")
    assert lines[-1] == b""
    assert orjson.loads(lines[0]) == {"create": {"_id": records[0].event_id}}


async def test_requests_are_bounded_by_count_and_bytes(peer: ElasticsearchPeer) -> None:
    """batch_max_events and batch_max_bytes cut one send into several requests."""
    records = json_records(25)
    assert await send_once(peer, records, batch_max_events=10) == Delivered()
    assert [r.documents for r in peer.requests] == [10, 10, 5]
    peer.requests.clear()
    assert await send_once(peer, json_records(6, seed=2), batch_max_bytes=2048) == Delivered()
    assert len(peer.requests) >= 3
    assert all(len(r.body) <= 2048 or r.documents == 1 for r in peer.requests)
    assert len(peer.documents(STREAM)) == 31


async def test_a_batch_is_spread_over_the_requests_in_flight(peer: ElasticsearchPeer) -> None:
    """1,000 documents go as two requests of 500 by default, as one with
    max_requests_in_flight=1; every document is stored once either way."""
    assert await send_once(peer, json_records(1000)) == Delivered()
    assert sorted(r.documents for r in peer.requests) == [500, 500]
    peer.requests.clear()
    records = json_records(1000, seed=2)
    assert await send_once(peer, records, max_requests_in_flight=1) == Delivered()
    assert [r.documents for r in peer.requests] == [1000]
    assert len(peer.documents(STREAM)) == 2000


async def test_413_sends_halves_and_a_lone_document_too_large_is_rejected() -> None:
    """A request over the cluster's limit is halved; one document still over is Rejected
    with the reason and the others stored."""
    async with ElasticsearchPeer(max_content_length=4000) as small:
        records = json_records(12)
        big = Record(records[5].event_id, records[5].timestamp_us, '{"pad":"' + "x" * 5000 + '"}')
        records[5] = big
        result = await send_once(small, records, secret=None, gzip=False)
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [5]
    assert "413" in result.by_index[5]
    assert sorted(small.documents(STREAM)) == sorted(r.event_id for r in records if r is not big)


async def test_mixed_item_results_resend_only_what_the_cluster_asked_again(
    peer: ElasticsearchPeer,
) -> None:
    """429 on one document, 400 on another: RetryLater; the same batch again sends only the
    429 one, then the batch is Rejected for the 400 one alone, with the cluster's reason."""
    records = json_records(6)
    busy, bad = records[1].event_id, records[4].event_id
    peer.faults.item_faults = {busy: [429], bad: [400]}
    sender = transport(peer)
    try:
        first = await sender.send(records)
        assert isinstance(first, RetryLater)
        assert "1 of 6" in first.reason
        assert "es_rejected_execution_exception" in first.reason
        second = await sender.send(records)
    finally:
        await sender.aclose()
    assert isinstance(second, Rejected)
    assert list(second.by_index) == [4]
    assert "mapper_parsing_exception" in second.by_index[4]
    assert [r.documents for r in peer.requests] == [6, 1]
    assert b'"_id":"' + busy.encode() + b'"' in peer.requests[1].body
    assert sorted(peer.documents(STREAM)) == sorted(
        r.event_id for r in records if r.event_id != bad
    )


async def test_a_new_transport_resends_everything_and_duplicates_count_as_stored(
    peer: ElasticsearchPeer,
) -> None:
    """After a restart (a new transport) the whole batch goes again; what was stored is
    answered 409 and nothing is stored twice."""
    records = json_records(4)
    peer.faults.item_faults = {records[2].event_id: [503]}
    assert isinstance(await send_once(peer, records), RetryLater)
    assert await send_once(peer, records) == Delivered()
    assert [r.documents for r in peer.requests] == [4, 4]
    assert len(peer.documents(STREAM)) == 4
    assert peer.document_count == 4


async def test_an_injected_conflict_counts_as_already_stored(peer: ElasticsearchPeer) -> None:
    """A 409 version conflict on `create` is a document stored by an earlier attempt."""
    records = json_records(3)
    peer.faults.item_faults = {records[0].event_id: [409]}
    assert await send_once(peer, records) == Delivered()


async def test_a_pipeline_is_passed_and_a_missing_one_is_misconfigured(
    peer: ElasticsearchPeer,
) -> None:
    """`pipeline` travels as a query parameter; one the cluster lacks stops the
    destination rather than dead-lettering every document."""
    assert await send_once(peer, json_records(2), pipeline="xavyo@custom") == Delivered()
    assert peer.requests[-1].query["pipeline"] == "xavyo@custom"
    result = await send_once(peer, json_records(2, seed=3), pipeline="missing")
    assert isinstance(result, Misconfigured)
    assert "pipeline with id [missing] does not exist" in result.reason


async def test_index_op_type_against_a_data_stream_is_misconfigured(
    peer: ElasticsearchPeer,
) -> None:
    """A data stream takes only `create`: op_type `index` is a settings error."""
    result = await send_once(peer, json_records(2), op_type="index")
    assert isinstance(result, Misconfigured)
    assert "op_type of create" in result.reason


async def test_require_data_stream_refuses_a_plain_index(peer: ElasticsearchPeer) -> None:
    """require_data_stream=true sends the parameter; a plain index target is refused."""
    result = await send_once(peer, json_records(2), index="audit", require_data_stream=True)
    assert isinstance(result, Misconfigured)
    assert peer.requests[-1].query["require_data_stream"] == "true"


async def test_a_missing_index_without_auto_create_is_misconfigured() -> None:
    """index_not_found_exception (404 per item) stops the destination."""
    async with ElasticsearchPeer(auto_create=False) as strict:
        result = await send_once(strict, json_records(2), secret=None, index="audit")
    assert isinstance(result, Misconfigured)
    assert "index_not_found_exception" in result.reason


async def test_a_document_that_does_not_fit_the_mapping_is_rejected_alone(
    peer: ElasticsearchPeer,
) -> None:
    """A field whose type conflicts with the index mapping rejects that document only."""
    records = json_records(3)
    odd = orjson.loads(records[1].text)
    odd["severity"] = {"nested": True}
    records[1] = Record(records[1].event_id, records[1].timestamp_us, orjson.dumps(odd).decode())
    result = await send_once(peer, records)
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [1]
    assert "document_parsing_exception" in result.by_index[1]
    assert len(peer.documents(STREAM)) == 2


async def test_whole_request_429_honours_retry_after_then_recovers(
    peer: ElasticsearchPeer,
) -> None:
    """429 with Retry-After is RetryLater with that delay; the next send delivers."""
    peer.faults.status = [429]
    peer.faults.retry_after = "3"
    sender = transport(peer)
    records = json_records(3)
    try:
        first = await sender.send(records)
        assert isinstance(first, RetryLater)
        assert first.after_s == 3.0
        assert await sender.send(records) == Delivered()
    finally:
        await sender.aclose()
    assert len(peer.documents(STREAM)) == 3


async def test_https_with_the_ca_file_delivers(tls_files: TlsFiles) -> None:
    """Over HTTPS with the test CA the batch is stored (production mode)."""
    async with ElasticsearchPeer(api_keys={KEY_ID: KEY}, tls=tls_files) as server:
        cfg = config(server.url, development=False, ca_file=str(tls_files.ca_file))
        sender = ElasticsearchTransport(cfg, secret=API_KEY)
        try:
            assert await sender.check() == Delivered()
            assert await sender.send(json_records(3)) == Delivered()
        finally:
            await sender.aclose()
        assert len(server.documents(STREAM)) == 3


async def test_https_with_an_unknown_ca_is_misconfigured(tls_files: TlsFiles) -> None:
    """A certificate that does not verify is a configuration error naming TLS."""
    async with ElasticsearchPeer(tls=tls_files) as server:
        sender = ElasticsearchTransport(config(server.url, development=False), secret=None)
        try:
            result = await sender.send(json_records(1))
        finally:
            await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "certificate" in result.reason


async def test_the_body_decompresses_to_what_was_encoded(peer: ElasticsearchPeer) -> None:
    """The gzip body the peer read is the NDJSON of action and source lines, alternating."""
    records = json_records(2)
    assert await send_once(peer, records) == Delivered()
    lines = peer.requests[0].body.decode().splitlines()
    assert [orjson.loads(line) for line in lines[::2]] == [
        {"create": {"_id": r.event_id}} for r in records
    ]
    assert [orjson.loads(line) for line in lines[1::2]] == [expected_source(r) for r in records]
