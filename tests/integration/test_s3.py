"""The S3 transport, and the worker delivering through it, against a real S3 API server
(moto in server mode, checking every request's signature); objects read back with boto3."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from s3_archive import DEV, KEYS, add_s3, archived_ids, lines_of, stored, worker
from xavyo_siem import destinations as manage
from xavyo_siem.delivery import (
    Delivered,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
    S3Config,
    S3Credentials,
    S3Transport,
    validate_destination,
)
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import AuditEvent, ExportFormat, SiemDestination
from xavyo_siem.runtime import test_destination as destination_test
from xavyo_siem.sample import generate_events
from xavyo_siem.store.state import read_health, read_state

from peers.s3_server import AccessKey, MotoS3


@pytest.fixture
def moto() -> Iterator[MotoS3]:
    """moto's S3 on a free loopback port, with an access key and a bucket of its own."""
    with MotoS3() as server:
        yield server


def config_for(moto: MotoS3, prefix: str = "audit", **options: Any) -> S3Config:
    config = validate_destination(
        "s3",
        f"s3://{moto.bucket}/{prefix}",
        {"endpoint_url": moto.url, **options},
        development=True,
    )
    assert isinstance(config, S3Config)
    return config


def transport_for(
    moto: MotoS3, *, key: AccessKey | None = None, tenant: UUID | None = None, **options: Any
) -> S3Transport:
    access = key or moto.key
    assert access is not None
    return S3Transport(
        config_for(moto, **options),
        credentials=S3Credentials(access.access_key_id, access.secret_access_key),
        tenant_id=tenant or uuid4(),
        event_is_json=True,
        development=True,
    )


def json_records(events: list[AuditEvent]) -> list[Record]:
    return [Record.of(event, orjson.dumps(event.to_dict()).decode()) for event in events]


# -- the transport ------------------------------------------------------------------------


