"""Elasticsearch delivery throughput: from the store to the `_bulk` contract peer with one
worker, and our transport beside elasticsearch-py's bulk helper.

Run: .venv/bin/python benchmarks/bench_elasticsearch.py [--events 200000] [--only pipeline,client]

1. pipeline: N events in the store (SQLite and PostgreSQL), one elasticsearch destination
   (format json, HTTPS with the peer's test CA, gzip, API key, batches of 1,000 documents
   sent as two requests of 500 in flight: the defaults), one `xavyo-siem run --drain`
   worker process; events/s from its first delivery to its exit (bench_pipeline.drain),
   every document counted at the peer (distinct `_id`s stored). The same run delivers to
   the test HEC (gzip, 2,000 events per batch, as bench_pipeline.py does) as a reference
   measured on the same machine at the same time.
2. client: the same sample events, encoded once as JSON, sent by our
   `ElasticsearchTransport` (batches of 1,000) and by elasticsearch-py's
   `helpers.bulk` (chunk_size 1,000, `http_compress=True`), each in a fresh process
   against a fresh peer, best of `--repeat`.

The peer (tests/peers/elasticsearch_peer.py, `record=False`: it parses and checks every
line but keeps only the ids) runs in its own process, so that it does not share a core
with the sender. Its CPU time is reported per event too: on a two-core machine the peer
and the sender compete with each other and with whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from bench_pipeline import HEC_TOKEN, add, drain, fill, store  # noqa: E402
from xavyo_siem.crypto import KeyRing, new_key_text  # noqa: E402
from xavyo_siem.model import DeliveryType  # noqa: E402

API_KEY = base64.b64encode(b"bench:secret-key").decode()
BATCH = 1_000


class Peer:
    """A test peer in its own process (HTTPS, test CA), driven over stdin: the Elasticsearch
    contract peer, or (`hec`) the test HEC as the reference."""

    def __init__(self, tls_dir: Path, *, hec: bool = False) -> None:
        module = "peers.hec_server" if hec else "peers.elasticsearch_peer"
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--tls-dir", str(tls_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
        )  # fmt: skip
        assert self.process.stdout is not None
        info = json.loads(self.process.stdout.readline())
        self.url = f"https://localhost:{info['port']}"
        self.ca_file = str(info["ca_file"])
        self.hec = hec

    def stats(self) -> dict[str, Any]:
        """The peer's counters; `unique_ids` are the distinct event ids it stored."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        stats = dict(json.loads(self.process.stdout.readline()))
        if self.hec:
            stats["unique_ids"] = stats["unique_event_ids"]
        return stats

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        self.process.wait(30)


