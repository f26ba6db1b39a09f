"""Thousands of tenants on PostgreSQL: one or two `xavyo-siem run` workers, many destinations.

    .venv/bin/python benchmarks/bench_tenants.py [--destinations 10000] [--tenants 5000]
        [--phases start,idle,backlog,steady,memory,two-workers] [--steady-with-faults] ...

A small run, which the one-loop-per-destination worker gets through in a few minutes:

    .venv/bin/python benchmarks/bench_tenants.py --destinations 200 --tenants 100 --syslog 10
        --hec 10 --backlog-events 5000 --backlog-tenants 50 --idle-seconds 10 --rate 200
        --steady-seconds 20 --failover-seconds 20 --backfill-events 20000
        --steady-with-faults --phase-timeout 180

The scenario: a fresh PostgreSQL database on 127.0.0.1:5432 (dropped at the end) holds
`--destinations` destinations over `--tenants` tenants. Destination j belongs to the tenant of
rank j mod tenants (rank 0 is the busiest), so every tenant has about the same number of
destinations while their events follow a Zipf law (`--zipf`): a few large tenants, many quiet
ones. `--syslog` destinations are `syslog_tcp` to one receiver of this benchmark's own and
`--hec` are `splunk_hec` over HTTPS to the strict test HEC (tests/peers/hec_server.py), both
spread over the tenant ranks from the busiest to the quietest; every other destination is a
`file` destination (JSON lines, one file each). Every destination has `start=beginning` and
no rate limit. Each peer runs in its own process and notes when each event arrived.

Phases (`--phases`, run in this order):

* start: process start of `xavyo-siem run` until every destination is ready, read from the
  worker's gauge `xavyo_siem_worker_destinations` on its metrics port when it has that gauge,
  else from the rows of the `leases` table with an unexpired lease.
* idle: nothing new for `--idle-seconds`; the worker's CPU (per cent of one core, from
  /proc), its RSS, the rate of its counter `xavyo_siem_store_statements_total` when it has one,
  and the bench database's transactions/s from pg_stat_database (xact_commit + xact_rollback).
  The benchmark reads pg_stat_database from the `postgres` database and holds no connection
  to the bench database meanwhile, so none of those transactions is its own (autovacuum's
  would count). PostgreSQL publishes a busy backend's counts about once a second, so a window
  of a few seconds is off by up to a second's worth at each end.
* backlog: with no worker running, `--backlog-events` are stored over the `--backlog-tenants`
  busiest tenants; then a worker starts and the time until every event reached every one of
  its tenant's destinations is measured from the process start, from readiness, and from the
  first receipt (a worker that delivers each destination as soon as it holds it may be done
  before it holds them all). The worker makes about 2,000 new files here. On ext4 without
  a journal (`/sys/fs/ext4/<device>/journal_task` reads `<none>`), making a file passes
  over each inode of its group that was freed in the last minute, or in the last six while
  the inode table's block is not written back (`recently_deleted` in the kernel's
  `__ext4_new_inode`, as `perf` shows). After thousands of files were deleted on the same
  file system (the previous run's work directory, a test run), the worker spends up to a
  second more in the kernel. Leave six minutes after such a deletion to measure the
  worker rather than that.
* steady: `--rate` events/s over all tenants for `--steady-seconds`, appended in small
  committed batches by a separate process that notes each batch's commit time; commit →
  receipt latency at the syslog and HEC peers (receipt time exact) and at a sample of
  `--file-sample` file destinations whose files are polled every `--file-poll` seconds (their
  receipt time is the file's mtime when a poll finds new lines: late by at most one poll);
  and the worker's CPU while the events are appended (per cent of one core, and per
  delivery: a figure that depends less on what else the machine runs than latency does).
  The measured window follows `--steady-warmup` seconds of the same traffic, whose latency
  is reported on rows of its own: in them most destinations deliver for the first time
  (their files are made, their transports opened), as a deployment's destinations did long
  before.
* steady-faults (`--steady-with-faults`): the steady phase again while one extra tenant's new
  destination (a file, `start=beginning`) backfills `--backfill-events` events stored before
  any worker ran, and another tenant (rank 2) has a syslog destination to a port nobody
  listens on; the latency of the other tenants. Both destinations are disabled afterwards.
* memory: the worker's RSS once every destination is loaded, and its peak (VmHWM) over all
  phases run by one worker.
* two-workers: two workers start together; once all destinations are held, each one's share
  of the `leases` rows (by owner); events are appended at `--rate` for `--failover-seconds`,
  the worker holding more is killed with SIGKILL a quarter of the way in, and the time until
  the other holds every destination is measured; then every event appended in the phase must
  have reached each of its destinations at least once.

Each phase waits at most `--phase-timeout` seconds for anything and then reports how far it
got. Every process the benchmark starts is stopped by its PID and the database dropped on
the way out, also after Ctrl-C, SIGTERM or a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import orjson

from machine import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from sqlalchemy import Engine, create_engine, inspect, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from xavyo_siem import delivery_health  # noqa: E402
from xavyo_siem import destinations as manage  # noqa: E402
from xavyo_siem.crypto import KeyRing, new_key_text  # noqa: E402
from xavyo_siem.delivery import credential_binding  # noqa: E402
from xavyo_siem.destinations import DestinationSpec, check_destination  # noqa: E402
from xavyo_siem.egress import EgressGuard  # noqa: E402
from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination  # noqa: E402
from xavyo_siem.sample import generate_events, tenant_ids  # noqa: E402
from xavyo_siem.store import START, append_events, make_engine, upgrade  # noqa: E402
from xavyo_siem.store import destinations as destination_rows  # noqa: E402
from xavyo_siem.store.changes import announce_new_events  # noqa: E402
from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE  # noqa: E402

PG_ADMIN: Final = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HEC_TOKEN: Final = "00000000-0000-4000-8000-000000000001"
EGRESS_ALLOW: Final = "127.0.0.1/32"
READY_GAUGE: Final = "xavyo_siem_worker_destinations"
STATEMENTS_COUNTER: Final = "xavyo_siem_store_statements_total"
PHASES: Final = ("start", "idle", "backlog", "steady", "steady-faults", "memory", "two-workers")
DEFAULT_PHASES: Final = "start,idle,backlog,steady,memory,two-workers"
FILE, SYSLOG, HEC = "file", "syslog_tcp", "splunk_hec"
# The first two fields of every JSON event this project writes (format/jsonl.py).
EVENT_IDS: Final = re.compile(rb'\{"event_id":"([0-9a-f-]{36})","tenant_id":"([0-9a-f-]{36})"')
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")

Key = tuple[int, str]  # (destination index, event id): one delivery


def say(message: str) -> None:
    """Progress, on stderr; the results go to stdout at the end."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the scenario ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Tenants by rank (0: the busiest), their Zipf weights, and which destination is which."""

    tenants: list[UUID]
    kinds: list[str]  # by destination index
    rank_of_destination: list[int]

    @classmethod
    def make(cls, args: argparse.Namespace) -> Layout:
        count, tenants = args.destinations, args.tenants
        ranks = [index % tenants for index in range(count)]
        kinds = [FILE] * count
        by_rank: dict[int, list[int]] = defaultdict(list)
        for index, rank in enumerate(ranks):
            by_rank[rank].append(index)
        # Spread each kind over the ranks, busiest to quietest, one per tenant; the HEC ones
        # half a stride after the syslog ones so that both see large and small tenants.
        for kind, wanted, offset in ((SYSLOG, args.syslog, 0.0), (HEC, args.hec, 0.5)):
            for k in range(wanted):
                rank = min(int((k + offset) * tenants / wanted), tenants - 1)
                for candidate in itertools.chain(range(rank, tenants), range(rank)):
                    free = [i for i in by_rank[candidate] if kinds[i] == FILE]
                    if free and all(kinds[i] != kind for i in by_rank[candidate]):
                        kinds[free[0]] = kind
                        break
                else:
                    raise SystemExit(f"cannot place {wanted} {kind} destinations, one per tenant")
        return cls(tenant_ids(tenants, args.seed), kinds, ranks)

    def destinations_of(self) -> list[list[int]]:
        """Destination indexes by tenant rank."""
        out: list[list[int]] = [[] for _ in self.tenants]
        for index, rank in enumerate(self.rank_of_destination):
            out[rank].append(index)
        return out

    def count(self, kind: str) -> int:
        return self.kinds.count(kind)


