"""Sources whose peer misbehaves: the identity provider's database goes away and comes back,
a source's table is dropped under it, two workers want the same source.

Each test asserts the state afterwards: what was stored, the source's cursor count, its
recorded failure (scrubbed of the connection string), and that the worker kept running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from sqlalchemy import Engine, text

from idp_table import (
    ALLOW_LOOPBACK,
    IDP_TABLE,
    MAPPING,
    PASSWORD,
    Tailing,
    stored_ids,
    wait_for,
    write_rows,
)
from store_roles import as_role
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.sources.manage import SourceSpec, add_source, find_source
from xavyo_siem.store import make_engine, upgrade

from peers.postgres_cluster import PostgresCluster

KEY = new_key_text()


@pytest.fixture
def peer() -> Iterator[PostgresCluster]:
    """The identity provider's PostgreSQL, a cluster of this test's own (stopped by PID)."""
    with PostgresCluster() as cluster:
        cluster.create_database("idp")
        with psycopg.connect(_dsn(cluster), autocommit=True) as conn:
            conn.execute(IDP_TABLE)
        yield cluster


def _dsn(cluster: PostgresCluster) -> str:
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{cluster.port}/idp"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_worker_survives_the_peer_going_away_and_resumes(
    peer: PostgresCluster, tmp_path: Path
) -> None:
    """With the identity provider's database stopped, `xavyo-siem run` keeps running and
    the source records the failure (no password in it, the listing or the log); once the
    database is back the source resumes from its cursor: every row stored, none twice."""
    store = f"sqlite:///{tmp_path}/store.db"
    env = {**os.environ, "XAVYO_SIEM_SECRET_KEY": KEY, "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.1/32"}
    (tmp_path / "idp.dsn").write_text(_dsn(peer) + "\n")
    maps = [part for pair in MAPPING for part in ("--map", pair)]
    added = _cli("source", "add", "--name", "idp", "--type", "postgres_table", "--table",
                 "audit.events", "--dsn-file", str(tmp_path / "idp.dsn"), *maps,
                 "--option", "batch_rows=7", "--db", store, env=env)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    engine = make_engine(store)
    log = tmp_path / "worker.log"
    written = write_rows(_dsn(peer), 20)

    def events_read() -> int:
        return find_source(engine, name_or_id="idp").state.events_read

    with log.open("ab") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "xavyo_siem", "run", "--db", store],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: events_read() == 20, "the first rows")
        peer.stop()
        wait_for(lambda: find_source(engine, name_or_id="idp").state.failures >= 2, "failures")
        failing = find_source(engine, name_or_id="idp").state
        assert failing.last_error is not None
        assert f"127.0.0.1:{peer.port}" in failing.last_error
        assert PASSWORD not in failing.last_error
        assert worker.poll() is None
        listed = _cli("source", "list", "--db", store, env=env)
        assert listed.returncode == 0
        assert PASSWORD not in listed.stdout + listed.stderr
        peer.start()
        written += write_rows(_dsn(peer), 15)
        wait_for(lambda: events_read() == 35, "the rows written after the outage")
        wait_for(lambda: find_source(engine, name_or_id="idp").state.failures == 0, "recovery")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert sorted(stored_ids(engine)) == sorted(str(i) for i in written)
    assert events_read() == 35  # no row read (and counted) twice
    assert PASSWORD not in log.read_text(errors="replace")
    shown = _cli("source", "list", "--json", "--db", store, env=env)
    (listing,) = [orjson.loads(line) for line in shown.stdout.splitlines()]
    assert listing["failures"] == 0
    assert listing["cursor"]["seq"] == 35
    engine.dispose()


def _spec(name: str, table: str) -> SourceSpec:
    return SourceSpec(name=name, source_type="postgres_table", table=table, mapping=MAPPING)


def test_a_source_whose_table_is_dropped_does_not_hold_up_another(
    engine: Engine, peer: PostgresCluster
) -> None:
    """A source whose table disappears fails, records why and retries, while another source
    of the same worker keeps storing its rows."""
    keyring = KeyRing.parse(new_key_text())
    dsn = _dsn(peer)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE audit.other (LIKE audit.events INCLUDING ALL)")
    add_source(engine, spec=_spec("idp", "audit.events"), dsn=dsn, keyring=keyring,
               egress=ALLOW_LOOPBACK)  # fmt: skip
    add_source(engine, spec=_spec("other", "audit.other"), dsn=dsn, keyring=keyring,
               egress=ALLOW_LOOPBACK)  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE audit.other")
    with Tailing(engine, keyring, ALLOW_LOOPBACK):
        written = write_rows(dsn, 10)
        wait_for(lambda: find_source(engine, name_or_id="other").state.failures >= 2, "failures")
        written += write_rows(dsn, 10)
        wait_for(lambda: find_source(engine, name_or_id="idp").state.events_read == 20, "rows")
    other = find_source(engine, name_or_id="other").state
    assert other.last_error is not None
    assert "audit.other" in other.last_error
    assert PASSWORD not in other.last_error
    assert sorted(stored_ids(engine)) == sorted(str(i) for i in written)


def test_two_workers_tail_one_source_one_at_a_time(
    pg_url: str, pg_app_role: str, peer: PostgresCluster
) -> None:
    """Two tailers on one PostgreSQL store: only one connects to the peer (the source's
    advisory lock), and every row is read once."""
    owner = make_engine(pg_url)
    upgrade(owner)
    owner.dispose()
    engine = make_engine(as_role(pg_url, pg_app_role))
    keyring = KeyRing.parse(new_key_text())
    dsn = _dsn(peer)
    add_source(engine, spec=_spec("idp", "audit.events"), dsn=dsn, keyring=keyring,
               egress=ALLOW_LOOPBACK)  # fmt: skip

    def tailing_sessions() -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                ("xavyo-siem source",),
            ).fetchone()
        return 0 if row is None else int(row[0])

    written: list[uuid.UUID] = []
    with Tailing(engine, keyring, ALLOW_LOOPBACK), Tailing(engine, keyring, ALLOW_LOOPBACK):
        for _ in range(10):
            written += write_rows(dsn, 9)
            time.sleep(0.05)
        wait_for(lambda: find_source(engine, name_or_id="idp").state.events_read == 90, "rows")
        assert tailing_sessions() == 1
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM sources")).scalar_one()
    assert stored == 1
    assert len(stored_ids(engine)) == 90
    engine.dispose()
