"""Splunk HEC delivery throughput: our `HecTransport` beside the PyPI `splunk-handler`.

Run: .venv/bin/python benchmarks/bench_hec.py [--events 200000] [--only NAME ...]

Every contender sends the same sample events (`xavyo_siem.sample.generate_events`, encoded
once as JSON lines and streamed from a file, so neither generation nor formatting is
measured and memory does not hold the whole set) over HTTPS to the strict test HEC
(`tests/peers/hec_server.py`), which runs in its own process so that it does not share a
core with the sender. Each contender runs in a fresh process against a fresh server.

Each sender runs `--repeat` times (default 3) and the fastest run is shown, with every
run's rate in a comment under the table: on a shared machine the slower runs measure the
neighbours. The time runs from the first event handed over to the moment the sender
reports it is done (our transport: the last `send` returned; splunk-handler: `close()`
returned after its final flush). Only events the server parsed and accepted count, and
"verified" counts distinct `event_id`s among them. Peak RSS is the sender process's
`ru_maxrss`; "RSS growth" is the RSS at the end minus the RSS after the first 10% of
events, which shows whether memory stays flat as the run goes on. CPU columns are the
user+system seconds of each process divided by the verified events.

Contenders:

* `ours-gzip`: `HecTransport` with its defaults (500 events per request, 3 requests in
  flight) and gzip on, 5,000 events per `send` (a pipeline batch).
* `ours-plain`: the same without gzip.
* `ours-gzip-ack`: gzip, indexer acknowledgement on (the test HEC acks at once; polls
  every 10 ms).
* `splunk-handler-defaults`: `SplunkHandler` as its README shows it; its default queue holds
  5,000 records and drops the rest without telling the caller.
* `splunk-handler-keep-ahead`: `force_keep_ahead=True, flush_interval=0.2` so that it blocks
  instead of dropping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "00000000-0000-4000-8000-000000000001"
SEND_BATCH = 5_000
CONTENDERS = (
    "ours-gzip",
    "ours-plain",
    "ours-gzip-ack",
    "splunk-handler-defaults",
    "splunk-handler-keep-ahead",
)


# --- sample data --------------------------------------------------------------------------


def write_sample(path: Path, count: int) -> None:
    """Write `count` sample events as `event_id<TAB>epoch_us<TAB>json` lines."""
    from xavyo_siem.model import to_epoch_us
    from xavyo_siem.sample import generate_events

    try:
        from xavyo_siem.format import to_json as encode
    except ImportError:  # the JSON encoder is another module's; fall back on the JSON form

        def encode(event: Any) -> str:
            return orjson.dumps(event.to_dict()).decode()

    with path.open("w", encoding="utf-8") as out:
        for event in generate_events(count, tenants=10, seed=42):
            out.write(f"{event.event_id}\t{to_epoch_us(event.timestamp)}\t{encode(event)}\n")


def read_sample(path: Path) -> Iterator[tuple[str, int, str]]:
    """Stream (event_id, epoch_us, json) from a sample file."""
    with path.open(encoding="utf-8") as source:
        for line in source:
            event_id, us, text = line.rstrip("\n").split("\t", 2)
            yield event_id, int(us), text


def rss_kib() -> int:
    """The current resident set size of this process, in KiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


# --- contenders (each runs in its own process) --------------------------------------------


async def run_ours(
    path: Path, count: int, url: str, ca_file: str, *, gzip: bool, ack: bool, in_flight: int
) -> dict[str, Any]:
    from xavyo_siem.delivery.base import Delivered, Record
    from xavyo_siem.delivery.options import validate_destination
    from xavyo_siem.delivery.splunk_hec import HecConfig, HecTransport

    options: dict[str, Any] = {"ca_file": ca_file, "gzip": gzip, "ack": ack}
    if in_flight:
        options["max_requests_in_flight"] = in_flight
    if ack:
        options["ack_poll_interval_s"] = 0.01
    config = validate_destination("splunk_hec", url, options, development=False)
    assert isinstance(config, HecConfig)
    transport = HecTransport(config, token=TOKEN, event_is_json=True)
    results: dict[str, int] = {}
    rss_early = 0
    sent = 0
    batch: list[Record] = []
    start = time.perf_counter()

    async def flush() -> None:
        result = await transport.send(batch)
        name = type(result).__name__
        results[name] = results.get(name, 0) + len(batch)
        if not isinstance(result, Delivered):
            print(f"send: {result}", file=sys.stderr)
        batch.clear()

    for event_id, us, text in read_sample(path):
        batch.append(Record(event_id, us, text))
        if len(batch) >= SEND_BATCH:
            sent += len(batch)
            await flush()
            if not rss_early and sent >= count // 10:
                rss_early = rss_kib()
    if batch:
        await flush()
    elapsed = time.perf_counter() - start
    await transport.aclose()
    return {"elapsed_s": elapsed, "results": results, "rss_early_kib": rss_early}


