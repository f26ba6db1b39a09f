"""S3 archive benchmark: store → format → gzip NDJSON objects → a real S3 API server,
verified by reading every object back.

    .venv/bin/python benchmarks/bench_s3.py [--events 200000] [--batch 10000]
        [--backends sqlite,postgresql]

For each store backend: N events in the store, one S3 destination (JSON format, objects of
`--batch` events, no age wait), one `xavyo-siem run --drain` worker process; events/s from
its first delivery to its exit. The server is moto in server mode in its own process,
checking every request's AWS Signature Version 4; afterwards every object is read back
with boto3 and the distinct event ids counted.

Beside it, the usual client: boto3's `put_object` of the same number of gzip NDJSON
objects of `--batch` events, made from the same sample events in this process (no store,
no worker): the ceiling of one Python process writing to this server.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from bench_pipeline import drain, fill, store  # noqa: E402
from xavyo_siem import destinations as manage  # noqa: E402
from xavyo_siem.crypto import KeyRing, new_key_text  # noqa: E402
from xavyo_siem.destinations import DestinationSpec  # noqa: E402
from xavyo_siem.egress import EgressGuard  # noqa: E402
from xavyo_siem.model import DeliveryType, ExportFormat  # noqa: E402
from xavyo_siem.sample import generate_events  # noqa: E402
from xavyo_siem.store import make_engine  # noqa: E402

from peers.s3_server import MotoS3  # noqa: E402


def verified_ids(moto: MotoS3) -> tuple[int, int]:
    """(objects, distinct event ids) in the bucket, every object read back."""
    ids: set[str] = set()
    keys = moto.object_keys()
    for key in keys:
        for line in gzip.decompress(moto.read(key)).splitlines():
            ids.add(orjson.loads(line)["event_id"])
    return len(keys), len(ids)


def add_s3(url: str, tenant: uuid.UUID, keyring: KeyRing, moto: MotoS3, batch: int) -> None:
    """The S3 destination of the run: no rate limit (throughput is measured), no age wait."""
    assert moto.key is not None
    spec = DestinationSpec(
        name="bench-s3",
        delivery_type=DeliveryType.S3,
        format=ExportFormat.JSON,
        endpoint=f"s3://{moto.bucket}/bench",
        options={"start": "beginning", "endpoint_url": moto.url,
                 "batch_max_events": str(batch), "object_max_age_s": "0"},
        rate_limit=None,
    )  # fmt: skip
    engine = make_engine(url)
    manage.add_destination(
        engine, tenant_id=tenant, spec=spec, secret=moto.key.secret(), keyring=keyring,
        development=True, egress=EgressGuard(allow=("127.0.0.1/32", "localhost")),
    )  # fmt: skip
    engine.dispose()


def through_worker(
    args: argparse.Namespace, tmp: Path, keyfile: Path, keyring: KeyRing
) -> list[str]:
    rows = []
    for backend in args.backends.split(","):
        with store(backend, tmp) as url, MotoS3(in_process=False) as moto:
            assert moto.key is not None
            tenant = fill(url, args.events)
            add_s3(url, tenant, keyring, moto, args.batch)
            seconds, peak = drain(url, keyfile, tmp / "worker.log")
            objects, verified = verified_ids(moto)
        rate = args.events / seconds
        rows.append(
            f"| {backend} | xavyo-siem `run --drain` | {args.events:,} | {objects:,} "
            f"| {verified:,} | {rate:,.0f} | {peak:.0f} MB |"
        )
        print(rows[-1], flush=True)
    return rows


def boto3_baseline(args: argparse.Namespace) -> str:
    """boto3 `put_object` of the same objects, written one after another."""
    lines = [orjson.dumps(e.to_dict()) + b"\n" for e in generate_events(args.events, 1, seed=1)]
    with MotoS3(in_process=False) as moto:
        client = moto.client()
        began = time.perf_counter()
        for number, start in enumerate(range(0, len(lines), args.batch)):
            body = gzip.compress(b"".join(lines[start : start + args.batch]), 1, mtime=0)
            client.put_object(
                Bucket=moto.bucket, Key=f"boto3/{number:06d}.ndjson.gz", Body=body,
                ChecksumAlgorithm="SHA256",
            )  # fmt: skip
        seconds = time.perf_counter() - began
        objects, verified = verified_ids(moto)
    row = (
        f"| (none) | boto3 `put_object` (gzip level 1, SHA-256 checksum) | {args.events:,} "
        f"| {objects:,} | {verified:,} | {args.events / seconds:,.0f} | n/a |"
    )
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    os.environ["XAVYO_SIEM_ENV"] = "development"  # moto speaks plain http on loopback
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {describe_machine()}", flush=True)
    keyring_text = new_key_text()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        keyfile = tmp / "keys"
        keyfile.write_text(keyring_text)
        keyring = KeyRing.parse(keyring_text)
        header = [
            "| store | sender | events | objects | verified at the server | events/s "
            "| worker peak RSS |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        print("\n".join(header), flush=True)
        rows = through_worker(args, tmp, keyfile, keyring)
        rows.append(boto3_baseline(args))


if __name__ == "__main__":
    main()
