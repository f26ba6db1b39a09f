"""The official clients as oracles: elasticsearch-py's and opensearch-py's bulk helpers send
the same documents to the same contract peer, and their requests and the documents stored
are compared with ours."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from elasticsearch import helpers as es_helpers
from opensearchpy import OpenSearch
from opensearchpy import helpers as os_helpers

from bulk_records import API_KEY, KEY, KEY_ID, config, json_records
from xavyo_siem.delivery.base import Delivered, Record, Rejected, RetryLater
from xavyo_siem.delivery.elasticsearch import ElasticsearchTransport
from xavyo_siem.delivery.elasticsearch_bulk import iso_timestamp

from peers.elasticsearch_peer import BulkRequest, ElasticsearchPeer

INDEX = "logs-xavyo.audit-oracle"


def operations(request: BulkRequest) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(action, target, _id, source) of every document of a request, the target taken
    from the action line or else from the path."""
    lines = request.body.split(b"\n")
    assert lines[-1] == b""
    path_target = request.path.strip("/").split("/")[0]
    out = []
    for action_line, source_line in zip(lines[:-1:2], lines[1:-1:2], strict=True):
        ((action, meta),) = orjson.loads(action_line).items()
        target = meta.get("_index", path_target if path_target != "_bulk" else None)
        out.append((action, target, meta["_id"], orjson.loads(source_line)))
    return out


def oracle_actions(records: list[Record]) -> list[dict[str, Any]]:
    """The bulk helper actions for the documents we mean to store."""
    return [
        {
            "_op_type": "create",
            "_index": INDEX,
            "_id": record.event_id,
            "_source": {
                "@timestamp": iso_timestamp(record.timestamp_us),
                **orjson.loads(record.text),
            },
        }
        for record in records
    ]


async def ours(peer: ElasticsearchPeer, records: list[Record], secret: str) -> None:
    """Deliver `records` with our transport, as one batch."""
    sender = ElasticsearchTransport(config(peer.url, index=INDEX), secret=secret, development=True)
    try:
        assert await sender.send(records) == Delivered()
    finally:
        await sender.aclose()


async def test_elasticsearch_py_and_ours_send_and_store_the_same() -> None:
    """Same action, target, `_id` and source for every document, the same API key header,
    both NDJSON ending in a newline, and the same documents stored."""
    records = json_records(30, seed=7)
    async with (
        ElasticsearchPeer(api_keys={KEY_ID: KEY}) as theirs_peer,
        ElasticsearchPeer(api_keys={KEY_ID: KEY}) as ours_peer,
    ):
        client = Elasticsearch(theirs_peer.url, api_key=(KEY_ID, KEY))
        try:
            done, errors = await asyncio.to_thread(
                es_helpers.bulk, client, oracle_actions(records), chunk_size=500
            )
        finally:
            client.close()
        assert (done, errors) == (30, [])
        await ours(ours_peer, records, API_KEY)
        (theirs,) = theirs_peer.requests
        (mine,) = ours_peer.requests
        assert operations(mine) == operations(theirs)
        assert mine.headers["authorization"] == theirs.headers["authorization"]
        for request in (theirs, mine):
            assert "ndjson" in request.headers["content-type"]
            assert request.body.endswith(b"\n")
        assert ours_peer.documents(INDEX) == theirs_peer.documents(INDEX)


async def test_elasticsearch_py_sees_the_same_item_failures_we_classify() -> None:
    """With a 429 and a 400 planned, elasticsearch-py reports exactly those two documents
    failed with those statuses; we retry the first and reject the second."""
    records = json_records(5, seed=8)
    plan = {records[1].event_id: [429], records[3].event_id: [400]}
    async with (
        ElasticsearchPeer(api_keys={KEY_ID: KEY}) as theirs_peer,
        ElasticsearchPeer(api_keys={KEY_ID: KEY}) as ours_peer,
    ):
        theirs_peer.faults.item_faults = {k: list(v) for k, v in plan.items()}
        ours_peer.faults.item_faults = {k: list(v) for k, v in plan.items()}
        client = Elasticsearch(theirs_peer.url, api_key=(KEY_ID, KEY))
        try:
            _, errors = await asyncio.to_thread(
                es_helpers.bulk,
                client,
                oracle_actions(records),
                raise_on_error=False,
                max_retries=0,
            )
        finally:
            client.close()
        failed = {item["create"]["_id"]: item["create"]["status"] for item in errors}  # type: ignore[index]
        assert failed == {records[1].event_id: 429, records[3].event_id: 400}
        sender = ElasticsearchTransport(
            config(ours_peer.url, index=INDEX), secret=API_KEY, development=True
        )
        try:
            first = await sender.send(records)
            second = await sender.send(records)
        finally:
            await sender.aclose()
        assert isinstance(first, RetryLater)
        assert isinstance(second, Rejected)
        assert list(second.by_index) == [3]
        stored_by_them = set(theirs_peer.documents(INDEX))
        assert set(ours_peer.documents(INDEX)) == stored_by_them | {records[1].event_id}
        assert records[3].event_id not in stored_by_them


@pytest.mark.parametrize("gzip", [False, True])
async def test_opensearch_py_and_ours_send_and_store_the_same(gzip: bool) -> None:
    """opensearch-py with basic auth: same documents, same Authorization header, same
    stored state (gzip on our side or not)."""
    records = json_records(12, seed=9)
    users = {"xavyo": "p:ss word"}
    async with (
        ElasticsearchPeer(users=users) as theirs_peer,
        ElasticsearchPeer(users=users) as ours_peer,
    ):
        client = OpenSearch(
            hosts=[{"host": "127.0.0.1", "port": theirs_peer.port}],
            http_auth=("xavyo", "p:ss word"),
            use_ssl=False,
        )
        try:
            done, errors = await asyncio.to_thread(os_helpers.bulk, client, oracle_actions(records))
        finally:
            client.close()
        assert (done, errors) == (12, [])
        sender = ElasticsearchTransport(
            config(ours_peer.url, index=INDEX, gzip=gzip),
            secret='{"username": "xavyo", "password": "p:ss word"}',
            development=True,
        )
        try:
            assert await sender.send(records) == Delivered()
        finally:
            await sender.aclose()
        (theirs,) = theirs_peer.requests
        (mine,) = ours_peer.requests
        assert operations(mine) == operations(theirs)
        assert mine.headers["authorization"] == theirs.headers["authorization"]
        assert (
            mine.headers["authorization"]
            == "Basic " + base64.b64encode(b"xavyo:p:ss word").decode()
        )
        assert ours_peer.documents(INDEX) == theirs_peer.documents(INDEX)