def run_splunk_handler(
    path: Path, count: int, port: int, ca_file: str, *, keep_ahead: bool
) -> dict[str, Any]:
    from splunk_handler import SplunkHandler

    kwargs: dict[str, Any] = {}
    if keep_ahead:
        kwargs = {"force_keep_ahead": True, "flush_interval": 0.2}
    handler = SplunkHandler(
        host="localhost",
        port=port,
        token=TOKEN,
        index="main",
        verify=ca_file,
        **kwargs,
    )
    logger = logging.getLogger("bench.splunk")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    rss_early = 0
    start = time.perf_counter()
    for index, (_event_id, _us, text) in enumerate(read_sample(path), 1):
        logger.info(text)
        if not rss_early and index >= count // 10:
            rss_early = rss_kib()
    handler.close()
    elapsed = time.perf_counter() - start
    return {"elapsed_s": elapsed, "results": {}, "rss_early_kib": rss_early}


def child(args: argparse.Namespace) -> None:
    """Run one contender and print its measurements as JSON on the last line."""
    path = Path(args.sample)
    url = f"https://localhost:{args.port}"
    if args.contender.startswith("ours"):
        out = asyncio.run(
            run_ours(
                path,
                args.events,
                url,
                args.ca_file,
                gzip="gzip" in args.contender,
                ack=args.contender.endswith("ack"),
                in_flight=args.in_flight,
            )
        )
    else:
        # splunk-handler prints one line per dropped record; keep that out of our output.
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        try:
            out = run_splunk_handler(
                path,
                args.events,
                args.port,
                args.ca_file,
                keep_ahead=args.contender.endswith("keep-ahead"),
            )
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    out["rss_end_kib"] = rss_kib()
    out["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))


# --- the parent: servers, contenders, table ------------------------------------------------


class ServerProcess:
    """The test HEC in its own process; `stats()` asks it what it accepted."""

    def __init__(self, tls_dir: Path, *, ack: bool) -> None:
        command = [sys.executable, "-m", "peers.hec_server", "--tls-dir", str(tls_dir)]
        if ack:
            command.append("--ack")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stdout is not None
        info = json.loads(self.process.stdout.readline())
        self.port: int = info["port"]
        self.ca_file: str = info["ca_file"]

    def stats(self) -> dict[str, int]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.stdout.readline()))

    def stop(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def measure(
    contender: str, sample: Path, count: int, tls_dir: Path, in_flight: int
) -> dict[str, Any]:
    server = ServerProcess(tls_dir, ack=contender.endswith("ack"))
    try:
        command = [
            sys.executable,
            __file__,
            "--child",
            contender,
            "--events",
            str(count),
            "--sample",
            str(sample),
            "--port",
            str(server.port),
            "--ca-file",
            server.ca_file,
            "--in-flight",
            str(in_flight),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{contender} failed:\n{done.stderr[-3000:]}")
        out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        if done.stderr.strip():
            out["stderr"] = done.stderr.strip().splitlines()[-3:]
        time.sleep(0.2)  # let the server finish parsing the last request it answered
        out["server"] = server.stats()
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per sender; best is shown")
    parser.add_argument(
        "--in-flight", type=int, default=0, help="our max_requests_in_flight (0: the default)"
    )
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--sample", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.contender = args.child
        child(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench-hec-") as work:
        sample = Path(work) / "events.tsv"
        print(f"generating {args.events:,} sample events...", file=sys.stderr)
        write_sample(sample, args.events)
        rows = []
        for contender in args.only or CONTENDERS:
            runs = []
            for attempt in range(args.repeat):
                print(f"running {contender} ({attempt + 1}/{args.repeat})...", file=sys.stderr)
                tls_dir = Path(work) / f"tls-{contender}-{attempt}"
                runs.append(measure(contender, sample, args.events, tls_dir, args.in_flight))
            best = max(runs, key=lambda out: out["server"]["unique_event_ids"] / out["elapsed_s"])
            best["all_rates"] = [
                out["server"]["unique_event_ids"] / out["elapsed_s"] for out in runs
            ]
            rows.append((contender, best))

    print(
        f"\n{args.events:,} events, HTTPS to the test HEC in its own process; "
        f"best of {args.repeat} runs per sender"
    )
    print(f"machine: {describe_machine()}; {platform.system()} {platform.release()}\n")
    print(
        "| sender | events/s verified | accepted by HEC | verified (distinct ids) | lost "
        "| requests | sender CPU µs/event | HEC CPU µs/event | peak RSS | RSS growth after 10% |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, out in rows:
        server = out["server"]
        verified = server["unique_event_ids"]
        rate = verified / out["elapsed_s"] if out["elapsed_s"] else 0.0
        growth = out["rss_end_kib"] - out["rss_early_kib"] if out["rss_early_kib"] else 0
        print(
            f"| {name} | {rate:,.0f} | {server['events']:,} | {verified:,} "
            f"| {args.events - verified:,} | {server['requests']:,} "
            f"| {out['cpu_s'] * 1e6 / max(verified, 1):.1f} "
            f"| {server['cpu_s'] * 1e6 / max(verified, 1):.1f} "
            f"| {out['peak_rss_kib'] / 1024:.0f} MiB | {growth / 1024:+.1f} MiB |"
        )
        rates = ", ".join(f"{rate:,.0f}" for rate in out["all_rates"])
        print(f"<!-- {name}: events/s of every run: {rates} -->")
        if out.get("stderr"):
            print(f"<!-- {name} stderr: {out['stderr']} -->")


if __name__ == "__main__":
    main()