def zipf_weights(tenants: int, exponent: float) -> list[float]:
    """Running totals of the Zipf weights 1 / (rank + 1) ** exponent, for `random.choices`."""
    return list(itertools.accumulate(1.0 / (rank + 1) ** exponent for rank in range(tenants)))


def zipf_ranks(rng: random.Random, cumulative: Sequence[float], count: int) -> list[int]:
    """`count` tenant ranks drawn with the weights `cumulative` (running totals)."""
    return rng.choices(range(len(cumulative)), cum_weights=cumulative, k=count)


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database; dropped on the way out (WITH FORCE)."""
    name = f"xavyo_siem_bench_tenants_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        say(f"dropped database {name}")


def service_url(url: str, args: argparse.Namespace) -> str:
    """`url` as the login role `--service-role` (made if missing, in both group roles, so
    that the workers run under row-level security); the benchmark itself stays the owner."""
    role = args.service_role
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                "DO $$ BEGIN"
                f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN"
                f" CREATE ROLE {role} LOGIN; END IF; END $$"
            )
        )
        conn.execute(text(f"GRANT {SERVICE_ROLE}, {WORKER_ROLE} TO {role}"))
    admin.dispose()
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def spec_for(kind: str, name: str, endpoint: str, options: dict[str, str]) -> DestinationSpec:
    return DestinationSpec(
        name=name,
        delivery_type=DeliveryType(kind),
        format=ExportFormat.JSON,
        endpoint=endpoint,
        options={"start": "beginning", **options},
        rate_limit=None,  # throughput is measured: no rate limit (the default would cap it)
    )


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where each kind of destination points."""

    files: Path
    syslog_port: int
    syslog_framing: str
    hec_port: int
    hec_ca_file: str

    def spec(self, kind: str, index: int) -> DestinationSpec:
        name = f"d{index}"
        if kind == SYSLOG:
            endpoint = f"tcp://127.0.0.1:{self.syslog_port}"
            return spec_for(kind, name, endpoint, {"framing": self.syslog_framing})
        if kind == HEC:
            endpoint = f"https://127.0.0.1:{self.hec_port}"
            return spec_for(kind, name, endpoint, {"ca_file": self.hec_ca_file})
        return spec_for(kind, name, f"file://{self.file_of(index)}", {})

    def file_of(self, index: int) -> Path:
        return self.files / f"d{index}.jsonl"


def create_destinations(
    engine: Engine, layout: Layout, endpoints: Endpoints, keyring: KeyRing, how: str
) -> float:
    """Store every destination; the seconds it took.

    `api`: `add_destination` for each (validation, SSRF check, its own transaction).
    `store`: each kind's settings validated once by `check_destination`, then the rows written
    with the store's `insert_destination`, 500 destinations per transaction.
    """
    began = time.perf_counter()
    egress = EgressGuard(allow=(EGRESS_ALLOW,))
    if how == "api":
        for index, kind in enumerate(layout.kinds):
            manage.add_destination(
                engine, tenant_id=layout.tenants[layout.rank_of_destination[index]],
                spec=endpoints.spec(kind, index), secret=HEC_TOKEN if kind == HEC else None,
                keyring=keyring, development=False, egress=egress,
            )  # fmt: skip
        return time.perf_counter() - began
    for kind in set(layout.kinds):
        check_destination(endpoints.spec(kind, 0), development=False)
    now = datetime.now(UTC)
    for first in range(0, len(layout.kinds), 500):
        with engine.begin() as conn:
            for index in range(first, min(first + 500, len(layout.kinds))):
                kind = layout.kinds[index]
                spec = endpoints.spec(kind, index)
                tenant = layout.tenants[layout.rank_of_destination[index]]
                ident = uuid.uuid4()
                destination = SiemDestination(
                    id=ident, tenant_id=tenant, name=spec.name, delivery_type=spec.delivery_type,
                    format=spec.format, endpoint=spec.endpoint, options=dict(spec.options),
                    created_at=now, updated_at=now,
                )  # fmt: skip
                sealed = (
                    keyring.seal(
                        HEC_TOKEN, tenant_id=tenant, destination_id=ident,
                        binding=credential_binding(destination),
                    )
                    if kind == HEC
                    else None
                )  # fmt: skip
                destination_rows.insert_destination(
                    conn, destination=destination, sealed_secret=sealed, cursor=START
                )
    return time.perf_counter() - began


def store_events(
    engine: Engine, layout: Layout, tenants: int, count: int, exponent: float, seed: int
) -> list[tuple[str, int]]:
    """Store `count` events over the `tenants` busiest tenants (Zipf among them), in one
    transaction; (event id, tenant rank) of each."""
    ranks = zipf_ranks(random.Random(f"store:{seed}"), zipf_weights(tenants, exponent), count)
    events = [
        replace(event, tenant_id=layout.tenants[rank])
        for event, rank in zip(generate_events(count, 1, seed=seed), ranks, strict=True)
    ]
    with engine.begin() as conn:
        append_events(conn, events)
    return [(str(event.event_id), rank) for event, rank in zip(events, ranks, strict=True)]


def store_backfill(engine: Engine, count: int, seed: int) -> UUID:
    """Store `count` events of one tenant (no destination yet); that tenant's id."""
    events = generate_events(count, 1, seed=seed)
    tenant = tenant_ids(1, seed)[0]
    while True:
        chunk = list(itertools.islice(events, 100_000))
        if not chunk:
            break
        with engine.begin() as conn:
            append_events(conn, chunk)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE audit_events"))
    return tenant


# --- peers and the appender (each runs as this script in its own process) -------------------


