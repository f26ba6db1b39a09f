"""The sentinel transport against contract peers of Microsoft Entra ID and the Logs Ingestion
API (tests/peers/azure_peer.py), with Microsoft's own Python client as the oracle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.identity.aio import ClientSecretCredential
from azure.monitor.ingestion.aio import LogsIngestionClient

from xavyo_siem.delivery import (
    SENTINEL_FORMATS,
    SentinelConfig,
    SentinelTransport,
    validate_destination,
)
from xavyo_siem.delivery.base import Delivered, DeliveryResult, Misconfigured, Record, Rejected
from xavyo_siem.delivery.sentinel_protocol import time_generated
from xavyo_siem.format import make_formatter, to_json
from xavyo_siem.sample import generate_events

from peers.azure_peer import AzurePeer, IngestionRequest, TlsFiles, make_tls


def json_records(count: int, seed: int = 1) -> list[Record]:
    """`count` sample events in the `json` format."""
    return [Record.of(event, to_json(event)) for event in generate_events(count, 2, seed=seed)]


def expected(records: list[Record]) -> list[dict[str, Any]]:
    """What the stream should receive for `records`: each object with TimeGenerated first,
    the event's own time in the six-digit form."""
    return [
        {"TimeGenerated": time_generated(r.timestamp_us), **orjson.loads(r.text)} for r in records
    ]


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` sorted by event id: arrays in flight at once may arrive in either order."""
    return sorted(rows, key=lambda row: str(row.get("event_id")))


def config(peer: AzurePeer, **options: Any) -> SentinelConfig:
    """A validated config for `peer`, as the API would build it."""
    result = validate_destination(
        "sentinel", peer.endpoint, peer.options(**options), development=False
    )
    assert isinstance(result, SentinelConfig)
    return result


def transport(peer: AzurePeer, *, secret: str | None = None, **options: Any) -> SentinelTransport:
    """A transport to `peer` with its client secret (or `secret`)."""
    return SentinelTransport(config(peer, **options), client_secret=secret or peer.client_secret)


async def send_once(peer: AzurePeer, records: list[Record], **options: Any) -> DeliveryResult:
    """Send `records` through a fresh transport to `peer`, then close it."""
    sender = transport(peer, **options)
    try:
        return await sender.send(records)
    finally:
        await sender.aclose()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for localhost."""
    return make_tls(tmp_path_factory.mktemp("azure-tls"))


@pytest.fixture
async def peer(tls_files: TlsFiles) -> AsyncIterator[AzurePeer]:
    """The token and ingestion endpoints over HTTPS, on two ports (two origins)."""
    async with AzurePeer(tls=tls_files) as server:
        yield server


async def test_a_batch_arrives_in_order_as_one_gzip_json_array(peer: AzurePeer) -> None:
    """Every record arrives once, in order, with TimeGenerated from the event; one request,
    gzip, bearer token, JSON, API version 2023-01-01, at the rule's stream."""
    records = json_records(200)
    assert await send_once(peer, records) == Delivered()
    assert peer.received == expected(records)
    [request] = peer.requests
    assert request.path == f"/dataCollectionRules/{peer.dcr_immutable_id}/streams/{peer.stream}"
    assert request.query == {"api-version": "2023-01-01"}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Authorization"].startswith("Bearer eyJ0eXAi.")
    assert len(peer.token_requests) == 1
    assert peer.token_requests[0] == {
        "client_id": peer.client_id,
        "client_secret": peer.client_secret,
        "grant_type": "client_credentials",
        "scope": "https://monitor.azure.com/.default",
    }


async def test_without_gzip_the_array_is_sent_plain(peer: AzurePeer) -> None:
    """With `gzip` off the body is the plain JSON array, accepted the same."""
    records = json_records(20)
    assert await send_once(peer, records, gzip=False) == Delivered()
    assert "Content-Encoding" not in peer.requests[0].headers
    assert peer.received == expected(records)


async def test_the_token_is_fetched_once_and_reused(peer: AzurePeer) -> None:
    """Several batches through one transport use one token: it is cached, not asked per call."""
    sender = transport(peer)
    try:
        for seed in range(3):
            assert await sender.send(json_records(30, seed=seed)) == Delivered()
    finally:
        await sender.aclose()
    assert len(peer.token_requests) == 1
    assert len({r.headers["Authorization"] for r in peer.requests}) == 1


async def test_the_token_is_renewed_before_it_expires(peer: AzurePeer) -> None:
    """Five minutes before `expires_in` runs out a new token is fetched before the next call."""
    now = [1000.0]
    sender = SentinelTransport(
        config(peer), client_secret=peer.client_secret, monotonic=lambda: now[0]
    )
    try:
        assert await sender.send(json_records(5)) == Delivered()
        now[0] += peer.token_lifetime_s - 301
        assert await sender.send(json_records(5, seed=2)) == Delivered()
        assert len(peer.token_requests) == 1
        now[0] += 2
        assert await sender.send(json_records(5, seed=3)) == Delivered()
    finally:
        await sender.aclose()
    assert len(peer.token_requests) == 2
    first, _, third = (r.headers["Authorization"] for r in peer.requests)
    assert first != third


async def test_a_large_batch_is_cut_into_arrays_under_one_megabyte(peer: AzurePeer) -> None:
    """A batch of about 3 MB goes as several arrays, each at most 1,000,000 bytes before
    gzip; every record arrives once."""
    records = [
        Record(r.event_id, r.timestamp_us, r.text[:-1] + ',"pad":"' + "x" * 1500 + '"}')
        for r in json_records(1500)
    ]
    assert await send_once(peer, records) == Delivered()
    assert len(peer.requests) >= 3
    for request in peer.requests:
        assert request.records is not None
        assert len(orjson.dumps(request.records)) <= 1_000_000
    assert by_id(peer.received) == by_id(expected(records))


async def test_a_record_over_the_call_limit_is_rejected_before_sending(peer: AzurePeer) -> None:
    """A single record that cannot fit in one call is rejected with the reason; the rest go."""
    records = json_records(3)
    giant = Record("giant", 0, '{"event_id":"giant","pad":"' + "x" * 1_000_000 + '"}')
    result = await send_once(peer, [records[0], giant, *records[1:]])
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [1]
    assert "over the 1,000,000 bytes" in result.by_index[1]
    assert peer.received == expected(records)


async def test_text_records_are_rejected_naming_the_formats(peer: AzurePeer) -> None:
    """A CEF line is no stream row: it is rejected, naming the formats that are."""
    records = json_records(2)
    result = await send_once(peer, [records[0], Record("c", 0, "CEF:0|x|y|1|a|b|3|"), records[1]])
    assert isinstance(result, Rejected)
    assert "takes the formats ecs, json, ocsf" in result.by_index[1]
    assert peer.received == expected(records)


async def test_a_record_the_api_refuses_is_rejected_alone(peer: AzurePeer) -> None:
    """A 400 about the data halves the request until the bad record is alone; it is rejected
    with the API's answer and every other record is accepted."""
    records = json_records(64)
    peer.faults.bad_event_ids = {records[37].event_id}
    result = await send_once(peer, records)
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [37]
    assert "HTTP 400 (InvalidPayload: Record with event_id" in result.by_index[37]
    assert by_id(peer.received) == by_id(expected(records[:37] + records[38:]))


@pytest.mark.parametrize(
    ("peer_change", "in_reason"),
    [
        ({"client_secret": "another-secret"}, "invalid_client: AADSTS7000215"),
        ({"client_id": "00000000-0000-4000-8000-00000000000f"}, "unauthorized_client"),
        ({"tenant": "00000000-0000-4000-8000-0000000000aa"}, "AADSTS90002"),
    ],
)
async def test_refused_client_credentials_are_misconfigured(
    peer: AzurePeer, peer_change: dict[str, str], in_reason: str
) -> None:
    """A secret, client id or tenant the directory does not know is Misconfigured with
    Entra's error, the secret never quoted, and nothing is posted to the stream."""
    sender = transport(peer)
    for name, value in peer_change.items():
        setattr(peer, name, value)
    try:
        result = await sender.send(json_records(3))
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert in_reason in result.reason
    assert result.reason.startswith("the token endpoint")
    assert "Qx8Q~" not in result.reason
    assert peer.requests == []


@pytest.mark.parametrize(
    ("options", "in_reason"),
    [
        ({"stream": "Custom-Other_CL"}, "InvalidStream"),
        ({"dcr_immutable_id": "dcr-" + "f" * 32}, "NotFound"),
    ],
)
async def test_an_unknown_stream_or_rule_is_misconfigured_not_a_bad_record(
    peer: AzurePeer, options: dict[str, str], in_reason: str
) -> None:
    """A stream or rule the service does not know refuses every record: it is
    Misconfigured, and no record is rejected as bad data."""
    result = await send_once(peer, json_records(8), **options)
    assert isinstance(result, Misconfigured)
    assert in_reason in result.reason
    assert len(peer.requests) == 1


async def test_a_forbidden_answer_is_retried_once_with_a_new_token(peer: AzurePeer) -> None:
    """One 403 (a role still propagating) fetches a new token and sends again: delivered."""
    peer.faults.forbid = 1
    records = json_records(10)
    assert await send_once(peer, records) == Delivered()
    assert [r.status for r in peer.requests] == [403, 204]
    assert len(peer.token_requests) == 2
    assert peer.received == expected(records)


async def test_a_lasting_forbidden_answer_is_misconfigured_naming_the_role(
    peer: AzurePeer,
) -> None:
    """A 403 that stays after a new token is Misconfigured, naming the role to assign; the
    request is not sent a third time."""
    peer.faults.forbid = 5
    result = await send_once(peer, json_records(10))
    assert isinstance(result, Misconfigured)
    assert "Monitoring Metrics Publisher" in result.reason
    assert [r.status for r in peer.requests] == [403, 403]


async def test_check_fetches_a_token_and_reaches_the_ingestion_endpoint(peer: AzurePeer) -> None:
    """`check` asks for a token and reaches the ingestion endpoint; no event is sent."""
    sender = transport(peer)
    try:
        assert await sender.check() == Delivered()
    finally:
        await sender.aclose()
    assert len(peer.token_requests) == 1
    assert peer.received == []


async def test_check_names_the_token_endpoint_when_it_refuses(peer: AzurePeer) -> None:
    """A refused secret makes `check` Misconfigured, its reason starting with the token
    endpoint (what `destination test` shows as the token step)."""
    sender = transport(peer, secret="Qx8Q~wrong-secret-000000")
    try:
        result = await sender.check()
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert result.reason.startswith("the token endpoint (Microsoft Entra ID)")
    assert "wrong-secret" not in result.reason


async def test_an_unknown_ca_is_misconfigured(tmp_path: Path) -> None:
    """A peer whose certificate the configured CA did not sign is Misconfigured (TLS)."""
    (tmp_path / "peer").mkdir()
    (tmp_path / "other").mkdir()
    other = make_tls(tmp_path / "other")
    async with AzurePeer(tls=make_tls(tmp_path / "peer")) as server:
        sender = SentinelTransport(
            config(server, ca_file=str(other.ca_file)), client_secret=server.client_secret
        )
        try:
            result = await sender.send(json_records(2))
        finally:
            await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "does not verify" in result.reason


# --- The official client as the oracle --------------------------------------------------


async def upload_with_the_official_client(
    peer: AzurePeer, tls: TlsFiles, logs: list[dict[str, Any]]
) -> list[IngestionRequest]:
    """Upload `logs` with azure-monitor-ingestion and azure-identity, pointed at the local
    authority (no instance discovery, nothing leaves the machine); the requests it made."""
    before = len(peer.requests)
    credential = ClientSecretCredential(
        peer.tenant,
        peer.client_id,
        peer.client_secret,
        authority=peer.authority_host,
        disable_instance_discovery=True,
        connection_verify=str(tls.ca_file),
    )
    client = LogsIngestionClient(peer.endpoint, credential, connection_verify=str(tls.ca_file))
    async with client, credential:
        await client.upload(peer.dcr_immutable_id, peer.stream, logs)
    return peer.requests[before:]


def _shape(request: IngestionRequest) -> dict[str, Any]:
    """What must match between two clients' requests: path, query, the headers that carry
    meaning (auth scheme, type, encoding), the body once gunzipped and parsed."""
    return {
        "path": request.path,
        "query": request.query,
        "auth": request.headers["Authorization"].split(" ")[0],
        "content_type": request.headers["Content-Type"],
        "encoding": request.headers.get("Content-Encoding"),
        "records": request.records,
        "status": request.status,
    }


async def test_our_requests_match_the_official_clients(
    peer: AzurePeer, tls_files: TlsFiles
) -> None:
    """The same records, uploaded by Microsoft's client and by the transport, make the same
    request: URL, query, auth scheme, content type, gzip and body; the token requests carry
    the same form."""
    records = json_records(300)
    ours = await send_once(peer, records)
    assert ours == Delivered()
    [our_request] = peer.requests
    theirs = await upload_with_the_official_client(peer, tls_files, expected(records))
    assert [_shape(r) for r in theirs] == [_shape(our_request)]
    assert peer.token_requests[0] == peer.token_requests[1]


async def test_a_batch_over_one_megabyte_reaches_the_stream_as_the_official_clients(
    peer: AzurePeer, tls_files: TlsFiles
) -> None:
    """Over 1 MB both clients cut the batch into several arrays and the stream receives the
    same rows in the same order (ours with one array in flight at a time, as theirs).

    The official client counts each item but not the separators between them, so its arrays
    may pass 1 MiB uncompressed by a few bytes per item: the peer checks the size on the
    wire only here, as the service's 413 ("maximum allowed content length") reads. Ours stay
    at 1,000,000 bytes before gzip, which every reading of the limit allows.
    """
    peer.limit_uncompressed = False
    records = [
        Record(r.event_id, r.timestamp_us, r.text[:-1] + ',"pad":"' + "y" * 900 + '"}')
        for r in json_records(2500, seed=9)
    ]
    assert await send_once(peer, records, max_requests_in_flight=1) == Delivered()
    ours = list(peer.received)
    ours_requests = len(peer.requests)
    peer.received.clear()
    theirs = await upload_with_the_official_client(peer, tls_files, expected(records))
    assert len(theirs) >= 2
    assert ours_requests >= len(theirs)
    assert ours == peer.received == expected(records)
    for request in peer.requests[:ours_requests]:
        assert len(orjson.dumps(request.records)) <= 1_000_000


async def test_arrays_in_flight_are_bounded_and_all_arrive(peer: AzurePeer) -> None:
    """With several arrays per batch, at most `max_requests_in_flight` are on the wire at
    once, and every record arrives exactly once."""
    in_flight = [0]
    most = [0]
    original = peer._ingest

    async def counting(*args: Any) -> Any:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        try:
            await asyncio.sleep(0.02)
            return await original(*args)
        finally:
            in_flight[0] -= 1

    peer._ingest = counting  # type: ignore[method-assign]
    records = json_records(400)
    for limit in (1, 3):
        peer.received.clear()
        most[0] = 0
        assert (
            await send_once(peer, records, batch_max_bytes=30_000, max_requests_in_flight=limit)
            == Delivered()
        )
        assert most[0] == limit
        assert sorted(row["event_id"] for row in peer.received) == sorted(
            r.event_id for r in records
        )


@pytest.mark.parametrize("fmt", sorted(SENTINEL_FORMATS))
async def test_every_json_object_format_arrives_as_its_object(peer: AzurePeer, fmt: str) -> None:
    """Each format a sentinel destination takes (json, and OCSF and ECS where this version
    has them) arrives as the formatter's object plus TimeGenerated, one row per event."""
    formatter = make_formatter(fmt)
    records = [Record.of(e, formatter(e)) for e in generate_events(40, 2, seed=5)]
    assert await send_once(peer, records) == Delivered()
    assert by_id(peer.received) == by_id(expected(records))
    assert len(peer.received) == len(records)