async def test_a_batch_is_one_gzip_ndjson_object_that_boto3_reads_back(moto: MotoS3) -> None:
    """The object holds the batch's events, in order, as JSON lines; its key is the batch's
    span under the tenant's hour; its SHA-256 is in the result and kept by S3."""
    events = [replace(e, timestamp=e.timestamp.replace(hour=13)) for e in generate_events(40, 1)]
    tenant = events[0].tenant_id
    sender = transport_for(moto, tenant=tenant)
    try:
        result = await sender.send_named(json_records(events), name="812.4400-812.4440")
    finally:
        await sender.aclose()
    (key,) = moto.object_keys()
    day = events[0].timestamp
    assert key == (
        f"audit/tenant={tenant}/year={day.year}/month={day.month:02d}/day={day.day:02d}/"
        "hour=13/812.4400-812.4440.ndjson.gz"
    )
    assert lines_of(moto, key) == [orjson.loads(orjson.dumps(e.to_dict())) for e in events]
    body = moto.read(key)
    digest = hashlib.sha256(body).hexdigest()
    assert isinstance(result, Delivered)
    assert f"s3://{moto.bucket}/{key}" in result.detail
    assert digest in result.detail
    assert sender.last_objects == [(key, digest)]
    head = moto.client().head_object(Bucket=moto.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert head["ContentType"] == "application/gzip"


async def test_sending_the_same_batch_again_overwrites_its_objects(moto: MotoS3) -> None:
    """A resend writes the same keys with the same bytes: no second copy appears."""
    records = json_records(list(generate_events(300, 1, seed=4)))
    tenant = uuid4()
    for _ in range(2):
        sender = transport_for(moto, tenant=tenant)
        assert isinstance(await sender.send_named(records, name="1.0-1.300"), Delivered)
        await sender.aclose()
        if _ == 0:
            first = {key: moto.read(key) for key in moto.object_keys()}
    assert {key: moto.read(key) for key in moto.object_keys()} == first
    assert sorted(archived_ids(moto)) == sorted(r.event_id for r in records)


async def test_a_wrong_secret_or_an_unknown_key_is_misconfigured(moto: MotoS3) -> None:
    """The server's signature check refuses both; the probe and a send say so, nothing is
    written, and the secret is not quoted."""
    assert moto.key is not None
    records = json_records(list(generate_events(3, 1)))
    wrong = AccessKey(moto.key.access_key_id, "wrong-secret-value-1")
    unknown = AccessKey("AKIAUNKNOWNKEY000001", "wrong-secret-value-1")
    for key in (wrong, unknown):
        sender = transport_for(moto, key=key)
        try:
            probe, sent = await sender.check(), await sender.send(records)
        finally:
            await sender.aclose()
        for result in (probe, sent):
            assert isinstance(result, Misconfigured), result
            assert "access key id or secret access key is not accepted" in result.reason
            assert "wrong-secret-value-1" not in result.reason
    assert moto.object_keys() == []


async def test_a_missing_bucket_is_misconfigured(moto: MotoS3) -> None:
    """A bucket that does not exist fails the probe and the send, naming the bucket."""
    config = replace(
        config_for(moto), bucket="no-such-bucket", base_url=f"{moto.url}/no-such-bucket"
    )
    assert moto.key is not None
    sender = S3Transport(
        config,
        credentials=S3Credentials(moto.key.access_key_id, moto.key.secret_access_key),
        tenant_id=uuid4(),
        event_is_json=True,
        development=True,
    )
    try:
        for result in (
            await sender.check(),
            await sender.send(json_records(list(generate_events(1, 1)))),
        ):
            assert isinstance(result, Misconfigured)
            assert "bucket does not exist" in result.reason
    finally:
        await sender.aclose()


async def test_a_server_that_is_down_is_retry_later_and_the_resend_lands(moto: MotoS3) -> None:
    """With the server stopped the batch is RetryLater; once it is back the same batch is
    written, once."""
    records = json_records(list(generate_events(20, 1, seed=9)))
    sender = transport_for(moto)
    try:
        moto.stop()
        result = await sender.send_named(records, name="5.0-5.20")
        assert isinstance(result, RetryLater)
        assert "cannot connect" in result.reason
        moto.start()
        assert isinstance(await sender.send_named(records, name="5.0-5.20"), Delivered)
    finally:
        await sender.aclose()
    assert sorted(archived_ids(moto)) == sorted(r.event_id for r in records)


async def test_the_egress_guard_refuses_a_loopback_server_at_connect_time(moto: MotoS3) -> None:
    """Without loopback on the allow-list the transport never connects: Misconfigured."""
    assert moto.key is not None
    sender = S3Transport(
        config_for(moto, endpoint_url=f"http://localhost:{moto.port}"),
        credentials=S3Credentials(moto.key.access_key_id, moto.key.secret_access_key),
        tenant_id=uuid4(),
        event_is_json=True,
        development=True,
        egress=EgressGuard(),
    )
    try:
        result = await sender.send(json_records(list(generate_events(1, 1))))
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert "XAVYO_SIEM_EGRESS_ALLOW" in result.reason
    assert moto.object_keys() == []


# -- through the worker -------------------------------------------------------------------


def spans(moto: MotoS3) -> list[tuple[str, str]]:
    """The distinct batch spans of the objects' names, in store order."""
    names = {
        key.rsplit("/", 1)[-1].split(".ndjson")[0].split("-p")[0] for key in moto.object_keys()
    }
    parsed = [tuple(name.split("-")) for name in names]
    return sorted(parsed, key=lambda span: tuple(int(p) for p in span[1].split(".")))  # type: ignore[misc]


async def test_the_worker_archives_every_event_once_in_objects_named_by_cursor(
    engine: Engine, moto: MotoS3
) -> None:
    """Drained, the bucket holds every stored event exactly once, in objects of at most
    `batch_max_events`; the objects' spans chain from the start to the cursor."""
    events = stored(engine, 2500, seed=21)
    destination = add_s3(engine, events[0].tenant_id, moto, batch_max_events="1000")
    assert await asyncio.wait_for(worker(engine).run(drain=True), 120) == []
    assert sorted(archived_ids(moto)) == sorted(str(e.event_id) for e in events)
    assert all(len(lines_of(moto, key)) <= 1000 for key in moto.object_keys())
    chain = spans(moto)
    assert chain[0][0] == "0.0"
    assert all(after == chain[n][1] for n, (after, _) in enumerate(chain[1:]))
    with engine.connect() as conn:
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert state is not None
    assert state.cursor.encode() == chain[-1][1]


async def test_bad_credentials_stop_the_worker_writing_and_keep_the_cursor(
    engine: Engine, moto: MotoS3
) -> None:
    """A wrong secret: health says misconfigured with a clear reason, nothing is written,
    the cursor stays at the start."""
    events = stored(engine, 50, seed=22)
    assert moto.key is not None
    secret = AccessKey(moto.key.access_key_id, "not-the-secret-1").secret()
    destination = add_s3(engine, events[0].tenant_id, moto, secret=secret)
    running = worker(engine)
    task = asyncio.create_task(running.run())
    try:
        for _ in range(600):
            await asyncio.sleep(0.05)
            with engine.connect() as conn:
                health = read_health(
                    conn, tenant_id=destination.tenant_id, destination_id=destination.id
                )
            if health is not None and health.failures:
                break
    finally:
        running.stop()
        await asyncio.wait_for(task, 30)
    assert health is not None
    assert health.last_error is not None
    assert "access key id or secret access key is not accepted" in health.last_error
    with engine.connect() as conn:
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert state is not None
    assert state.cursor.seq == 0
    assert moto.object_keys() == []


async def test_destination_test_shows_each_step_and_the_object_written(
    engine: Engine, moto: MotoS3
) -> None:
    """`destination test` resolves, connects, authenticates and writes the test event; the
    deliver step names the object and its SHA-256."""
    tenant = uuid4()
    destination = add_s3(engine, tenant, moto)
    steps = await destination_test(engine, destination, settings=DEV, keyring=KEYS)
    assert [(s.step, s.ok) for s in steps] == [
        ("configuration", True),
        ("resolve", True),
        ("connect", True),
        ("authenticate", True),
        ("deliver", True),
    ]
    (key,) = moto.object_keys()
    assert f"s3://{moto.bucket}/{key}" in steps[-1].detail
    assert hashlib.sha256(moto.read(key)).hexdigest() in steps[-1].detail
    assert lines_of(moto, key)[0]["event_type"] == "XAVYO_SIEM_TEST"


async def test_destination_test_with_a_wrong_secret_fails_at_authenticate(
    engine: Engine, moto: MotoS3
) -> None:
    """A refused signature stops the test at `authenticate`, with the server's reason."""
    assert moto.key is not None
    secret = AccessKey(moto.key.access_key_id, "not-the-secret-2").secret()
    destination = add_s3(engine, uuid4(), moto, secret=secret)
    steps = await destination_test(engine, destination, settings=DEV, keyring=KEYS)
    assert [(s.step, s.ok) for s in steps][-1] == ("authenticate", False)
    assert "SignatureDoesNotMatch" in steps[-1].detail


def test_another_bucket_or_server_needs_the_secret_again(engine: Engine, moto: MotoS3) -> None:
    """The access key stays bound to its bucket and server: moving either without the
    secret is refused naming the field; a new prefix is not."""
    destination = add_s3(engine, uuid4(), moto)

    def update(changes: dict[str, Any], secret: str | None = None) -> SiemDestination:
        return manage.update_destination(
            engine,
            tenant_id=destination.tenant_id,
            destination_id=destination.id,
            changes=changes,
            secret=secret,
            keyring=KEYS,
            development=True,
            egress=EgressGuard.from_settings(DEV),
        )

    with pytest.raises(InvalidDestination) as bucket:
        update({"endpoint": "s3://another-bucket/audit"})
    assert bucket.value.field == "endpoint"
    assert "needs the secret again" in bucket.value.reason
    with pytest.raises(InvalidDestination) as server:
        update({"options": {"endpoint_url": f"http://localhost:{moto.port}"}})
    assert server.value.field == "options.endpoint_url"
    assert update({"endpoint": f"s3://{moto.bucket}/elsewhere"}).endpoint.endswith("/elsewhere")
    assert moto.key is not None
    moved = update({"endpoint": "s3://another-bucket/audit"}, secret=moto.key.secret())
    assert moved.endpoint == "s3://another-bucket/audit"


async def test_a_security_lake_source_gets_parquet_per_class_that_pyarrow_reads(
    moto: MotoS3,
) -> None:
    """With layout=security_lake the batch lands as Parquet, one object per OCSF class,
    under the source's partitions; a record that is no OCSF event is refused alone."""
    base = int(datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp() * 1000)
    texts = [
        orjson.dumps({"class_uid": 3002 + n % 2, "time": base + n, "user": {"uid": str(n)}})
        for n in range(10)
    ]
    records = [Record(str(uuid4()), (base + n) * 1000, t.decode()) for n, t in enumerate(texts)]
    records.append(Record(str(uuid4()), base * 1000, "CEF:0|not|ocsf"))
    tenant = uuid4()
    sender = transport_for(
        moto, tenant=tenant, prefix="ext/xavyo/1.0", layout="security_lake", account_id="1234"
    )
    try:
        result = await sender.send_named(records, name="3.0-3.11")
    finally:
        await sender.aclose()
    assert isinstance(result, Rejected)
    assert list(result.by_index) == [10]
    keys = moto.object_keys()
    prefix = "ext/xavyo/1.0/region=us-east-1/accountId=1234/eventDay=20260105"
    assert keys == [
        f"{prefix}/{tenant}_3002_3.0-3.11.parquet",
        f"{prefix}/{tenant}_3003_3.0-3.11.parquet",
    ]
    for key, parity in zip(keys, (0, 1), strict=True):
        rows = pq.read_table(io.BytesIO(moto.read(key))).to_pylist()
        assert [row["user"]["uid"] for row in rows] == [str(n) for n in range(parity, 10, 2)]
        head = moto.client().head_object(Bucket=moto.bucket, Key=key)
        assert head["ContentType"] == "application/vnd.apache.parquet"


async def test_the_worker_feeds_a_security_lake_source_every_event_as_ocsf_parquet(
    engine: Engine, moto: MotoS3
) -> None:
    """Format ocsf with layout=security_lake: drained, the Parquet objects hold every
    stored event once, each object one OCSF class."""
    events = stored(engine, 1500, seed=23)
    add_s3(
        engine,
        events[0].tenant_id,
        moto,
        export_format=ExportFormat.OCSF,
        prefix="ext/xavyo/1.0",
        layout="security_lake",
        account_id="123456789012",
        batch_max_events="1000",
    )
    assert await asyncio.wait_for(worker(engine).run(drain=True), 120) == []
    uids: list[str] = []
    for key in moto.object_keys():
        assert "/region=us-east-1/accountId=123456789012/eventDay=" in key
        rows = pq.read_table(io.BytesIO(moto.read(key))).to_pylist()
        assert len({row["class_uid"] for row in rows}) == 1
        assert [row["time"] for row in rows] == sorted(row["time"] for row in rows)
        uids += [row["metadata"]["uid"] for row in rows]
    assert sorted(uids) == sorted(str(e.event_id) for e in events)