class ArrivalLog:
    """Appends `event_id tenant_id unix_time` lines, one write per batch of arrivals."""

    def __init__(self, path: Path) -> None:
        self.out = path.open("ab", buffering=0)

    def note(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        now = f" {time.time():.6f}\n".encode()
        lines = b"".join(b"%s %s%s" % (event_id, tenant, now) for event_id, tenant in pairs)
        if lines:
            self.out.write(lines)


class SyslogArrivals(asyncio.Protocol):
    """One syslog TCP connection: octet-counted or LF-framed messages (told apart by their
    first byte: a digit starts an octet count, `<` a message), each noted on arrival."""

    def __init__(self, log: ArrivalLog) -> None:
        self.log = log
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        found: list[tuple[bytes, bytes]] = []
        at = 0
        while at < len(buffer):
            if 48 <= buffer[at] <= 57:
                space = buffer.find(b" ", at)
                if space < 0:
                    break
                end = space + 1 + int(buffer[at:space])
                if end > len(buffer):
                    break
                message = bytes(buffer[space + 1 : end])
            else:
                newline = buffer.find(b"\n", at)
                if newline < 0:
                    break
                end = newline + 1
                message = bytes(buffer[at:newline])
            at = end
            if match := EVENT_IDS.search(message):
                found.append((match[1], match[2]))
        del buffer[:at]
        self.log.note(found)


async def serve_until_told(started: dict[str, Any]) -> None:
    """Print `started` as a JSON line, then wait for `stop` (or end of input) on stdin."""
    print(json.dumps(started), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (line := await reader.readline()) and line.strip() != b"stop":
        pass


async def syslog_peer(arrivals: Path) -> None:
    log = ArrivalLog(arrivals)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: SyslogArrivals(log), "127.0.0.1", 0)
    await serve_until_told({"port": listener.sockets[0].getsockname()[1]})
    listener.close()


async def hec_peer(arrivals: Path, tls_dir: Path) -> None:
    """The strict test HEC, noting when each accepted event arrived."""
    from peers.hec_server import HecServer, make_tls

    log = ArrivalLog(arrivals)

    class TimingHec(HecServer):
        def _keep(self, envelopes: list[dict[str, Any]]) -> None:
            super()._keep(envelopes)
            found = []
            for envelope in envelopes:
                event = envelope["event"]
                if isinstance(event, str) and event.startswith("{"):
                    event = orjson.loads(event)
                if isinstance(event, dict):
                    found.append(
                        (str(event["event_id"]).encode(), str(event["tenant_id"]).encode())
                    )
            log.note(found)

    tls_dir.mkdir(parents=True, exist_ok=True)
    tls = make_tls(tls_dir)
    server = TimingHec(token=HEC_TOKEN, tls=tls, record=False)
    await server.start()
    await serve_until_told({"port": server.port, "ca_file": str(tls.ca_file)})
    await server.stop()


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """What the appender process does: `rate` events/s for `seconds`, Zipf over `tenants`."""

    url: str
    tenants: list[str]
    zipf: float
    rate: float
    seconds: float
    seed: int
    commit_interval: float
    out: str


def appender(plan: AppendPlan) -> None:
    """Append events in small committed batches at a steady rate; note each event's commit
    time as `event_id rank unix_time` lines in `plan.out`. SIGTERM ends it early."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = make_engine(plan.url)
    tenants = [UUID(t) for t in plan.tenants]
    cumulative = zipf_weights(len(tenants), plan.zipf)
    rng = random.Random(f"append:{plan.seed}")
    total = int(plan.rate * plan.seconds)
    chunk = max(1, round(plan.rate * plan.commit_interval))
    events = generate_events(total, 1, seed=plan.seed, start=datetime.now(UTC))
    sent, behind = 0, 0.0
    began = time.perf_counter()
    with open(plan.out, "w", encoding="ascii") as out:
        while sent < total and not stop.is_set():
            ranks = zipf_ranks(rng, cumulative, min(chunk, total - sent))
            batch = [replace(next(events), tenant_id=tenants[r]) for r in ranks]
            with engine.begin() as conn:
                append_events(conn, batch)
            moment = f"{time.time():.6f}"
            announce_new_events(engine)  # as ingest does once it committed
            out.write(
                "".join(f"{e.event_id} {r} {moment}\n" for e, r in zip(batch, ranks, strict=True))
            )
            out.flush()
            sent += len(batch)
            pause = began + sent / plan.rate - time.perf_counter()
            if pause > 0:
                stop.wait(pause)
            else:
                behind = max(behind, -pause)
    engine.dispose()
    elapsed = time.perf_counter() - began
    print(json.dumps({"events": sent, "seconds": elapsed, "behind_s": behind}), flush=True)


class Child:
    """This script in another process (a peer or the appender), stopped by its PID."""

    def __init__(self, role: str, *args: str, log: Path) -> None:
        self.role = role
        self.log = log
        with log.open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--child", role, *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                text=True, start_new_session=True,
            )  # fmt: skip

    def first_line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{self.role} did not start (exit status {self.process.poll()})")
        return dict(json.loads(line))

    def stop(self) -> None:
        """`stop` on its input (the peers), then SIGTERM (the appender), then SIGKILL."""
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.process.stdin is not None
                self.process.stdin.write("stop\n")
                self.process.stdin.flush()
            for escalate, wait in ((self.process.terminate, 3), (self.process.kill, 10)):
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    escalate()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


# --- what reached the destinations ----------------------------------------------------------


class Tail:
    """The complete lines another process appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.modified = 0.0  # the file's mtime when last read: the latest write before it

    def read(self) -> bytes:
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return b""
        size, self.modified = found.st_size, found.st_mtime
        if size <= self.offset:
            return b""
        with self.path.open("rb") as source:
            source.seek(self.offset)
            data = source.read(size - self.offset)
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return data[:cut]


class Receipts:
    """Every delivery seen so far: (destination index, event id) → first arrival time.

    Syslog and HEC arrival times are the peers' own. A file delivery's is the file's mtime
    when a poll found it: the time of the last write before that poll, exact for a batch that
    was the only one written since the previous poll and late by at most one poll interval
    otherwise; so only files polled often (`poll(files=sample)`) give latencies.
    """

    def __init__(self, layout: Layout, endpoints: Endpoints, syslog: Path, hec: Path) -> None:
        self.first: dict[Key, float] = {}
        self.duplicates = 0
        self.files = {
            index: Tail(endpoints.file_of(index))
            for index, kind in enumerate(layout.kinds)
            if kind == FILE
        }
        self.arrivals = {SYSLOG: Tail(syslog), HEC: Tail(hec)}
        self.by_tenant: dict[str, dict[str, int]] = {SYSLOG: {}, HEC: {}}
        for index, kind in enumerate(layout.kinds):
            if kind in self.by_tenant:
                tenant = str(layout.tenants[layout.rank_of_destination[index]])
                self.by_tenant[kind][tenant] = index
        self.counted: dict[Path, tuple[Tail, int]] = {}

    def _seen(self, key: Key, moment: float) -> None:
        if key in self.first:
            self.duplicates += 1
        else:
            self.first[key] = moment

    def poll(self, files: Iterable[int] | None = None) -> None:
        """Read what arrived at the peers, and in `files` (default: every file)."""
        for kind, tail in self.arrivals.items():
            owners = self.by_tenant[kind]
            for line in tail.read().splitlines():
                event_id, tenant, moment = line.decode().split()
                if (index := owners.get(tenant)) is not None:
                    self._seen((index, event_id), float(moment))
        for index in self.files if files is None else files:
            tail = self.files[index]
            for match in EVENT_IDS.finditer(tail.read()):
                self._seen((index, match[1].decode()), tail.modified)

    def count_lines(self, path: Path) -> int:
        """Lines in `path` now (read incrementally, ids not kept: for a large backfill)."""
        tail, lines = self.counted.get(path) or (Tail(path), 0)
        lines += tail.read().count(b"\n")
        self.counted[path] = (tail, lines)
        return lines

    def wait_for(self, expected: set[Key], deadline: float, what: str) -> int:
        """Poll until every expected delivery was seen or `deadline`; how many were seen.
        Only the files that still miss a delivery are read again: the observer keeps off
        the CPU the worker needs (a file's times are its mtimes, whenever it is read)."""
        self.poll()
        missing = {key for key in expected if key not in self.first}
        shown = time.monotonic()
        while missing and time.monotonic() < deadline:
            time.sleep(0.2)
            self.poll(files={index for index, _ in missing if index in self.files})
            missing = {key for key in missing if key not in self.first}
            if time.monotonic() - shown > 10:
                say(f"{what}: {len(expected) - len(missing):,} of {len(expected):,} deliveries")
                shown = time.monotonic()
        return len(expected) - len(missing)


def expected_keys(events: Iterable[tuple[str, int]], destinations: list[list[int]]) -> set[Key]:
    return {(index, event_id) for event_id, rank in events for index in destinations[rank]}


# --- workers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metric_value(exposition: str, name: str) -> float | None:
    """The sum of a metric's samples over its labels, or None when it is not exposed."""
    total = None
    for line in exposition.splitlines():
        if line.startswith((f"{name} ", f"{name}{{")):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


class WorkerProcess:
    """One `xavyo-siem run`, its metrics port, and its memory sampled from /proc."""

    def __init__(self, label: str, url: str, key: str, log: Path, extra: Sequence[str]) -> None:
        self.label = label
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "XAVYO_SIEM_DATABASE_URL": url,
            "XAVYO_SIEM_SECRET_KEY": key,
            "XAVYO_SIEM_EGRESS_ALLOW": EGRESS_ALLOW,
        }
        env.pop("XAVYO_SIEM_SECRET_KEY_FILE", None)
        self.log = log
        self.started = time.time()
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "xavyo_siem", "run", "--metrics-port",
                 str(self.metrics_port), *extra],
                env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pid = self.process.pid
        self.rss_kb = 0
        self.peak_kb = 0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def sample(self) -> None:
        """Note the current RSS and the high-water mark (VmHWM) while the process lives."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss_kb = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, from /proc/PID/stat."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU time so far, from /proc/PID/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS

    def metrics(self) -> str | None:
        """The Prometheus exposition, or None while the port does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return str(reply.read().decode())
        except (OSError, urllib.error.URLError):
            return None

    def owns(self, owner: str) -> bool:
        """Whether a lease owner name is this process's (today's names hold the PID)."""
        return f":{self.pid}:" in owner

    def stop(self, timeout: float = 30.0) -> float | None:
        """SIGTERM, wait; seconds until it exited, None if it had to be killed."""
        if not self.alive:
            return 0.0
        began = time.perf_counter()
        self.process.terminate()
        try:
            self.process.wait(timeout)
            return time.perf_counter() - began
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Sampler(threading.Thread):
    """Samples every live worker's memory four times a second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.workers: list[WorkerProcess] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            for worker in list(self.workers):
                if worker.alive:
                    worker.sample()


# --- looking at the store ------------------------------------------------------------------


class StoreProbe:
    """Lease counts from the bench database; activity counters from the `postgres` database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.database = make_url(url).database
        self.admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine

    def release(self) -> None:
        """Close the bench's own connections to the bench database."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def leases_by_owner(self) -> dict[str, int] | None:
        """Rows of `leases` held, by owner (a released lease has no owner); None when the
        store has no such table."""
        if not inspect(self.engine).has_table("leases"):
            return None
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT owner, count(*) FROM leases WHERE owner <> '' GROUP BY owner")
            )
            return {str(owner): int(count) for owner, count in rows}

    def transactions(self) -> int:
        with self.admin.connect() as conn:
            value = conn.execute(
                text(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :db"
                ),
                {"db": self.database},
            ).scalar_one()
        return int(value)

    def connections(self) -> int:
        with self.admin.connect() as conn:
            value = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db"),
                {"db": self.database},
            ).scalar_one()
        return int(value)

    def server_version(self) -> str:
        with self.admin.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())

    def close(self) -> None:
        self.release()
        self.admin.dispose()


# --- the phases -------------------------------------------------------------------------------


@dataclass(slots=True)
class Readiness:
    """How long until the workers held (and had loaded) every destination, as far as known."""

    seconds: float | None  # None: not reached before the deadline
    held: int
    method: str


@dataclass(slots=True)
class Report:
    """The tables printed at the end."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    latency: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, phase: str, measure: str, result: str) -> None:
        self.rows.append((phase, measure, result))
        say(f"{phase}: {measure}: {result}")


def percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


class Bench:
    """The database, the peers, the workers, and the phases run against them."""

    def __init__(self, args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.work = work
        self.stack = stack
        self.report = Report()
        self.layout = Layout.make(args)
        self.destinations = self.layout.destinations_of()
        self.count = len(self.layout.kinds)  # enabled destinations the workers must hold
        self.key = new_key_text()
        self.keyring = KeyRing.parse(self.key)
        self.worker_args = shlex.split(args.worker_args)
        self.workers: list[WorkerProcess] = []
        self.single_peak_kb = 0
        self.ready_rss_kb: int | None = None
        self.started_once = False
        (work / "files").mkdir()
        (work / "logs").mkdir()
        # The exit stack unwinds in reverse: workers stop before the database is dropped.
        self.url = stack.enter_context(bench_database())
        self.probe = StoreProbe(self.url)
        stack.callback(self.probe.close)
        self.sampler = Sampler()
        self.sampler.start()
        stack.callback(self.sampler.done.set)
        stack.callback(self._stop_workers)
        self.postgres_version = self.probe.server_version()
        self.backfill_tenant: UUID | None = None
        say(f"database {self.probe.database} on PostgreSQL {self.postgres_version}")
        syslog_arrivals, hec_arrivals = work / "syslog.arrivals", work / "hec.arrivals"
        syslog = self._child("syslog", "--arrivals", str(syslog_arrivals))
        hec = self._child("hec", "--arrivals", str(hec_arrivals), "--tls-dir", str(work / "tls"))
        syslog_info, hec_info = syslog.first_line(60), hec.first_line(60)
        self.endpoints = Endpoints(
            work / "files", syslog_info["port"], args.syslog_framing,
            hec_info["port"], hec_info["ca_file"],
        )  # fmt: skip
        self.receipts = Receipts(self.layout, self.endpoints, syslog_arrivals, hec_arrivals)

    def _child(self, role: str, *args: str) -> Child:
        child = Child(role, *args, log=self.work / "logs" / f"{role}.log")
        self.stack.callback(child.stop)
        return child

    def _stop_workers(self) -> None:
        for worker in self.workers:
            if worker.alive:
                say(f"stopping worker {worker.label} (pid {worker.pid})")
                worker.stop(10)

    # -- set-up ----------------------------------------------------------------------------

    def set_up(self) -> None:
        args, layout = self.args, self.layout
        counts = ", ".join(f"{layout.count(k):,} {k}" for k in (FILE, SYSLOG, HEC))
        say(f"creating {self.count:,} destinations ({counts}) with --create {args.create}")
        engine = self.probe.engine
        seconds = create_destinations(engine, layout, self.endpoints, self.keyring, args.create)
        self.report.notes.append(
            f"{self.count:,} destinations ({counts}) over {len(layout.tenants):,} tenants "
            f"(Zipf s={args.zipf}), created with `--create {args.create}` in {seconds:.1f} s "
            f"({self.count / seconds:,.0f}/s)"
        )
        say(self.report.notes[-1])
        if "steady-faults" in args.phase_list:
            say(f"storing {args.backfill_events:,} events of the backfill tenant")
            began = time.perf_counter()
            self.backfill_tenant = store_backfill(engine, args.backfill_events, args.seed + 7)
            self.report.notes.append(
                f"{args.backfill_events:,} events of the backfill tenant stored in "
                f"{time.perf_counter() - began:.1f} s, before any worker ran"
            )
            say(self.report.notes[-1])
        self.probe.release()

    # -- workers ---------------------------------------------------------------------------

    def start_worker(self, label: str) -> WorkerProcess:
        log = self.work / "logs" / f"worker-{label}-{len(self.workers)}.log"
        url = self.url if self.args.service_role is None else service_url(self.url, self.args)
        worker = WorkerProcess(label, url, self.key, log, self.worker_args)
        self.workers.append(worker)
        self.sampler.workers.append(worker)
        say(f"worker {label} started (pid {worker.pid}, metrics port {worker.metrics_port})")
        return worker

    def running(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.alive]

    def held(self, workers: Sequence[WorkerProcess]) -> tuple[int, str] | None:
        """Destinations the workers hold and have loaded (the gauge when they all expose it,
        else unexpired lease rows); None until every metrics port answers."""
        values = []
        for worker in workers:
            exposition = worker.metrics()
            if exposition is None:
                return None
            values.append(metric_value(exposition, READY_GAUGE))
        if all(value is not None for value in values):
            return int(sum(v for v in values if v is not None)), f"gauge {READY_GAUGE}"
        leases = self.probe.leases_by_owner()
        return (0 if leases is None else sum(leases.values())), "unexpired rows of `leases`"

    def wait_ready(self, workers: Sequence[WorkerProcess], deadline: float) -> Readiness:
        began = min(worker.started for worker in workers)
        seen = Readiness(None, 0, "metrics port not answering")
        while time.monotonic() < deadline:
            if not all(worker.alive for worker in workers):
                say("a worker exited:\n" + "\n".join(w.log_tail() for w in workers))
                break
            found = self.held(workers)
            if found is not None:
                seen.held, seen.method = found
                if seen.held >= self.count:
                    seen.seconds = time.time() - began
                    break
            time.sleep(0.1)
        self.probe.release()
        return seen

    def ensure_one_worker(self, deadline: float) -> WorkerProcess:
        """The single running worker, started (and its start reported) when there is none."""
        running = self.running()
        if len(running) == 1:
            return running[0]
        self.stop_all("to run one worker")
        worker = self.start_worker("A")
        self._report_start(worker, self.wait_ready([worker], deadline))
        return worker

    def _report_start(self, worker: WorkerProcess, ready: Readiness, phase: str = "start") -> None:
        worker.sample()
        if ready.seconds is None:
            result = f"timed out: {ready.held:,} of {self.count:,}"
        else:
            result = f"{ready.seconds:.1f} s"
            if self.ready_rss_kb is None:
                self.ready_rss_kb = worker.rss_kb
        if phase == "start" and self.started_once:
            phase = "start (again)"
        self.started_once = True
        self.report.add(
            phase,
            f"process start → {self.count:,} destinations ready ({ready.method})",
            result,
        )

    def stop_all(self, why: str) -> None:
        for worker in self.running():
            worker.sample()
            self.single_peak_kb = max(self.single_peak_kb, worker.peak_kb)
            seconds = worker.stop()
            took = "killed after 30 s" if seconds is None else f"{seconds:.1f} s"
            self.report.add("stop", f"worker {worker.label} SIGTERM → exit ({why})", took)

    # -- phases ----------------------------------------------------------------------------

    def deadline(self) -> float:
        return time.monotonic() + float(self.args.phase_timeout)

    def phase_start(self) -> None:
        self.stop_all("before the start phase")
        worker = self.start_worker("A")
        self._report_start(worker, self.wait_ready([worker], self.deadline()))

    def phase_idle(self) -> None:
        worker = self.ensure_one_worker(self.deadline())
        seconds = self.args.idle_seconds
        self.probe.release()
        time.sleep(2)  # let the start-up's last writes pass
        statements0 = self._statements(worker)
        xacts0, cpu0, t0 = self.probe.transactions(), worker.cpu_seconds(), time.perf_counter()
        rss_max = 0
        connections = 0
        end = t0 + seconds
        while (now := time.perf_counter()) < end and worker.alive:
            worker.sample()
            rss_max = max(rss_max, worker.rss_kb)
            if now - t0 > seconds / 2 and not connections:
                connections = self.probe.connections()
            time.sleep(min(1.0, end - now))
        elapsed = time.perf_counter() - t0
        cpu = worker.cpu_seconds() - cpu0
        xacts = self.probe.transactions() - xacts0
        statements1 = self._statements(worker)
        label = f"idle ({seconds:g} s)"
        self.report.add(label, "worker CPU, per cent of one core", f"{100 * cpu / elapsed:.1f} %")
        self.report.add(label, "worker RSS (max)", f"{rss_max / 1024:.0f} MB")
        if statements0 is None or statements1 is None:
            self.report.add(
                label, f"store statements/s (`{STATEMENTS_COUNTER}`)", "no such counter"
            )
        else:
            rate = (statements1 - statements0) / elapsed
            self.report.add(label, f"store statements/s (`{STATEMENTS_COUNTER}`)", f"{rate:,.1f}")
        self.report.add(
            label, "bench database transactions/s (pg_stat_database)", f"{xacts / elapsed:,.1f}"
        )
        self.report.add(label, "worker connections to the store", f"{connections}")

    def _statements(self, worker: WorkerProcess) -> float | None:
        exposition = worker.metrics()
        return None if exposition is None else metric_value(exposition, STATEMENTS_COUNTER)

    def phase_backlog(self) -> None:
        args = self.args
        self.stop_all("before the backlog is stored")
        tenants = min(args.backlog_tenants, len(self.layout.tenants))
        say(f"storing {args.backlog_events:,} backlog events over {tenants:,} tenants")
        stored = store_events(
            self.probe.engine, self.layout, tenants, args.backlog_events, args.zipf, 11
        )
        self.probe.release()
        expected = expected_keys(stored, self.destinations)
        deadline = self.deadline()
        worker = self.start_worker("A")
        ready = self.wait_ready([worker], deadline)
        self._report_start(worker, ready, phase="backlog")
        user_at_ready, system_at_ready = worker.cpu_split()
        reached = self.receipts.wait_for(expected, deadline, "backlog")
        user, system = worker.cpu_split()  # idle once the last delivery was made
        user, system = user - user_at_ready, system - system_at_ready
        cpu = user + system
        label = f"backlog ({args.backlog_events:,} events, {tenants:,} tenants)"
        what = f"{len(expected):,} deliveries"
        if reached < len(expected):
            self.report.add(label, f"{what} reached their destinations", f"timed out: {reached:,}")
            return
        moments = [self.receipts.first[key] for key in expected]
        done = max(moments)
        spans = [("process start", done - worker.started)]
        if ready.seconds is not None:
            spans.append(("ready", done - worker.started - ready.seconds))
        spans.append(("first receipt", done - min(moments)))
        for start, seconds in spans:
            if seconds <= 0:
                result = "none: all were received before that"
            elif seconds < 0.5:
                result = f"{seconds:.1f} s (too short to give a rate)"
            else:
                result = (
                    f"{seconds:.1f} s: {args.backlog_events / seconds:,.0f} events/s, "
                    f"{len(expected) / seconds:,.0f} deliveries/s"
                )
            self.report.add(label, f"{start} → all {what} received", result)
        if ready.seconds is not None and done > worker.started + ready.seconds:
            share = cpu / (done - worker.started - ready.seconds)
            self.report.add(
                label,
                "worker CPU from ready to the last delivery",
                f"{cpu:.2f} s ({share:.0%} of one core; {cpu / len(expected) * 1e6:.0f} µs "
                f"per delivery; user {user:.2f} s, system {system:.2f} s)",
            )

    def append(self, seconds: float, seed: int, during: Callable[[float], None]) -> list[str]:
        """Run the appender for `seconds`, calling `during(elapsed)` about every file poll;
        its commit lines (`event_id rank unix_time`)."""
        out = self.work / f"commits-{seed}.txt"
        plan = AppendPlan(
            self.url, [str(t) for t in self.layout.tenants], self.args.zipf, self.args.rate,
            seconds, seed, self.args.commit_interval, str(out),
        )  # fmt: skip
        plan_file = self.work / f"plan-{seed}.json"  # thousands of tenants: too long for argv
        plan_file.write_text(json.dumps(asdict(plan)))
        child = self._child("append", "--plan", str(plan_file))
        began = time.monotonic()
        limit = began + seconds + self.args.phase_timeout
        while child.process.poll() is None and time.monotonic() < limit:
            during(time.monotonic() - began)
            time.sleep(self.args.file_poll)
        if child.process.poll() is None:
            say("the appender overran; stopping it")
            child.process.terminate()
        if child.process.wait(30) != 0:
            trace = child.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError("the appender failed: " + " / ".join(trace))
        assert child.process.stdout is not None
        summary = child.process.stdout.read().strip()
        if summary:
            stats = json.loads(summary.splitlines()[-1])
            if stats["behind_s"] > 1:
                self.report.notes.append(
                    f"the appender fell behind its schedule by up to {stats['behind_s']:.1f} s"
                )
        return out.read_text().splitlines() if out.exists() else []

    def latency_rows(
        self, phase: str, commits: list[str], sample: set[int], skip_ranks: set[int]
    ) -> None:
        """Commit → receipt per kind of destination, tenants in `skip_ranks` left out."""
        committed: dict[str, float] = {}
        events: list[tuple[str, int]] = []
        for line in commits:
            event_id, rank, committed_at = line.split()
            if int(rank) in skip_ranks:
                continue
            committed[event_id] = float(committed_at)
            events.append((event_id, int(rank)))
        expected = expected_keys(events, self.destinations)
        reached = self.receipts.wait_for(expected, self.deadline(), phase)
        kinds = self.layout.kinds
        delays: dict[str, list[float]] = defaultdict(list)
        wanted: dict[str, int] = defaultdict(int)
        measured: dict[str, set[int]] = defaultdict(set)
        for index, event_id in expected:
            kind = kinds[index]
            if kind == FILE and index not in sample:
                continue
            wanted[kind] += 1
            measured[kind].add(index)
            if (moment := self.receipts.first.get((index, event_id))) is not None:
                delays[kind].append(moment - committed[event_id])
        for kind in (SYSLOG, HEC, FILE):
            found = sorted(delays[kind])
            polled = f", polled every {self.args.file_poll * 1000:g} ms" if kind == FILE else ""
            peer = f"{kind} ({len(measured[kind]):,} destinations with events{polled})"
            row = f"| {phase} | {peer} | {len(found):,} of {wanted[kind]:,} "
            if found:
                row += (
                    f"| {ms(statistics.median(found))} | {ms(percentile(found, 0.99))} "
                    f"| {ms(found[-1])} |"
                )
            else:
                row += "| | | |"
            self.report.latency.append(row)
        self.report.add(
            phase,
            f"deliveries of {len(events):,} events received",
            f"{reached:,} of {len(expected):,}",
        )

    def file_sample(self) -> set[int]:
        files = [i for i, kind in enumerate(self.layout.kinds) if kind == FILE]
        step = max(1, len(files) // max(1, self.args.file_sample))
        return set(files[::step][: self.args.file_sample])

    def phase_steady(self) -> None:
        worker = self.ensure_one_worker(self.deadline())
        sample = self.file_sample()
        self.receipts.poll()
        warmup = self.args.steady_warmup
        if warmup > 0:
            # Most destinations get their first event here: files are made, transports
            # opened. Reported apart: a deployment's destinations have delivered before.
            commits = self.append(warmup, 20, lambda _: self.receipts.poll(files=sample))
            self.latency_rows(
                f"steady warm-up ({self.args.rate:,.0f} events/s, {warmup:g} s: first deliveries)",
                commits, sample, set(),
            )  # fmt: skip
        label = f"steady ({self.args.rate:,.0f} events/s, {self.args.steady_seconds:g} s)"
        cpu0, t0 = worker.cpu_seconds(), time.perf_counter()
        commits = self.append(
            self.args.steady_seconds, 21, lambda _: self.receipts.poll(files=sample)
        )
        cpu, elapsed = worker.cpu_seconds() - cpu0, time.perf_counter() - t0
        self.latency_rows(label, commits, sample, set())
        deliveries = len(expected_keys([(c.split()[0], int(c.split()[1])) for c in commits],
                                       self.destinations))  # fmt: skip
        self.report.add(
            label,
            "worker CPU while appending: per cent of one core; per delivery",
            f"{100 * cpu / elapsed:.0f} %; {1e6 * cpu / max(deliveries, 1):.0f} µs",
        )

    def phase_steady_faults(self) -> None:
        args = self.args
        assert self.backfill_tenant is not None
        self.ensure_one_worker(self.deadline())
        down_rank = min(2, len(self.layout.tenants) - 1)
        with socket.socket() as closed_port:  # bound, never listening: connections refused
            closed_port.bind(("127.0.0.1", 0))
            port = closed_port.getsockname()[1]
            engine = self.probe.engine
            egress = EgressGuard(allow=(EGRESS_ALLOW,))
            backfill_file = self.work / "files" / "backfill.jsonl"
            backfill = manage.add_destination(
                engine, tenant_id=self.backfill_tenant,
                spec=spec_for(FILE, "backfill", f"file://{backfill_file}", {}),
                secret=None, keyring=self.keyring, development=False, egress=egress,
            )  # fmt: skip
            down = manage.add_destination(
                engine, tenant_id=self.layout.tenants[down_rank],
                spec=spec_for(SYSLOG, "down", f"tcp://127.0.0.1:{port}", {}),
                secret=None, keyring=self.keyring, development=False, egress=egress,
            )  # fmt: skip
            self.count += 2
            label = f"steady-faults ({args.rate:,.0f} events/s, {args.steady_seconds:g} s)"
            self._wait_for_faults(label, backfill_file, down)
            sample = self.file_sample()
            self.receipts.poll()
            progress: list[tuple[float, int]] = []

            def during(elapsed: float) -> None:
                self.receipts.poll(files=sample)
                progress.append((elapsed, self.receipts.count_lines(backfill_file)))

            commits = self.append(args.steady_seconds, 31, during)
            self.latency_rows(f"{label}, other tenants", commits, sample, {down_rank})
            lines = self.receipts.count_lines(backfill_file)
            began = next((t for t, n in progress if n > 0), None)
            ended = next((t for t, n in progress if n >= args.backfill_events), None)
            if began is None:
                when = "had not begun when the appending ended"
            elif ended is None:
                when = f"began {began:.1f} s into the window, not done when the appending ended"
            elif ended == progress[0][0]:
                when = "all delivered before the window opened, so it overlapped none of it"
            else:
                when = f"from {began:.1f} s to {ended:.1f} s into the window"
            self.report.add(
                label,
                f"backfill of {args.backfill_events:,} events by a new destination",
                f"{lines:,} delivered by the end of the phase; {when}",
            )
            with engine.connect() as conn:
                health = delivery_health.destination_health(conn, down)
            self.report.add(
                label,
                f"destination to a refused port (tenant rank {down_rank}): failures recorded, "
                "circuit, events waiting",
                f"{health.failures:,}, {health.circuit_state.value}, {health.lag_events:,}",
            )
            for destination in (backfill, down):
                manage.set_enabled(
                    engine, tenant_id=destination.tenant_id, destination_id=destination.id,
                    enabled=False,
                )  # fmt: skip
            self.probe.release()
            self.count -= 2

    def _wait_for_faults(self, label: str, backfill_file: Path, down: SiemDestination) -> None:
        """Wait until the backfill's first events arrived and the refused destination recorded
        a failure, so that both faults are on before the window opens; report how long."""
        began = time.monotonic()
        deadline = began + self.args.phase_timeout
        backfilling = failing = None
        while (backfilling is None or failing is None) and time.monotonic() < deadline:
            time.sleep(0.25)
            if backfilling is None and self.receipts.count_lines(backfill_file) > 0:
                backfilling = time.monotonic() - began
            if failing is None:
                with self.probe.engine.connect() as conn:
                    if delivery_health.destination_health(conn, down).failures > 0:
                        failing = time.monotonic() - began
        self.probe.release()
        for what, seconds in (
            ("backfill's first delivery", backfilling),
            ("refused destination's first failure", failing),
        ):
            result = "timed out" if seconds is None else f"{seconds:.1f} s"
            self.report.add(label, f"both destinations added → {what}", result)

    def phase_memory(self) -> None:
        worker = self.running()[0] if len(self.running()) == 1 else None
        if self.ready_rss_kb is None:
            worker = self.ensure_one_worker(self.deadline())
            time.sleep(2)
        if worker is not None:
            worker.sample()
            self.single_peak_kb = max(self.single_peak_kb, worker.peak_kb)
        if self.ready_rss_kb is not None:
            self.report.add(
                "memory",
                f"worker RSS when all {self.count:,} destinations were first ready",
                f"{self.ready_rss_kb / 1024:.0f} MB",
            )
        self.report.add(
            "memory",
            "worker peak RSS (VmHWM) over the one-worker phases so far",
            f"{self.single_peak_kb / 1024:.0f} MB",
        )

    def phase_two_workers(self) -> None:
        args = self.args
        self.stop_all("before two workers start")
        deadline = self.deadline()
        pair = [self.start_worker("A"), self.start_worker("B")]
        ready = self.wait_ready(pair, deadline)
        label = "two-workers"
        if ready.seconds is None:
            self.report.add(label, "both started → all held", f"timed out: {ready.held:,}")
        else:
            self.report.add(
                label, f"both started → {self.count:,} destinations held", f"{ready.seconds:.1f} s"
            )
        shares = self._settled_shares(pair, deadline)
        self.report.add(label, "share of the `leases` rows by owner", self._describe(shares, pair))
        sample = self.file_sample()
        self.receipts.poll()
        duplicates_before = self.receipts.duplicates
        killed: list[tuple[WorkerProcess, float]] = []
        took: list[float] = []
        checked = [0.0]

        def during(elapsed: float) -> None:
            self.receipts.poll(files=sample)
            if not killed and elapsed >= args.failover_seconds / 4:
                by_share = self._shares()
                victim = max(pair, key=lambda w: sum(n for o, n in by_share.items() if w.owns(o)))
                victim.kill()
                killed.append((victim, time.time()))
                say(f"killed worker {victim.label} (pid {victim.pid}) with SIGKILL")
            elif killed and not took and elapsed - checked[0] >= 0.25:
                checked[0] = elapsed
                survivor = next(w for w in pair if w is not killed[0][0])
                if self._holds_all(survivor, killed[0][0]):
                    took.append(time.time() - killed[0][1])

        commits = self.append(args.failover_seconds, 41, during)
        if killed and not took:
            victim, at = killed[0]
            survivor = next(w for w in pair if w is not victim)
            while time.monotonic() < deadline and survivor.alive:
                if self._holds_all(survivor, victim):
                    took.append(time.time() - at)
                    break
                time.sleep(0.2)
        if killed:
            result = f"{took[0]:.1f} s" if took else "timed out"
            self.report.add(label, "kill -9 of the busier worker → the other holds all", result)
        events = [(line.split()[0], int(line.split()[1])) for line in commits]
        expected = expected_keys(events, self.destinations)
        reached = self.receipts.wait_for(expected, self.deadline(), label)
        self.report.add(
            label,
            f"{len(events):,} events appended at {args.rate:,.0f}/s: deliveries received "
            "at least once / lost / repeated",
            f"{reached:,} of {len(expected):,} / {len(expected) - reached:,} / "
            f"{self.receipts.duplicates - duplicates_before:,}",
        )
        self.probe.release()

    def _shares(self) -> dict[str, int]:
        return self.probe.leases_by_owner() or {}

    def _settled_shares(self, pair: Sequence[WorkerProcess], deadline: float) -> dict[str, int]:
        """Lease rows by owner once each worker holds 40-60 % of them (or after 90 s, or at
        the deadline); the time it took is reported."""
        began = time.monotonic()
        deadline = min(deadline, began + 90)
        shares = self._shares()
        while time.monotonic() < deadline:
            total = sum(shares.values())
            if len(shares) == 2 and total and all(0.4 <= n / total <= 0.6 for n in shares.values()):
                self.report.add(
                    "two-workers",
                    "both started → each holds 40-60 % of the leases",
                    f"{time.monotonic() - began:.1f} s",
                )
                break
            time.sleep(0.5)
            shares = self._shares()
        return shares

    def _describe(self, shares: dict[str, int], pair: Sequence[WorkerProcess]) -> str:
        total = sum(shares.values()) or 1
        parts = []
        for owner, count in sorted(shares.items(), key=lambda item: -item[1]):
            name = next((f"worker {w.label}" for w in pair if w.owns(owner)), owner)
            parts.append(f"{name} {count:,} ({100 * count / total:.0f} %)")
        return ", ".join(parts) or "no rows"

    def _holds_all(self, survivor: WorkerProcess, victim: WorkerProcess) -> bool:
        exposition = survivor.metrics()
        gauge = None if exposition is None else metric_value(exposition, READY_GAUGE)
        if gauge is not None:
            return gauge >= self.count
        shares = self.probe.leases_by_owner() or {}
        mine = sum(n for owner, n in shares.items() if survivor.owns(owner))
        if not any(survivor.owns(owner) or victim.owns(owner) for owner in shares):
            mine = max(shares.values(), default=0)  # names that do not tell the PID
        return mine >= self.count

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> None:
        self.set_up()
        steps: dict[str, Callable[[], None]] = {
            "start": self.phase_start,
            "idle": self.phase_idle,
            "backlog": self.phase_backlog,
            "steady": self.phase_steady,
            "steady-faults": self.phase_steady_faults,
            "memory": self.phase_memory,
            "two-workers": self.phase_two_workers,
        }
        for phase in PHASES:
            if phase not in self.args.phase_list:
                continue
            say(f"--- phase {phase}")
            began = time.perf_counter()
            try:
                steps[phase]()
            except Exception as exc:  # report it and go on with the next phase
                self.report.add(phase, "failed", f"{type(exc).__name__}: {exc}")
                for worker in self.workers[-2:]:
                    say(f"worker {worker.label} log:\n{worker.log_tail()}")
            self.report.notes.append(f"phase {phase} took {time.perf_counter() - began:.0f} s")
        self.stop_all("at the end")


def print_report(bench: Bench, began: datetime, machine: str) -> None:
    report = bench.report
    command = ".venv/bin/python benchmarks/bench_tenants.py " + shlex.join(sys.argv[1:])
    print(f"\n`{command.strip()}`\n")
    print(
        f"Measured {began:%Y-%m-%d %H:%M} to {datetime.now(UTC):%H:%M} UTC. Machine: {machine}; "
        f"PostgreSQL {bench.postgres_version} on the same machine.\n"
    )
    for note in report.notes:
        print(f"- {note}")
    print("\n| phase | measure | result |\n| --- | --- | ---: |")
    for phase, measure, result in report.rows:
        print(f"| {phase} | {measure} | {result} |")
    if report.latency:
        print(
            "\n| phase | peer | deliveries received | p50 commit → receipt | p99 | max |\n"
            "| --- | --- | ---: | ---: | ---: | ---: |"
        )
        print("\n".join(report.latency))
    print()


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="See the module docstring for what each phase measures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    scenario = parser.add_argument_group("scenario")
    scenario.add_argument("--destinations", type=int, default=10_000, help="in all")
    scenario.add_argument("--tenants", type=int, default=5_000, help="owning them")
    scenario.add_argument("--syslog", type=int, default=100, help="syslog_tcp destinations")
    scenario.add_argument("--hec", type=int, default=100, help="splunk_hec destinations")
    scenario.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of the tenants")
    scenario.add_argument(
        "--service-role",
        default=None,
        help="workers connect as this login role (made, in the group roles) under row-level"
        " security, instead of as the owner (a superuser, which bypasses it)",
    )
    scenario.add_argument("--seed", type=int, default=1, help="of the tenant ids")
    scenario.add_argument(
        "--syslog-framing", choices=("octet", "lf"), default="octet", help="of syslog_tcp"
    )
    scenario.add_argument(
        "--create",
        choices=("store", "api"),
        default="api",
        help="how destinations are stored: add_destination one by one, or the store's "
        "insert_destination, 500 per transaction",
    )
    phases = parser.add_argument_group("phases")
    phases.add_argument("--phases", default=DEFAULT_PHASES, help=f"of {', '.join(PHASES)}")
    phases.add_argument(
        "--steady-with-faults", action="store_true", help="add the steady-faults phase"
    )
    phases.add_argument("--idle-seconds", type=float, default=30, help="idle: how long")
    phases.add_argument("--backlog-events", type=int, default=50_000, help="backlog: events")
    phases.add_argument(
        "--backlog-tenants", type=int, default=1_000, help="backlog: the busiest N tenants"
    )
    phases.add_argument("--rate", type=float, default=2_000, help="events/s appended (steady)")
    phases.add_argument("--steady-seconds", type=float, default=60, help="steady: how long")
    phases.add_argument(
        "--steady-warmup", type=float, default=20,
        help="steady: seconds of the same traffic first, reported apart (most destinations'"
        " first delivery: files made, transports opened)",
    )  # fmt: skip
    phases.add_argument("--commit-interval", type=float, default=0.05, help="seconds per commit")
    phases.add_argument("--file-sample", type=int, default=100, help="files polled for latency")
    phases.add_argument("--file-poll", type=float, default=0.02, help="their poll interval, s")
    phases.add_argument(
        "--backfill-events", type=int, default=1_000_000, help="steady-faults: backfill size"
    )
    phases.add_argument(
        "--failover-seconds", type=float, default=30, help="appending during two-workers"
    )
    phases.add_argument(
        "--phase-timeout", type=float, default=900, help="longest wait of any phase, s"
    )
    parser.add_argument(
        "--worker-args", default="", help='extra `xavyo-siem run` options, e.g. "--lease-ttl 5"'
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep its files and logs under this directory, not in a temp dir removed at the end",
    )
    parser.add_argument("--child", choices=("syslog", "hec", "append"), help=argparse.SUPPRESS)
    parser.add_argument("--arrivals", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.phase_list = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.steady_with_faults and "steady-faults" not in args.phase_list:
        args.phase_list.append("steady-faults")
    unknown = set(args.phase_list) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if args.syslog + args.hec > args.destinations:
        parser.error("--syslog + --hec must not exceed --destinations")
    return args


def run_child(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its children
    if args.child == "syslog":
        asyncio.run(syslog_peer(args.arrivals))
    elif args.child == "hec":
        asyncio.run(hec_peer(args.arrivals, args.tls_dir))
    else:
        appender(AppendPlan(**json.loads(Path(args.plan).read_text())))


def main() -> None:
    args = parse_args()
    if args.child:
        run_child(args)
        return

    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def interrupted(signum: int, _frame: object) -> None:
        for other in stopping:  # the clean-up that follows is bounded; let it finish
            signal.signal(other, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in stopping:  # SIGINT too: a shell may start us with it ignored
        signal.signal(signum, interrupted)
    began = datetime.now(UTC)
    machine = describe_machine()
    with contextlib.ExitStack() as stack:
        if args.work_dir:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="bench-tenants-", dir=args.work_dir))
        else:
            work = Path(tempfile.mkdtemp(prefix="bench-tenants-"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        try:
            bench = Bench(args, work, stack)
            bench.run()
        except KeyboardInterrupt:
            say("interrupted; stopping what was started and dropping the database")
            stack.close()
            raise SystemExit(130) from None
        print_report(bench, began, machine)


if __name__ == "__main__":
    main()
