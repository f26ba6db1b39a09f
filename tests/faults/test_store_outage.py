"""Store outages on PostgreSQL: a worker and the API ride through a restarted cluster and a cut
network, as real processes over a cluster of the test's own, and no event is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from file_output import add_file_destination, delivered_id_set
from xavyo_siem.cli import app
from xavyo_siem.crypto import new_key_text
from xavyo_siem.model import AuditEvent
from xavyo_siem.sample import generate_events, tenant_ids
from xavyo_siem.store import append_events, make_engine, upgrade, writing

from peers.postgres_cluster import PostgresCluster
from peers.tcp_proxy import TcpProxy

KEY = new_key_text()
DATABASE = "siem"
WAIT_S = 60.0  # generous: the machine is shared


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own with a migrated store in database `siem`;
    stopped by its PID and removed however the test ends."""
    with PostgresCluster() as own:
        own.create_database(DATABASE)
        engine = make_engine(own.url(DATABASE))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield own


@pytest.fixture
def ingest(cluster: PostgresCluster) -> Iterator[Engine]:
    """The store as the IdP's ingest sees it: straight to the cluster, never through a proxy."""
    engine = make_engine(cluster.url(DATABASE))
    yield engine
    engine.dispose()


@contextmanager
def worker_process(store_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`xavyo-siem run` on `store_url`, logging to `log`; SIGTERM (then SIGKILL) at the end."""
    env = {**os.environ, "XAVYO_SIEM_DATABASE_URL": store_url, "XAVYO_SIEM_SECRET_KEY": KEY}
    with log.open("ab") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "xavyo_siem", "run", "--poll-interval", "0.05",
             "--retry-base", "0.01", "--retry-cap", "0.5"],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)


def append(engine: Engine, events: list[AuditEvent]) -> None:
    with writing(engine) as conn:
        append_events(conn, events)


def append_until_stored(engine: Engine, events: list[AuditEvent]) -> int:
    """Append `events`, retrying while the store is unreachable; returns the failed tries."""
    deadline = time.monotonic() + WAIT_S
    failed = 0
    while True:
        try:
            append(engine, events)
            return failed
        except OperationalError:
            failed += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")
        time.sleep(0.1)


def wait_for_delivery(
    worker: subprocess.Popen[bytes], log: Path, expected: dict[Path, set[str]]
) -> None:
    """Wait until every file holds its expected ids; fail at once if the worker exits."""
    deadline = time.monotonic() + WAIT_S
    while True:
        missing = {p.name: len(ids - delivered_id_set(p)) for p, ids in expected.items()}
        if not any(missing.values()):
            return
        if worker.poll() is not None:
            raise AssertionError(
                f"the worker exited (status {worker.returncode}) with events undelivered "
                f"{missing}; its log ends:\n{log.read_text(errors='replace')[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"events still undelivered after {WAIT_S} s: {missing}")
        time.sleep(0.1)


def two_tenants(
    engine: Engine, tmp_path: Path, seed: int
) -> tuple[list[AuditEvent], dict[UUID, Path]]:
    """600 events of two tenants, and a file destination for each tenant."""
    events = list(generate_events(600, 2, seed=seed))
    files = {tenant: tmp_path / f"tenant-{i}.jsonl" for i, tenant in enumerate(tenant_ids(2, seed))}
    for tenant, path in files.items():
        add_file_destination(engine, tenant, path, batch=50)
    return events, files


def expected_per_file(events: list[AuditEvent], files: dict[UUID, Path]) -> dict[Path, set[str]]:
    return {
        path: {str(e.event_id) for e in events if e.tenant_id == tenant}
        for tenant, path in files.items()
    }


def assert_rode_through(worker: subprocess.Popen[bytes], log: Path) -> None:
    assert worker.poll() is None, "the worker exited"
    said = log.read_text(errors="replace")
    assert "store unavailable" in said, said[-3000:]
    assert "store available again" in said, said[-3000:]
    assert said.index("store unavailable") < said.rindex("store available again")


def test_own_cluster_keeps_its_data_across_a_restart_and_the_proxy_cuts_then_forwards(
    cluster: PostgresCluster,
) -> None:
    """The test peers work: the own cluster stops (refusing connections), keeps its data across
    a restart, and the proxy in front of it cuts an open session, resets new ones while
    refusing, then forwards again."""
    direct = f"host=127.0.0.1 port={cluster.port} user=postgres dbname={DATABASE}"
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    cluster.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(direct, connect_timeout=5)
    cluster.start()
    with psycopg.connect(direct) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
    with TcpProxy(cluster.port) as proxy:
        proxied = f"host=127.0.0.1 port={proxy.port} user=postgres dbname={DATABASE}"
        with psycopg.connect(proxied, autocommit=True) as open_session:
            assert open_session.execute("SELECT 1").fetchone() == (1,)
            proxy.refusing = True
            with pytest.raises(psycopg.OperationalError):
                open_session.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(proxied, connect_timeout=5)
        proxy.refusing = False
        with psycopg.connect(proxied) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]


def test_worker_rides_through_a_cluster_restart_and_delivers_every_event(
    cluster: PostgresCluster, ingest: Engine, tmp_path: Path
) -> None:
    """A worker whose PostgreSQL is restarted (fast stop, 3 s down) keeps running and delivers
    every event to both tenants' files, those stored before, during and after the outage."""
    events, files = two_tenants(ingest, tmp_path, seed=60)
    before, during, after = events[:200], events[200:400], events[400:]
    log = tmp_path / "worker.log"
    append(ingest, before)
    with worker_process(cluster.url(DATABASE), log) as worker:
        wait_for_delivery(worker, log, expected_per_file(before, files))
        cluster.stop()
        with ThreadPoolExecutor(1) as outage:
            back = outage.submit(cluster.restart, down_s=3.0)  # already stopped: waits, starts
            failed_tries = append_until_stored(ingest, during)
            back.result(WAIT_S)
        append(ingest, after)
        wait_for_delivery(worker, log, expected_per_file(events, files))
        assert failed_tries > 0, "the appends during the outage should have met it"
        assert_rode_through(worker, log)


def test_worker_cut_off_by_the_network_catches_up_on_what_was_ingested_meanwhile(
    cluster: PostgresCluster, ingest: Engine, tmp_path: Path
) -> None:
    """A worker whose connections to PostgreSQL are refused for 10 s, while ingest goes on
    straight to the store, keeps running and then delivers every event to both tenants' files."""
    events, files = two_tenants(ingest, tmp_path, seed=61)
    before, during, after = events[:200], events[200:400], events[400:]
    log = tmp_path / "worker.log"
    append(ingest, before)
    with TcpProxy(cluster.port) as proxy:
        proxied = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{DATABASE}"
        with worker_process(proxied, log) as worker:
            wait_for_delivery(worker, log, expected_per_file(before, files))
            proxy.refuse(10)
            for start in range(0, len(during), 40):  # ingested over the outage, a chunk a second
                append(ingest, during[start : start + 40])
                time.sleep(1)
            wait_for(lambda: not proxy.refusing, "the proxy to forward again")
            append(ingest, after)
            wait_for_delivery(worker, log, expected_per_file(events, files))
            assert_rode_through(worker, log)


def cli(*args: str, env: dict[str, str]) -> str:
    """`xavyo-siem ARGS` in this process; its standard output."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def status(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> int | None:
    """The status `path` answers with, or None when nothing answers."""
    try:
        return client.get(path, headers=headers).status_code
    except httpx.TransportError:
        return None


def healthz(proc: subprocess.Popen[bytes], client: httpx.Client, log: Path) -> int | None:
    """The status /healthz answers with; fails at once if the process exited."""
    assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    return status(client, "/healthz")


@contextmanager
def api_process(
    args: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """Start `xavyo-siem ARGS`, wait until /healthz answers 200, stop it with SIGTERM."""
    with log.open("ab") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xavyo_siem", *args],
            env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait_for(lambda: healthz(proc, client, log) == 200, "/healthz to answer 200")
        yield proc, client
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "command", [["serve", "--port"], ["run", "--api", "--api-port"]], ids=["serve", "run-api"]
)
def test_api_answers_503_while_the_store_is_down_and_200_once_it_is_back(
    cluster: PostgresCluster, command: list[str], tmp_path: Path
) -> None:
    """The HTTP API, alone or beside the worker, answers 503 on /healthz and on a tenant's
    route while its PostgreSQL is stopped, and 200 again once it is back, without a restart."""
    env = {"XAVYO_SIEM_DATABASE_URL": cluster.url(DATABASE), "XAVYO_SIEM_SECRET_KEY": KEY}
    tenant = uuid4()
    token = cli("tokens", "create", "--tenant", str(tenant), "--role", "viewer", env=env).strip()
    auth = {"Authorization": f"Bearer {token}"}
    port = free_port()
    log = tmp_path / "api.log"
    routes: dict[str, dict[str, str]] = {"/healthz": {}, f"/v1/tenants/{tenant}/destinations": auth}

    def statuses(http: httpx.Client) -> dict[str, int | None]:
        return {path: status(http, path, headers) for path, headers in routes.items()}

    with api_process([*command, str(port)], env, port, log) as (proc, http):
        assert statuses(http) == dict.fromkeys(routes, 200)
        cluster.stop()
        down = [statuses(http)]
        time.sleep(3)  # long enough for a co-hosted worker to meet the outage too
        down.append(statuses(http))
        cluster.start()
        wait_for(lambda: healthz(proc, http, log) == 200, "/healthz to answer 200 again")
        up = statuses(http)
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    assert down == [dict.fromkeys(routes, 503)] * 2, log.read_text(errors="replace")[-3000:]
    assert up == dict.fromkeys(routes, 200)
