"""End-to-end pipeline benchmark: store → format → transport → verified at the peer.

    .venv/bin/python benchmarks/bench_pipeline.py [--events 200000] [--backlog 1000000]
        [--latency-seconds 20] [--only throughput,latency,memory]

1. Throughput: N events in the store (SQLite and PostgreSQL), one destination, one
   `xavyo-siem run --drain` worker process; events/s from its start to its exit, with every
   event counted at the peer: rsyslog over TCP (RFC 5424, JSON body) and the strict test HEC
   with gzip over HTTPS, each in its own process.
2. Latency: a steady 2,000 events/s ingested in small committed batches while a continuous
   worker delivers to a timing syslog receiver; latency is receipt time minus commit time.
3. Memory: peak RSS of `run --drain` (file destination) with a backlog of 10,000 events and
   with `--backlog` events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from xavyo_siem import destinations as manage  # noqa: E402
from xavyo_siem.crypto import KeyRing, new_key_text  # noqa: E402
from xavyo_siem.destinations import DestinationSpec  # noqa: E402
from xavyo_siem.egress import EgressGuard  # noqa: E402
from xavyo_siem.model import DeliveryType, ExportFormat  # noqa: E402
from xavyo_siem.sample import generate_events  # noqa: E402
from xavyo_siem.store import append_events, make_engine, upgrade  # noqa: E402
from xavyo_siem.store.changes import announce_new_events  # noqa: E402

from peers.rsyslog import RsyslogPeer  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HEC_TOKEN = "00000000-0000-4000-8000-000000000001"


@contextlib.contextmanager
def store(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh, migrated store URL; PostgreSQL databases are dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    name = f"xavyo_siem_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill(url: str, count: int, seed: int = 1) -> uuid.UUID:
    engine = make_engine(url)
    events = generate_events(count, 1, seed=seed)
    first = next(events)
    with engine.begin() as conn:
        append_events(conn, [first])
        append_events(conn, events)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE audit_events"))
    engine.dispose()
    return first.tenant_id


def env_for(url: str, keyfile: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XAVYO_SIEM_DATABASE_URL": url,
        "XAVYO_SIEM_SECRET_KEY_FILE": str(keyfile),
        "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.1/32,localhost",
    }


def add(url: str, tenant: uuid.UUID, keyring: KeyRing, secret: str | None, **spec: object) -> None:
    base = DestinationSpec(
        name="bench",
        delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON,
        endpoint="file:///dev/null",
        options={"start": "beginning"},
        rate_limit=None,  # throughput is measured: no rate limit (the default would cap it)
    )
    engine = make_engine(url)
    manage.add_destination(
        engine, tenant_id=tenant, spec=replace(base, **spec), secret=secret,  # type: ignore[arg-type]
        keyring=keyring, development=False, egress=EgressGuard(allow=("127.0.0.1/32", "localhost")),
    )  # fmt: skip
    engine.dispose()


def drain(url: str, keyfile: Path, log: Path) -> tuple[float, float]:
    """Run `xavyo-siem run --drain`; (seconds from its first delivery to its exit, peak RSS MB).

    Process start-up (imports, the first lease scan) is left out: it is the same for ten
    events as for a million, and is not delivery.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "xavyo_siem", "run", "--drain", "--poll-interval", "0.05"],
        env=env_for(url, keyfile), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    # The worker's own high-water mark, read from /proc while it runs: rusage would report
    # the benchmark process's size, which a forked child inherits as its starting maximum.
    peak_kb = [0]

    def watch() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb[0] = max(peak_kb[0], int(line.split()[1]))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    began = None
    with log.open("ab") as out:
        for line in proc.stderr:
            out.write(line)
            if began is None and b"destination(s)" in line:  # the worker serves them now
                began = time.perf_counter()
    if proc.wait() != 0:
        raise RuntimeError(f"worker failed; see {log}")
    assert began is not None
    seconds = time.perf_counter() - began
    watcher.join()
    return seconds, peak_kb[0] / 1024


def throughput(args: argparse.Namespace, tmp: Path, keyfile: Path, keyring: KeyRing) -> list[str]:
    rows = []
    for backend in ("sqlite", "postgresql"):
        for peer_kind in ("rsyslog-tcp", "hec-gzip"):
            with store(backend, tmp) as url:
                tenant = fill(url, args.events)
                if peer_kind == "rsyslog-tcp":
                    peer = RsyslogPeer(
                        tmp / f"rsyslog-{uuid.uuid4().hex[:6]}", tcp=True, throughput=True
                    )
                    peer.start()
                    try:
                        add(url, tenant, keyring, None, delivery_type=DeliveryType.SYSLOG_TCP,
                            endpoint=f"tcp://127.0.0.1:{peer.tcp_port}",
                            options={"start": "beginning", "batch_max_events": "2000"})  # fmt: skip
                        seconds, peak = drain(url, keyfile, tmp / "worker.log")
                        peer.wait_for(args.events, timeout=120)
                        verified = peer.count_lines()
                    finally:
                        peer.stop()
                else:
                    hec = subprocess.Popen(
                        [sys.executable, "-m", "peers.hec_server", "--tls-dir", str(tmp / "tls")],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
                    )  # fmt: skip
                    assert hec.stdin is not None
                    assert hec.stdout is not None
                    info = json.loads(hec.stdout.readline())
                    try:
                        add(url, tenant, keyring, HEC_TOKEN, delivery_type=DeliveryType.SPLUNK_HEC,
                            endpoint=f"https://localhost:{info['port']}",
                            options={"start": "beginning", "gzip": "true", "batch_max_events":
                                     "2000", "ca_file": info["ca_file"]})  # fmt: skip
                        seconds, peak = drain(url, keyfile, tmp / "worker.log")
                        hec.stdin.write("stats\n")
                        hec.stdin.flush()
                        verified = json.loads(hec.stdout.readline())["unique_event_ids"]
                    finally:
                        hec.stdin.write("stop\n")
                        hec.stdin.flush()
                        hec.wait(30)
                rate = args.events / seconds
                rows.append(
                    f"| {backend} | {peer_kind} | {args.events:,} | {verified:,} | {rate:,.0f} "
                    f"| {peak:.0f} MB |"
                )
                print(rows[-1], flush=True)
    return [
        "| store | peer | events | verified at peer | events/s (first delivery → exit) "
        "| worker peak RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *rows,
    ]