def pipeline(args: argparse.Namespace, tmp: Path, keyfile: Path, keyring: KeyRing) -> list[str]:
    rows = []
    for backend in ("sqlite", "postgresql"):
        for peer_kind in ("elasticsearch", "hec (reference)"):
            with store(backend, tmp) as url:
                tenant = fill(url, args.events)
                hec = peer_kind != "elasticsearch"
                peer = Peer(tmp / "tls", hec=hec)
                options = {"start": "beginning", "ca_file": peer.ca_file}
                try:
                    if hec:
                        options["batch_max_events"] = "2000"
                    add(
                        url,
                        tenant,
                        keyring,
                        HEC_TOKEN if hec else API_KEY,
                        delivery_type=DeliveryType.SPLUNK_HEC
                        if hec
                        else DeliveryType.ELASTICSEARCH,
                        endpoint=peer.url,
                        options=options,
                    )
                    seconds, peak = drain(url, keyfile, tmp / "worker.log")
                    stats = peer.stats()
                finally:
                    peer.stop()
            verified = stats["unique_ids"]
            rows.append(
                f"| {backend} | {peer_kind} | {args.events:,} | {verified:,} "
                f"| {args.events / seconds:,.0f} | {stats['requests']:,} "
                f"| {stats['cpu_s'] * 1e6 / max(verified, 1):.1f} µs | {peak:.0f} MB |"
            )
            print(rows[-1], flush=True)
    return [
        "| store | peer | events | verified at peer | events/s (first delivery → exit) "
        "| requests | peer CPU per event | worker peak RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def _events_file(tmp: Path, count: int) -> Path:
    import orjson

    from xavyo_siem.sample import generate_events

    path = tmp / "events.jsonl"
    with path.open("wb") as out:
        for event in generate_events(count, 1, seed=5):
            out.write(orjson.dumps(event.to_dict()) + b"\n")
    return path


def _run_ours(events: Path, url: str, ca_file: str) -> float:
    import orjson

    from xavyo_siem.delivery import Delivered, ElasticsearchTransport, Record
    from xavyo_siem.delivery.options import validate_destination

    config = validate_destination(
        "elasticsearch", url, {"ca_file": ca_file, "index": "bench"}, development=False
    )
    records = []
    for line in events.open("rb"):
        event = orjson.loads(line)
        records.append(Record(event["event_id"], 0, line.decode().rstrip("\n")))

    async def run() -> float:
        sender = ElasticsearchTransport(config, secret=API_KEY)  # type: ignore[arg-type]
        began = time.perf_counter()
        for start in range(0, len(records), BATCH):
            assert await sender.send(records[start : start + BATCH]) == Delivered()
        seconds = time.perf_counter() - began
        await sender.aclose()
        return seconds

    return asyncio.run(run())


def _run_elasticsearch_py(events: Path, url: str, ca_file: str) -> float:
    import orjson
    from elasticsearch import Elasticsearch, helpers

    actions = []
    for line in events.open("rb"):
        event = orjson.loads(line)
        actions.append(
            {"_op_type": "create", "_index": "bench", "_id": event["event_id"], "_source": event}
        )
    client = Elasticsearch(url, api_key=API_KEY, ca_certs=ca_file, http_compress=True)
    began = time.perf_counter()
    done, errors = helpers.bulk(client, actions, chunk_size=BATCH, max_chunk_bytes=5 << 20)
    seconds = time.perf_counter() - began
    client.close()
    assert not errors
    assert done == len(actions)
    return seconds


def _child(kind: str, events: str, url: str, ca_file: str) -> None:
    run = _run_ours if kind == "ours" else _run_elasticsearch_py
    seconds = run(Path(events), url, ca_file)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime}))


def client(args: argparse.Namespace, tmp: Path) -> list[str]:
    events = _events_file(tmp, args.events)
    rows = []
    for kind in ("ours", "elasticsearch-py"):
        rates = []
        best: tuple[float, dict[str, Any], dict[str, Any]] | None = None
        for _ in range(args.repeat):
            peer = Peer(tmp / "tls")
            try:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, str(events), peer.url,
                     peer.ca_file],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                stats = peer.stats()
            finally:
                peer.stop()
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert stats["unique_ids"] == args.events, stats
            rate = args.events / result["seconds"]
            rates.append(rate)
            if best is None or rate > best[0]:
                best = (rate, result, stats)
        assert best is not None
        rate, result, stats = best
        rows.append(
            f"| {kind} | {args.events:,} | {stats['unique_ids']:,} | {rate:,.0f} "
            f"| {result['cpu_s'] * 1e6 / args.events:.1f} µs "
            f"| {stats['cpu_s'] * 1e6 / args.events:.1f} µs |"
        )
        rows.append(f"<!-- {kind}: every run: {', '.join(f'{r:,.0f}' for r in rates)} -->")
        print(rows[-2], flush=True)
    return [
        "| sender | events | verified at peer | events/s (best run) | sender CPU per event "
        "| peer CPU per event |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="pipeline,client")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "EVENTS", "URL", "CA_FILE"))
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        keyfile = tmp / "key"
        keyfile.write_text(new_key_text())
        keyfile.chmod(0o600)
        keyring = KeyRing.parse(keyfile.read_text())
        sections = []
        if "pipeline" in parts:
            sections.append(pipeline(args, tmp, keyfile, keyring))
        if "client" in parts:
            sections.append(client(args, tmp))
    print(f"\n{describe_machine()}\n")
    for section in sections:
        print("\n".join(section) + "\n")


if __name__ == "__main__":
    main()
