"""Syslog delivery throughput to rsyslog: our `SyslogTransport` beside the usual senders.

Run: .venv/bin/python benchmarks/bench_syslog.py [--events 200000] [--only NAME ...]
     (loggen row: run benchmarks/fetch_loggen.sh once, or pass --loggen PATH)

Every contender sends the same sample events (`xavyo_siem.sample.generate_events`, encoded
once by `xavyo_siem.format.rfc5424.SyslogFormatter` and streamed from a file, so neither
generation nor formatting is in the measured time and memory does not hold the whole set)
to a fresh rsyslogd (tests/peers/rsyslog.py) that writes every message it receives as one
line. Each contender runs in its own process, one after the other.

The time runs from the first event handed to the sender until rsyslog has written the last
one; "verified" counts the distinct `eventId`s in what rsyslog wrote, so a message lost at
close or merged by bad framing does not count. Peak RSS is the sender process's maximum
resident set; "RSS growth" is its RSS at the end minus its RSS after the first 10 % of the
events, which shows whether memory stays flat as the run goes on (loggen: peak only).
"Sender CPU" is the sender process's CPU time (user + system, start-up and reading the
sample file included) per event: where rsyslog is the bottleneck, it shows what the sender
itself costs.

Contenders:

* `xavyo-tcp` / `xavyo-tls`: `SyslogTransport`, octet counting, 1,000 records per `send`
  (the default `batch_max_events`), each batch acknowledged by the peer's TCP before the
  next; TLS verifies the chain and host name and closes with close_notify.
* `xavyo-relp` / `xavyo-relp-tls`: `RelpTransport`, 1,000 records per `send`, each record
  a RELP `syslog` command, at most 128 unanswered (the default `window`), a batch done when
  every record is answered `200 OK`; TLS with a client certificate (imrelp requires one).
  rsyslog runs imrelp with Direct queues, so each `200 OK` follows the write of its
  message to the output file (the configuration that survives a SIGKILL of rsyslogd; the
  TCP and TLS rows use rsyslog's in-memory main queue, where rsyslog acknowledges nothing).
* `xavyo-relp-memory`: `xavyo-relp` against rsyslog with the in-memory main queue of the TCP
  rows (a `200 OK` then follows the enqueue, not the write): the protocol's own cost.
* `stdlib-tcp`: `logging.handlers.SysLogHandler(socktype=SOCK_STREAM)`, given the same
  RFC 5424 text after its PRI (the handler writes its own `<PRI>`), LF-terminated
  (`append_nul=False`), one `sendall` per record.
* `rfc5424-tcp` / `rfc5424-tls`: PyPI `rfc5424-logging-handler`, octet counting, given the
  same MSGID, structured data (as its dict) and MSG; it builds the RFC 5424 message itself.
* `loggen-tcp` / `loggen-tls`: syslog-ng's `loggen -P -d -R file` sending the same lines,
  the native ceiling (not installable beside rsyslog; fetched by fetch_loggen.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from peers.rsyslog import RSYSLOGD, RelpTlsFiles, RsyslogPeer, TlsFiles  # noqa: E402

CONTENDERS = (
    "xavyo-tcp",
    "xavyo-tls",
    "xavyo-relp",
    "xavyo-relp-tls",
    "xavyo-relp-memory",
    "stdlib-tcp",
    "rfc5424-tcp",
    "rfc5424-tls",
    "loggen-tcp",
    "loggen-tls",
)
SEND_BATCH = 1_000
STALL_S = 5.0
POLL_S = 0.01
_EVENT_ID = re.compile(rb'eventId="([0-9a-f-]{36})"')
_SD_ELEMENT = re.compile(r'\[([^ \]]+)((?: [^=\]]+="(?:[^"\\]|\\.)*")*)\]')
_SD_PARAM = re.compile(r' ([^=]+)="((?:[^"\\]|\\.)*)"')


# --- sample data --------------------------------------------------------------------------


def _parse_sd(text: str) -> dict[str, dict[str, str]]:
    unescape = re.compile(r"\\(.)")
    return {
        match.group(1): {
            name: unescape.sub(r"\1", value) for name, value in _SD_PARAM.findall(match.group(2))
        }
        for match in _SD_ELEMENT.finditer(text)
    }


def write_sample(directory: Path, count: int) -> tuple[Path, Path, float]:
    """Write the sample as RFC 5424 lines and as (msgid, sd, msg) JSON; return encode rate."""
    from xavyo_siem.delivery.framing import message_start
    from xavyo_siem.sample import generate_events

    try:
        from xavyo_siem.format.rfc5424 import SyslogFormatter

        encode: Callable[[Any], str] = SyslogFormatter(hostname="idp.example.com")
    except ImportError:  # the formatter is another module's; a trivial RFC 5424 line instead

        def encode(event: Any) -> str:
            return (
                f"<110>1 {event.timestamp.isoformat().replace('+00:00', 'Z')} idp.example.com"
                f' xavyo-siem - {event.event_type} [xavyo@32473 eventId="{event.event_id}"]'
                f" {json.dumps(event.to_dict())}"
            )

    raw, parts = directory / "sample.syslog", directory / "sample.jsonl"
    encode_s = 0.0
    with raw.open("w", encoding="utf-8") as out_raw, parts.open("w", encoding="utf-8") as out:
        for event in generate_events(count, tenants=10, seed=42):
            started = time.perf_counter()
            text = encode(event)
            encode_s += time.perf_counter() - started
            out_raw.write(text + "\n")
            data = text.encode()
            bounds = message_start(data)
            assert bounds is not None
            assert "\n" not in text
            sd_end, msg_start = bounds
            header = data[: data.index(b" [")].decode().split(" ")
            out.write(
                json.dumps(
                    {
                        "msgid": header[5],
                        "sd": _parse_sd(data[:sd_end].decode()),
                        "msg": data[msg_start:].decode(),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    return raw, parts, count / encode_s


def make_pki(directory: Path) -> tuple[TlsFiles, Path]:
    """The server's files, and the CA (beside it: `client.pem`, a client certificate)."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(
        str(directory / "client.pem")
    )
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    return files, directory / "ca.pem"


