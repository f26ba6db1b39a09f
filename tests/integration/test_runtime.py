"""`runtime.run_worker`, the whole of `xavyo-siem run` but its options, in this process:
draining, the SQLite single-worker lock, and the HTTP API co-hosted until SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from file_output import add_file_destination, delivered_ids
from xavyo_siem.api import create_app
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import SiemError
from xavyo_siem.model import AuditEvent
from xavyo_siem.pipeline import PipelineSettings
from xavyo_siem.runtime import ApiServing, WorkerSettings, run_worker, single_worker_lock
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events, make_engine, upgrade

KEYS = KeyRing.parse(new_key_text())
SETTINGS = Settings()
QUICK = WorkerSettings(
    lease_ttl_s=5, scan_interval_s=0.05, pipeline=PipelineSettings(poll_interval_s=0.02)
)


def stored(engine: Engine, count: int, seed: int) -> list[AuditEvent]:
    events = list(generate_events(count, 1, seed=seed))
    with engine.begin() as conn:
        append_events(conn, events)
    return events


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(engine: Engine, **options: object) -> list[str]:
    return run_worker(
        engine=engine, settings=SETTINGS, secrets=lambda: (KEYS, EgressGuard()),
        worker_settings=QUICK, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_draining_worker_delivers_every_event_and_says_who_it_is(
    engine: Engine, tmp_path: Path
) -> None:
    """With `drain`, run_worker returns once the destination caught up (nothing stuck),
    having announced the worker's name, and every event reached the file in store order."""
    events = stored(engine, 700, seed=1)
    out = tmp_path / "drained.jsonl"
    add_file_destination(engine, events[0].tenant_id, out)
    names: list[str] = []
    assert run(engine, drain=True, started=names.append) == []
    assert delivered_ids(out) == [str(e.event_id) for e in events]
    assert len(names) == 1
    assert str(os.getpid()) in names[0]


def test_a_second_worker_on_a_sqlite_store_is_refused(tmp_path: Path) -> None:
    """While another worker holds a SQLite store's lock, run_worker refuses to start."""
    database = tmp_path / "one.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    held = single_worker_lock(database.resolve())
    try:
        with pytest.raises(SiemError, match="SQLite supports one worker"):
            run(engine, drain=True)
    finally:
        held.close()
        engine.dispose()


def test_the_api_is_served_beside_the_worker_until_sigterm(tmp_path: Path) -> None:
    """With `api`, the HTTP API answers while the worker delivers, in the same process, and
    SIGTERM stops both: run_worker returns and every event was delivered."""
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(engine)
    events = stored(engine, 300, seed=2)
    out = tmp_path / "served.jsonl"
    add_file_destination(engine, events[0].tenant_id, out)
    port = free_port()
    app = create_app(SETTINGS, engine, keyring=KEYS, egress=EgressGuard(), export_dir=tmp_path)
    answers: list[int] = []
    returned = threading.Event()

    def probe_then_stop() -> None:
        deadline = time.monotonic() + 30  # a start-up guard, not a speed check
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while time.monotonic() < deadline and not returned.is_set():
                try:
                    answers.append(client.get("/healthz").status_code)
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                if len(delivered_ids(out)) == len(events):
                    break
                time.sleep(0.05)
        if not returned.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    prober = threading.Thread(target=probe_then_stop)
    prober.start()
    try:
        stuck = run(engine, api=lambda keyring, egress: ApiServing(app, port=port))
    finally:
        returned.set()
        prober.join(60)
        engine.dispose()
    assert stuck == []
    assert 200 in answers
    assert delivered_ids(out) == [str(e.event_id) for e in events]
