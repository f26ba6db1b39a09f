"""Workers killed, stopped and doubled: `xavyo-siem run` as real processes over a real store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import UUID

from sqlalchemy import Engine, text

from file_output import add_file_destination, delivered_ids
from xavyo_siem.crypto import new_key_text
from xavyo_siem.model import AuditEvent, RateLimit
from xavyo_siem.sample import generate_events
from xavyo_siem.store import append_events, make_engine, upgrade

KEY = new_key_text()


def start_worker(store_url: str, *extra: str, log: Path) -> subprocess.Popen[bytes]:
    # Production mode: `run` refuses to start without a credential key.
    env = {**os.environ, "XAVYO_SIEM_DATABASE_URL": store_url, "XAVYO_SIEM_SECRET_KEY": KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "xavyo_siem", "run", "--poll-interval", "0.05",
         "--retry-base", "0.01", "--retry-cap", "0.2", *extra],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def lease_owners(engine: Engine) -> Counter[str]:
    """How many destinations each worker holds a lease on."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT owner FROM leases WHERE owner <> ''"))
        return Counter(owner for (owner,) in rows)


def stored(engine: Engine, count: int, seed: int, tenants: int = 1) -> list[AuditEvent]:
    events = list(generate_events(count, tenants, seed=seed))
    with engine.begin() as conn:
        append_events(conn, events)
    return events


def assert_all_once_at_least(path: Path, events: list[AuditEvent], *, max_duplicates: int) -> None:
    got = delivered_ids(path)
    counts = Counter(got)
    assert set(counts) == {str(e.event_id) for e in events}, "an event was lost"
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= max_duplicates, f"{duplicates} duplicates: more than the batches in flight"


def test_kill_9_mid_backlog_then_restart_delivers_everything(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """A worker killed by SIGKILL mid-backlog loses nothing: the restart resends from the cursor."""
    events = stored(engine, 6000, seed=20)
    out = tmp_path / "killed.jsonl"
    add_file_destination(engine, events[0].tenant_id, out, batch=100, rate=RateLimit(4000, 100))
    worker = start_worker(store_url, "--lease-ttl", "2", log=tmp_path / "worker.log")
    try:
        wait_for(lambda: len(delivered_ids(out)) >= 1500, 60, "the first deliveries")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.kill()
    assert len(set(delivered_ids(out))) < len(events), "the kill should land mid-backlog"
    again = start_worker(store_url, "--drain", log=tmp_path / "worker.log")
    assert again.wait(120) == 0, (tmp_path / "worker.log").read_text()[-2000:]
    assert_all_once_at_least(out, events, max_duplicates=100)


def test_sigterm_stops_within_seconds_and_restart_continues(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """SIGTERM makes the worker finish its batch and exit promptly; nothing is half-counted."""
    events = stored(engine, 3000, seed=21)
    out = tmp_path / "stopped.jsonl"
    add_file_destination(engine, events[0].tenant_id, out, batch=100, rate=RateLimit(2000, 100))
    worker = start_worker(store_url, log=tmp_path / "worker.log")
    try:
        wait_for(lambda: len(delivered_ids(out)) >= 500, 60, "the first deliveries")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    finally:
        worker.kill()
    stopped_at = len(delivered_ids(out))
    again = start_worker(store_url, "--drain", log=tmp_path / "worker.log")
    assert again.wait(120) == 0
    assert stopped_at < len(events)
    assert_all_once_at_least(out, events, max_duplicates=0)


def test_second_worker_on_sqlite_refuses_with_a_clear_message(tmp_path: Path) -> None:
    """On SQLite a second `run` exits at once saying one worker runs at a time."""
    url = f"sqlite:///{tmp_path}/one.db"
    first = start_worker(url, log=tmp_path / "first.log")
    try:
        wait_for(lambda: b"started" in (tmp_path / "first.log").read_bytes(), 30, "first worker")
        second = subprocess.run(
            [sys.executable, "-m", "xavyo_siem", "run", "--db", url],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(10)
    assert second.returncode == 1
    assert b"SQLite supports one worker" in second.stderr


def test_two_workers_share_destinations_and_survive_one_killed(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL two workers split the destinations evenly; after one is killed the other
    takes over its leases when they expire, and every event of every destination arrives."""
    url = pg_url
    engine = make_engine(url)
    upgrade(engine)
    events = stored(engine, 8000, seed=22, tenants=4)
    outputs: dict[UUID, Path] = {}
    for tenant in sorted({e.tenant_id for e in events}):
        outputs[tenant] = tmp_path / f"t-{str(tenant)[:8]}.jsonl"
        add_file_destination(engine, tenant, outputs[tenant], rate=RateLimit(800, 50), batch=50)
    a = start_worker(url, "--lease-ttl", "2", log=tmp_path / "a.log")
    b = start_worker(url, "--lease-ttl", "2", log=tmp_path / "b.log")
    try:
        wait_for(lambda: sum(1 for p in outputs.values() if delivered_ids(p)) == 4, 60, "all four")
        wait_for(lambda: sorted(lease_owners(engine).values()) == [2, 2], 60, "two leases each")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        for tenant, path in outputs.items():
            mine = [e for e in events if e.tenant_id == tenant]
            wait_for(lambda p=path, m=mine: len(set(delivered_ids(p))) == len(m), 120, str(path))
    finally:
        for worker in (a, b):
            worker.kill()
            worker.wait(10)
        engine.dispose()
    for tenant, path in outputs.items():
        mine = [e for e in events if e.tenant_id == tenant]
        assert_all_once_at_least(path, mine, max_duplicates=50)
