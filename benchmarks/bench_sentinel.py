"""Microsoft Sentinel delivery throughput: store → one worker → Logs Ingestion API contract
peer, beside Microsoft's own client.

Run: .venv/bin/python benchmarks/bench_sentinel.py [--events 200000] [--repeat 3]

The peer (`tests/peers/azure_peer.py`: Entra ID's token endpoint and the Logs Ingestion API
on two HTTPS ports, with a trustme certificate) runs in its own process; it gunzips and
parses every array, and counts the distinct `event_id`s it accepted ("verified").

Rows:

* `worker <store>`: N sample events in a fresh store (SQLite, PostgreSQL), one sentinel
  destination (format `json`, gzip, defaults: 2,000 events per batch, arrays of at most
  1,000,000 bytes), one `xavyo-siem run --drain` worker process; events/s from its first
  delivery to its exit (process start-up left out, as in bench_pipeline.py), and its peak
  RSS.
* `hec worker sqlite`: the same worker and store delivering to the strict test HEC
  (`tests/peers/hec_server.py`, gzip over HTTPS, 2,000 events per batch), run interleaved
  with the others: a reference for how fast the worker runs on the machine at that moment
  (docs/performance.md has its figures on a quiet machine).
* `transport`: `SentinelTransport.send` of the same events read from a file, 2,000 per
  call: the transport's own ceiling, without the store and the pipeline.
* `azure-monitor-ingestion`: Microsoft's client (`LogsIngestionClient.upload`, with
  azure-identity's `ClientSecretCredential` pointed at the peer's token endpoint) given the
  same rows as dicts, 2,000 per call (it gzips and posts its chunks one after another).

Each row runs `--repeat` times against a fresh peer; the fastest run is shown and every
run's rate is in a comment under the table (on a shared machine the slower runs measure the
neighbours). CPU columns are user+system seconds per verified event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_hec import ServerProcess
from bench_pipeline import HEC_TOKEN, ROOT, add, drain, fill, store
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.model import DeliveryType
from xavyo_siem.sample import generate_events

from machine import describe_machine

SEND_BATCH = 2_000
ROWS = (
    "worker sqlite",
    "worker postgresql",
    "hec worker sqlite",
    "transport",
    "azure-monitor-ingestion",
)


class PeerProcess(ServerProcess):
    """The contract peers in their own process; `stats()` asks what they accepted."""

    def __init__(self, tls_dir: Path, *, wire_limit_only: bool = False) -> None:
        extra = ["--wire-limit-only"] if wire_limit_only else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "peers.azure_peer", "--tls-dir", str(tls_dir), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
        )  # fmt: skip
        assert self.process.stdout is not None
        info = json.loads(self.process.stdout.readline())
        self.endpoint: str = info["endpoint"]
        self.options: dict[str, Any] = info["options"]
        self.client_secret: str = info["client_secret"]


def write_sample(path: Path, count: int) -> None:
    """`count` sample events as `event_id<TAB>epoch_us<TAB>json` lines."""
    from xavyo_siem.format import to_json
    from xavyo_siem.model import to_epoch_us

    with path.open("w", encoding="utf-8") as out:
        for event in generate_events(count, tenants=10, seed=42):
            out.write(f"{event.event_id}\t{to_epoch_us(event.timestamp)}\t{to_json(event)}\n")


def read_batches(path: Path) -> Any:
    """Batches of (event_id, epoch_us, json) from a sample file."""
    batch: list[tuple[str, int, str]] = []
    with path.open(encoding="utf-8") as source:
        for line in source:
            event_id, us, text = line.rstrip("\n").split("\t", 2)
            batch.append((event_id, int(us), text))
            if len(batch) == SEND_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


# --- senders in a child process --------------------------------------------------------------


async def send_with_transport(path: Path, peer: dict[str, Any]) -> dict[str, Any]:
    from xavyo_siem.delivery import SentinelConfig, SentinelTransport, validate_destination
    from xavyo_siem.delivery.base import Delivered, Record

    config = validate_destination("sentinel", peer["endpoint"], peer["options"], development=False)
    assert isinstance(config, SentinelConfig)
    transport = SentinelTransport(config, client_secret=peer["client_secret"])
    failures = 0
    start = time.perf_counter()
    for batch in read_batches(path):
        result = await transport.send([Record(*item) for item in batch])
        failures += not isinstance(result, Delivered)
    elapsed = time.perf_counter() - start
    await transport.aclose()
    return {"elapsed_s": elapsed, "failures": failures}


def send_with_azure_client(path: Path, peer: dict[str, Any]) -> dict[str, Any]:
    import orjson
    from azure.identity import ClientSecretCredential
    from azure.monitor.ingestion import LogsIngestionClient

    from xavyo_siem.delivery.sentinel_protocol import time_generated

    options = peer["options"]
    credential = ClientSecretCredential(
        options["tenant"], options["client_id"], peer["client_secret"],
        authority=options["authority_host"], disable_instance_discovery=True,
        connection_verify=options["ca_file"],
    )  # fmt: skip
    client = LogsIngestionClient(peer["endpoint"], credential, connection_verify=options["ca_file"])
    start = time.perf_counter()
    with client:
        for batch in read_batches(path):
            rows = [
                {"TimeGenerated": time_generated(us), **orjson.loads(text)}
                for _event_id, us, text in batch
            ]
            client.upload(options["dcr_immutable_id"], options["stream"], rows)
    return {"elapsed_s": time.perf_counter() - start, "failures": 0}


def child(args: argparse.Namespace) -> None:
    peer = json.loads(args.peer)
    path = Path(args.sample)
    if args.child == "transport":
        out = asyncio.run(send_with_transport(path, peer))
    else:
        out = send_with_azure_client(path, peer)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    out["peak_rss_kib"] = usage.ru_maxrss
    print(json.dumps(out))


# --- the parent ---------------------------------------------------------------------------


def run_worker_row(
    backend: str, count: int, tmp: Path, keyfile: Path, keyring: KeyRing
) -> dict[str, Any]:
    peer = PeerProcess(tmp / f"tls-{time.monotonic_ns()}")
    try:
        with store(backend, tmp) as url:
            tenant = fill(url, count)
            add(url, tenant, keyring, peer.client_secret, delivery_type=DeliveryType.SENTINEL,
                endpoint=peer.endpoint, options={**peer.options, "start": "beginning"})  # fmt: skip
            seconds, peak_mb = drain(url, keyfile, tmp / "worker.log")
        time.sleep(0.2)
        stats = peer.stats()
    finally:
        peer.stop()
    return {"elapsed_s": seconds, "peak_rss_mb": peak_mb, "cpu_s": None, "server": stats}


def run_hec_row(count: int, tmp: Path, keyfile: Path, keyring: KeyRing) -> dict[str, Any]:
    tls_dir = tmp / f"hec-{time.monotonic_ns()}"
    hec = subprocess.Popen(
        [sys.executable, "-m", "peers.hec_server", "--tls-dir", str(tls_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
    )  # fmt: skip
    assert hec.stdin is not None
    assert hec.stdout is not None
    info = json.loads(hec.stdout.readline())
    try:
        with store("sqlite", tmp) as url:
            tenant = fill(url, count)
            add(url, tenant, keyring, HEC_TOKEN, delivery_type=DeliveryType.SPLUNK_HEC,
                endpoint=f"https://localhost:{info['port']}",
                options={"start": "beginning", "gzip": "true", "batch_max_events": "2000",
                         "ca_file": info["ca_file"]})  # fmt: skip
            seconds, peak_mb = drain(url, keyfile, tmp / "worker.log")
        time.sleep(0.2)
        hec.stdin.write("stats\n")
        hec.stdin.flush()
        stats = dict(json.loads(hec.stdout.readline()))
    finally:
        hec.stdin.write("stop\n")
        hec.stdin.flush()
        hec.wait(30)
    return {"elapsed_s": seconds, "peak_rss_mb": peak_mb, "cpu_s": None, "server": stats}


def run_child_row(row: str, sample: Path, tmp: Path) -> dict[str, Any]:
    # Microsoft's client counts 1 MiB of rows without the separators between them, so its
    # arrays pass 1,048,576 bytes before gzip; the peer then checks the size as sent only.
    peer = PeerProcess(tmp / f"tls-{time.monotonic_ns()}", wire_limit_only=row != "transport")
    try:
        info = {
            "endpoint": peer.endpoint,
            "options": peer.options,
            "client_secret": peer.client_secret,
        }
        done = subprocess.run(
            [sys.executable, __file__, "--child", "transport" if row == "transport" else "azure",
             "--sample", str(sample), "--peer", json.dumps(info)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{row} failed:\n{done.stderr[-3000:]}")
        out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        time.sleep(0.2)
        out["server"] = peer.stats()
        out["peak_rss_mb"] = out.pop("peak_rss_kib") / 1024
    finally:
        peer.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; best is shown")
    parser.add_argument("--only", nargs="*", choices=ROWS)
    parser.add_argument("--child", choices=("transport", "azure"), help=argparse.SUPPRESS)
    parser.add_argument("--sample", help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"machine before: {describe_machine()}", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-sentinel-") as work:
        tmp = Path(work)
        keyfile = tmp / "key"
        keyfile.write_text(new_key_text())
        keyfile.chmod(0o600)
        keyring = KeyRing.parse(keyfile.read_text())
        sample = tmp / "events.tsv"
        write_sample(sample, args.events)
        for row in args.only or ROWS:
            runs = []
            for attempt in range(args.repeat):
                print(f"running {row} ({attempt + 1}/{args.repeat})...", file=sys.stderr)
                if row.startswith("worker"):
                    runs.append(run_worker_row(row.split()[1], args.events, tmp, keyfile, keyring))
                elif row.startswith("hec"):
                    runs.append(run_hec_row(args.events, tmp, keyfile, keyring))
                else:
                    runs.append(run_child_row(row, sample, tmp))
            for out in runs:
                out["rate"] = out["server"]["unique_event_ids"] / out["elapsed_s"]
            best = max(runs, key=lambda out: out["rate"])
            best["all_rates"] = [out["rate"] for out in runs]
            results.append((row, best))
    print(
        f"\n{args.events:,} events, HTTPS to the Logs Ingestion API contract peer in its own "
        f"process; best of {args.repeat} runs per row"
    )
    print(f"machine after: {describe_machine()}\n")
    print(
        "| sender | events/s verified | verified (distinct ids) | lost | sender CPU µs/event "
        "| peer CPU µs/event | sender peak RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, out in results:
        verified = out["server"]["unique_event_ids"]
        cpu = "" if out["cpu_s"] is None else f"{out['cpu_s'] * 1e6 / max(verified, 1):.1f}"
        print(
            f"| {name} | {out['rate']:,.0f} | {verified:,} | {args.events - verified:,} | {cpu} "
            f"| {out['server']['cpu_s'] * 1e6 / max(verified, 1):.1f} "
            f"| {out['peak_rss_mb']:.0f} MB |"
        )
        rates = ", ".join(f"{rate:,.0f}" for rate in out["all_rates"])
        print(f"<!-- {name}: events/s of every run: {rates} -->")


if __name__ == "__main__":
    main()