# --- workers (each runs in its own process) ---------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """VmHWM: the peak RSS of the process's current image (ru_maxrss would also count the
    parent's memory that the child had between fork and exec)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Progress:
    """Records the start time and the RSS after 10 % of the events, then at the end."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.start = time.time()
        self.rss_early = 0
        self._mark = max(1, count // 10)

    def at(self, sent: int) -> None:
        if not self.rss_early and sent >= self._mark:
            self.rss_early = _rss_bytes()

    def report(self, sent: int) -> dict[str, Any]:
        return {
            "start": self.start,
            "done": time.time(),
            "sent": sent,
            "rss_early": self.rss_early,
            "rss_end": _rss_bytes(),
            "maxrss": peak_rss_bytes(),
            "cpu_s": time.process_time(),
        }


def worker_xavyo(name: str, port: int, raw: Path, count: int, ca: Path) -> dict[str, Any]:
    from xavyo_siem.delivery.base import Delivered, Record
    from xavyo_siem.delivery.options import validate_destination
    from xavyo_siem.delivery.relp import RelpTransport
    from xavyo_siem.delivery.syslog import SyslogTransport
    from xavyo_siem.delivery.syslog_config import SyslogConfig

    tls = name.endswith("-tls")
    options: dict[str, object] = {"ca_file": str(ca)} if tls else {}
    if "relp" in name:
        kind, endpoint = "syslog_relp", f"relp://localhost:{port}"
        if tls:
            options.update(tls=True, cert_file=str(ca.parent / "client.pem"))
    else:
        kind = "syslog_tls" if tls else "syslog_tcp"
        endpoint = f"{'tls' if tls else 'tcp'}://localhost:{port}"
    config = validate_destination(kind, endpoint, options, development=False)
    assert isinstance(config, SyslogConfig)

    async def run() -> dict[str, Any]:
        transport: SyslogTransport | RelpTransport = (
            RelpTransport(config) if kind == "syslog_relp" else SyslogTransport(config)
        )
        progress = Progress(count)
        sent = 0
        batch: list[Record] = []
        with raw.open(encoding="utf-8") as lines:
            for line in lines:
                batch.append(Record("", 0, line[:-1]))
                if len(batch) == SEND_BATCH:
                    result = await transport.send(batch)
                    assert result == Delivered(), result
                    sent += len(batch)
                    progress.at(sent)
                    batch = []
            if batch:
                assert await transport.send(batch) == Delivered()
                sent += len(batch)
        await transport.aclose()
        return progress.report(sent)

    return asyncio.run(run())


def worker_stdlib(port: int, raw: Path, count: int) -> dict[str, Any]:
    handler = logging.handlers.SysLogHandler(
        address=("127.0.0.1", port),
        facility=logging.handlers.SysLogHandler.LOG_SECURITY,  # 13, log audit: <110>
        socktype=socket.SOCK_STREAM,
    )
    handler.append_nul = False
    handler.setFormatter(logging.Formatter("%(message)s\n"))
    logger = logging.getLogger("bench.stdlib")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    progress = Progress(count)
    sent = 0
    with raw.open(encoding="utf-8") as lines:
        for line in lines:
            logger.info(line[line.index(">") + 1 : -1])
            sent += 1
            progress.at(sent)
    handler.close()
    return progress.report(sent)


def worker_rfc5424(scheme: str, port: int, parts: Path, count: int, ca: Path) -> dict[str, Any]:
    from rfc5424logging import Rfc5424SysLogHandler
    from rfc5424logging.transport import FRAMING_OCTET_COUNTING

    tls: dict[str, Any] = {}
    if scheme == "tls":
        tls = {"tls_enable": True, "tls_ca_bundle": str(ca), "tls_verify": True}
    handler = Rfc5424SysLogHandler(
        address=("localhost", port),
        facility=13,
        socktype=socket.SOCK_STREAM,
        framing=FRAMING_OCTET_COUNTING,
        hostname="idp.example.com",
        appname="xavyo-siem",
        utc_timestamp=True,
        **tls,
    )
    logger = logging.getLogger("bench.rfc5424")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    progress = Progress(count)
    sent = 0
    with parts.open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            logger.info(item["msg"], extra={"msgid": item["msgid"], "structured_data": item["sd"]})
            sent += 1
            progress.at(sent)
    handler.close()
    return progress.report(sent)


# --- the discard sink: the senders' own ceiling, without rsyslog's cost --------------------


class FrameCounter:
    """Counts syslog frames in a byte stream; like rsyslog, detects the framing per frame
    (a digit starts an octet-counted frame, anything else runs to the next LF)."""

    def __init__(self) -> None:
        self.frames = 0
        self._skip = 0  # octet-counted body bytes still to come
        self._in_line = False  # inside an LF-terminated frame
        self._head = b""

    def feed(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self._skip:
                take = min(self._skip, size - pos)
                self._skip -= take
                pos += take
                if not self._skip:
                    self.frames += 1
                continue
            if self._in_line or not (self._head or data[pos : pos + 1].isdigit()):
                end = data.find(b"\n", pos)
                if end < 0:
                    self._in_line = True
                    return
                self._in_line = False
                self.frames += 1
                pos = end + 1
                continue
            space = data.find(b" ", pos)
            if space < 0:
                self._head += data[pos:]
                return
            self._skip = int(self._head + data[pos:space])
            self._head = b""
            pos = space + 1


def serve_sink(count: int) -> None:
    """Accept connections, count frames, print {"frames", "last"} when done or stalled."""
    counter = FrameCounter()
    last = time.time()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(60)
        print(server.getsockname()[1], flush=True)
        buffer = bytearray(1 << 20)
        while counter.frames < count:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                break
            with conn:
                conn.settimeout(STALL_S)
                while counter.frames < count:
                    try:
                        size = conn.recv_into(buffer)
                    except (TimeoutError, ConnectionError):
                        break
                    if not size:
                        break
                    counter.feed(bytes(buffer[:size]))
                    last = time.time()
    print(json.dumps({"frames": counter.frames, "last": last}), flush=True)


class SinkPeer:
    """A discard sink in its own process (so it does not share the sender's interpreter)."""

    def __init__(self, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", "--events", str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def finish(self) -> tuple[int, float]:
        out, _ = self.proc.communicate(timeout=120)
        report = json.loads(out.strip().splitlines()[-1])
        return report["frames"], report["last"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- orchestration ---------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    rate: float | None = None
    verified: int = 0
    sent: int = 0
    sender_s: float | None = None
    cpu_us: float | None = None  # sender CPU (user + system) per event, whole process
    maxrss: int | None = None
    rss_growth: int | None = None
    spread: str = ""
    note: str = ""


def loggen_path(explicit: str | None) -> Path | None:
    candidates = [explicit] if explicit else []
    candidates.append(shutil.which("loggen"))
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    candidates.append(str(cache / "xavyo-siem/syslog-ng/usr/bin/loggen"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def distinct_event_ids(peer: RsyslogPeer) -> int:
    seen: set[bytes] = set()
    try:
        with peer.output_path.open("rb") as fh:
            for line in fh:
                seen.update(_EVENT_ID.findall(line))
    except FileNotFoundError:
        pass
    return len(seen)


@dataclass
class Setup:
    work: Path
    raw: Path
    parts: Path
    count: int
    tls_files: TlsFiles
    ca: Path
    loggen: Path | None


def start_sender(name: str, port: int, setup: Setup) -> tuple[subprocess.Popen[bytes], float]:
    """Start contender `name` against `port`; return the process and its spawn time."""
    scheme = "tls" if name.endswith("-tls") else "tcp"
    started = time.time()
    if name.startswith("loggen"):
        assert setup.loggen is not None
        prefix = setup.loggen.parent.parent  # .../usr
        env = dict(
            os.environ,
            SYSLOGNG_PREFIX=str(prefix),
            LD_LIBRARY_PATH=str(prefix / "lib/syslog-ng"),
        )
        plugin = ["-U"] if scheme == "tls" else ["-i", "-S"]  # one plugin at a time
        args = [str(setup.loggen), *plugin, "-P", "-d", "-R", str(setup.raw)]
        args += ["-n", str(setup.count), "-r", "100000000", "-Q"]
        host = "localhost" if scheme == "tls" else "127.0.0.1"
        proc = subprocess.Popen(
            [*args, host, str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return proc, started
    worker = [sys.executable, __file__, "--worker", name, "--port", str(port)]
    worker += ["--events", str(setup.count), "--raw", str(setup.raw), "--parts", str(setup.parts)]
    worker += ["--ca", str(setup.ca)]
    return subprocess.Popen(worker, stdout=subprocess.PIPE, stderr=subprocess.PIPE), started


def run_contender(name: str, setup: Setup, *, sink: bool) -> Row:
    """One run of contender `name` against a fresh rsyslog (or the discard sink)."""
    scheme = "tls" if name.endswith("-tls") else "tcp"
    count = setup.count
    if name.startswith("loggen") and setup.loggen is None:
        return Row(name, note="loggen not found: run benchmarks/fetch_loggen.sh")
    peer: RsyslogPeer | None = None
    sink_peer: SinkPeer | None = None
    try:
        if sink:
            sink_peer = SinkPeer(count)
            port = sink_peer.port
        else:
            relp = "relp" in name
            files = setup.tls_files
            peer = RsyslogPeer(
                setup.work / name,
                tcp=scheme == "tcp" and not relp,
                tls=files if scheme == "tls" and not relp else None,
                relp=scheme == "tcp" and relp,
                relp_tls=RelpTlsFiles(setup.ca, files.cert_file, files.key_file)
                if scheme == "tls" and relp
                else None,
                relp_queue="memory" if name.endswith("-memory") else "direct",
                throughput=True,
            )
            peer.start()
            ports = {
                (False, "tcp"): peer.tcp_port,
                (False, "tls"): peer.tls_port,
                (True, "tcp"): peer.relp_port,
                (True, "tls"): peer.relp_tls_port,
            }
            port = ports[relp, scheme]
            assert port is not None
        proc, started = start_sender(name, port, setup)
        seen, last_change, usage, child_peak = 0, time.time(), None, None
        while peer is not None:
            if usage is None:
                child_peak = peak_rss_bytes(proc.pid) or child_peak
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    usage, proc.returncode = rusage, status
            now = peer.count_lines()
            if now != seen:
                seen, last_change = now, time.time()
            if seen >= count or (usage is not None and time.time() - last_change > STALL_S):
                break
            time.sleep(POLL_S)
        if sink_peer is not None:
            while usage is None:
                child_peak = peak_rss_bytes(proc.pid) or child_peak
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    usage, proc.returncode = rusage, status
                else:
                    time.sleep(0.01)
            verified, last_change = sink_peer.finish()
        else:
            assert peer is not None
            if usage is None:
                _pid, proc.returncode, usage = os.wait4(proc.pid, 0)
            verified = distinct_event_ids(peer)
        out = proc.stdout.read() if proc.stdout else b""
        err = proc.stderr.read() if proc.stderr else b""
        row = Row(name, verified=verified, sent=count, maxrss=child_peak)
        if not name.startswith("loggen"):
            if not out.strip():
                return Row(name, note=f"worker failed: {err.decode(errors='replace')[-300:]}")
            report = json.loads(out)
            started = report["start"]
            row.sent = report["sent"]
            row.sender_s = report["done"] - started
            row.cpu_us = report["cpu_s"] * 1e6 / max(1, report["sent"])
            row.maxrss = report["maxrss"]
            row.rss_growth = report["rss_end"] - report["rss_early"]
        row.rate = row.verified / (last_change - started) if last_change > started else None
        if row.verified < count:
            row.note = f"{count - row.verified:,} events missing at the peer"
            if not row.verified:
                row.note += f"; sender said: {err.decode(errors='replace')[-200:]!r}"
        return row
    finally:
        if peer is not None:
            peer.stop()
            shutil.rmtree(setup.work / name, ignore_errors=True)
        if sink_peer is not None:
            sink_peer.stop()


def run_rounds(names: list[str], setup: Setup, *, sink: bool, repeat: int) -> list[Row]:
    """`repeat` rounds of every contender in turn (so drift on a shared machine hits all
    alike); per contender, the run with the median rate, with the range in `spread`."""
    runs: dict[str, list[Row]] = {name: [] for name in names}
    for attempt in range(repeat):
        for name in names:
            where = "sink" if sink else "rsyslog"
            print(f"  round {attempt + 1}/{repeat}: {name} -> {where}", file=sys.stderr)
            runs[name].append(run_contender(name, setup, sink=sink))
    rows = []
    for name in names:
        ordered = sorted(runs[name], key=lambda row: row.rate or 0.0)
        row = ordered[len(ordered) // 2]
        rates = [r.rate for r in ordered if r.rate]
        if len(rates) > 1:
            row.spread = f"{min(rates):,.0f} - {max(rates):,.0f}"
        rows.append(row)
    return rows


def machine() -> str:
    rsyslog = subprocess.run([RSYSLOGD, "-v"], capture_output=True, text=True).stdout.split()
    return (
        f"{describe_machine()}; rsyslogd {rsyslog[1] if len(rsyslog) > 1 else '?'};"
        f" Linux {platform.release()}"
    )


def mb(value: int | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):.1f}"


def table(title: str, rows: list[Row]) -> list[str]:
    base = next((r.rate for r in rows if r.name == "rfc5424-tcp" and r.rate), None)
    lines = [
        title,
        "",
        "| contender | events/s verified (median) | min - max | verified / sent | sender time s"
        " | sender CPU µs/event | peak RSS MB | RSS growth MB | vs rfc5424-tcp | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        rate = "-" if row.rate is None else f"{row.rate:,.0f}"
        ratio = "-" if not (row.rate and base) else f"{row.rate / base:.1f}x"
        sender = "-" if row.sender_s is None else f"{row.sender_s:.2f}"
        cpu = "-" if row.cpu_us is None else f"{row.cpu_us:.1f}"
        lines.append(
            f"| {row.name} | {rate} | {row.spread or '-'} | {row.verified:,} / {row.sent:,}"
            f" | {sender} | {cpu} | {mb(row.maxrss)} | {mb(row.rss_growth)} | {ratio}"
            f" | {row.note} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS)
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender (median)")
    parser.add_argument("--no-sink", action="store_true", help="skip the discard-sink table")
    parser.add_argument("--loggen", help="path to syslog-ng's loggen")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ca", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.sink:
        serve_sink(args.events)
        return
    if args.worker:
        scheme = "tls" if args.worker.endswith("-tls") else "tcp"
        if args.worker.startswith("xavyo"):
            report = worker_xavyo(args.worker, args.port, args.raw, args.events, args.ca)
        elif args.worker == "stdlib-tcp":
            report = worker_stdlib(args.port, args.raw, args.events)
        else:
            report = worker_rfc5424(scheme, args.port, args.parts, args.events, args.ca)
        print(json.dumps(report))
        return

    names = args.only or list(CONTENDERS)
    # rsyslog's output goes to tmpfs when there is one, so disk write-back does not add noise.
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="bench-syslog-", dir=scratch) as tmp:
        work = Path(tmp)
        print(f"writing {args.events:,} sample events ...", file=sys.stderr)
        raw, parts, encode_rate = write_sample(work, args.events)
        tls_files, ca = make_pki(work)
        setup = Setup(work, raw, parts, args.events, tls_files, ca, loggen_path(args.loggen))
        peer_rows = run_rounds(names, setup, sink=False, repeat=args.repeat)
        sink_rows = []
        if not args.no_sink:
            tcp_names = [n for n in names if n.endswith("-tcp")]
            sink_rows = run_rounds(tcp_names, setup, sink=True, repeat=args.repeat)
    out = table(
        f"Syslog delivery to rsyslog, {args.events:,} sample events (RFC 5424 as encoded by"
        f" SyslogFormatter), verified at the peer; median of {args.repeat} rounds",
        peer_rows,
    )
    if sink_rows:
        out += table(
            "The senders' own ceiling: the same events into a discard sink (a separate"
            " process that counts frames), plain TCP",
            sink_rows,
        )
    out += [
        f"Encoding alone (SyslogFormatter, not in the times above): {encode_rate:,.0f} events/s.",
        f"Machine: {machine()}.",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