class TimingReceiver:
    """Octet-counting syslog receiver noting when each event id arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.port = 0

    async def serve(self, ready: threading.Event, stop: threading.Event) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = int((await reader.readuntil(b" "))[:-1])
                message = await reader.readexactly(length)
                now = time.time()
                body = message[message.index(b"{") :]
                self.arrived[orjson.loads(body)["event_id"]] = now
        writer.close()


def latency(args: argparse.Namespace, tmp: Path, keyfile: Path, keyring: KeyRing) -> list[str]:
    rows = []
    rate, chunk = 2000, 100
    for backend in ("sqlite", "postgresql"):
        with store(backend, tmp) as url:
            tenant = fill(url, 1)
            receiver = TimingReceiver()
            ready, stop = threading.Event(), threading.Event()
            thread = threading.Thread(target=asyncio.run, args=(receiver.serve(ready, stop),))
            thread.start()
            ready.wait(10)
            add(url, tenant, keyring, None, delivery_type=DeliveryType.SYSLOG_TCP,
                endpoint=f"tcp://127.0.0.1:{receiver.port}", options={"start": "now"})  # fmt: skip
            worker = subprocess.Popen(
                [sys.executable, "-m", "xavyo_siem", "run", "--poll-interval", "0.05"],
                env=env_for(url, keyfile), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(3)
            engine = make_engine(url)
            committed: dict[str, float] = {}
            events = generate_events(rate * args.latency_seconds, 1, seed=99)
            begin = time.perf_counter()
            sent = 0
            for _ in range(rate * args.latency_seconds // chunk):
                batch = [replace(next(events), tenant_id=tenant) for _ in range(chunk)]
                with engine.begin() as conn:
                    append_events(conn, batch)
                moment = time.time()
                announce_new_events(engine)  # as ingest does once it committed
                committed.update((str(e.event_id), moment) for e in batch)
                sent += chunk
                pause = begin + sent / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            deadline = time.time() + 30
            while len(receiver.arrived) < len(committed) and time.time() < deadline:
                time.sleep(0.1)
            worker.terminate()
            worker.wait(30)
            stop.set()
            thread.join(10)
            engine.dispose()
            delays = sorted(
                receiver.arrived[k] - committed[k] for k in committed if k in receiver.arrived
            )
            p50 = statistics.median(delays)
            p99 = delays[int(len(delays) * 0.99) - 1]
            rows.append(
                f"| {backend} | {rate:,} | {len(delays):,} of {len(committed):,} | "
                f"{p50 * 1000:,.0f} ms | {p99 * 1000:,.0f} ms | {delays[-1] * 1000:,.0f} ms |"
            )
            print(rows[-1], flush=True)
    return [
        "| store | events/s ingested | received | p50 commit → receipt | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def memory(args: argparse.Namespace, tmp: Path, keyfile: Path, keyring: KeyRing) -> list[str]:
    rows = []
    for backend in ("sqlite", "postgresql"):
        peaks = []
        for backlog in (10_000, args.backlog):
            with store(backend, tmp) as url:
                tenant = fill(url, backlog)
                out = tmp / f"mem-{uuid.uuid4().hex[:6]}.jsonl"
                add(url, tenant, keyring, None, endpoint=f"file://{out}",
                    options={"start": "beginning", "batch_max_events": "1000"})  # fmt: skip
                probe = subprocess.run(
                    [sys.executable, __file__, "--drain-probe", url, str(keyfile)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                seconds, peak = json.loads(probe.stdout.strip().splitlines()[-1])
                lines = sum(1 for _ in out.open("rb"))
                assert lines == backlog, f"{lines} != {backlog}"
                out.unlink()
                peaks.append(peak)
                rows.append(
                    f"| {backend} | {backlog:,} | {backlog / seconds:,.0f} | {peak:.0f} MB |"
                )
                print(rows[-1], flush=True)
        rows.append(f"| {backend} | difference | | {peaks[1] - peaks[0]:+.0f} MB |")
    return [
        "| store | backlog (events) | drain events/s (file) | worker peak RSS |",
        "| --- | ---: | ---: | ---: |",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--only", default="throughput,latency,memory")
    parser.add_argument("--drain-probe", nargs=2, metavar=("URL", "KEYFILE"))
    args = parser.parse_args()
    if args.drain_probe:
        url, keyfile = args.drain_probe
        print(json.dumps(drain(url, Path(keyfile), Path(os.devnull))))
        return
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        keyfile = tmp / "key"
        keyfile.write_text(new_key_text())
        keyfile.chmod(0o600)
        keyring = KeyRing.parse(keyfile.read_text())
        sections = []
        if "throughput" in parts:
            sections.append(throughput(args, tmp, keyfile, keyring))
        if "latency" in parts:
            sections.append(latency(args, tmp, keyfile, keyring))
        if "memory" in parts:
            sections.append(memory(args, tmp, keyfile, keyring))
    print(f"\n{describe_machine()}\n")
    for section in sections:
        print("\n".join(section) + "\n")


if __name__ == "__main__":
    main()
