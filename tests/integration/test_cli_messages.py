"""What the command line says when an operator gets something wrong or asks about nothing:
one clear line that names the problem and the fix, never a traceback or a silent success."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy.engine import make_url

TENANT = "7d1c0f2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f"


def cli(*args: str, db: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `xavyo-siem ARGS` against `db` in development mode, loopback allowed."""
    environment = {
        **os.environ,
        "COLUMNS": "200",
        "XAVYO_SIEM_DATABASE_URL": db,
        "XAVYO_SIEM_ENV": "development",
        "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.1/32",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite store URL in the test's own directory (the file is made on first use)."""
    return f"sqlite:///{tmp_path / 'siem.db'}"


def add_file_destination(db: str, tmp_path: Path, name: str = "archive") -> None:
    added = cli(
        "destination", "add", "--tenant", TENANT, "--name", name, "--type", "file",
        "--format", "json", "--endpoint", f"file://{tmp_path / (name + '.jsonl')}", db=db,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 8


def test_db_upgrade_of_an_unreachable_database_is_one_line() -> None:
    """`db upgrade` against a database nobody answers for says it cannot connect, exit 1."""
    result = cli("db", "upgrade", db="postgresql://nobody@127.0.0.1:1/siem")
    assert result.returncode == 1
    assert result.stderr.startswith("error: database: cannot connect")
    assert_no_traceback(result)


def test_the_upgrade_hint_keeps_the_database_it_was_given(pg_url: str) -> None:
    """The `db upgrade` hint of an unmigrated store names that store, so pasting it upgrades
    the right database and not a local SQLite file."""
    result = cli("events", "--tenant", TENANT, db=pg_url)
    assert result.returncode == 1
    hint = result.stderr.split("run `xavyo-siem db upgrade --db ", 1)[1].split("`", 1)[0]
    assert make_url(hint).database == make_url(pg_url).database
    assert make_url(hint).query == make_url(pg_url).query  # the same schema, too


def test_a_secret_file_that_does_not_exist_is_a_usage_error(db: str) -> None:
    """`--secret-file /nonexistent` names the option and the file, exit 2, nothing added."""
    result = cli(
        "destination", "add", "--tenant", TENANT, "--name", "hook", "--type", "webhook",
        "--format", "json", "--endpoint", "https://siem.example/in",
        "--secret-file", "/nonexistent/token", db=db,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--secret-file" in result.stderr
    assert "cannot read /nonexistent/token" in result.stderr
    assert_no_traceback(result)


def test_a_destination_for_a_tenant_without_events_gets_a_note(db: str, tmp_path: Path) -> None:
    """Adding a destination for a tenant the store has no events of succeeds, with a note
    that the tenant id may be wrong."""
    result = cli(
        "destination", "add", "--tenant", TENANT, "--name", "archive", "--type", "file",
        "--format", "json", "--endpoint", f"file://{tmp_path / 'a.jsonl'}", db=db,
    )  # fmt: skip
    assert result.returncode == 0
    assert f"no events of tenant {TENANT} were stored" in result.stderr


def test_health_on_a_store_that_does_not_exist_says_so_and_creates_nothing(
    tmp_path: Path,
) -> None:
    """`health` with no store file says there is none yet and leaves no file behind."""
    path = tmp_path / "never.db"
    result = cli("health", db=f"sqlite:///{path}")
    assert result.returncode == 1
    assert f"no store at {path} yet" in result.stderr
    assert not path.exists()


def test_health_with_no_destinations_says_so(db: str, tmp_path: Path) -> None:
    """`health` on a store with no destination says there are none and how to add one."""
    sample = tmp_path / "events.jsonl"
    assert cli("sample", "--count", "3", "-o", str(sample), db=db).returncode == 0
    assert cli("ingest", str(sample), db=db).returncode == 0
    result = cli("health", db=db)
    assert result.returncode == 0
    assert "no destinations (add one with `xavyo-siem destination add`)" in result.stderr


def test_health_shows_tenant_status_in_words_lag_in_human_units_and_workers(
    db: str, tmp_path: Path
) -> None:
    """A destination that never delivered reads `never delivered`, a disabled one
    `disabled` (not failing), lag has a unit, and the workers line says none runs."""
    add_file_destination(db, tmp_path, "archive")
    add_file_destination(db, tmp_path, "paused")
    assert cli("destination", "disable", "--tenant", TENANT, "paused", db=db).returncode == 0
    result = cli("health", db=db)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines()[1:]}
    assert rows["archive"].split()[0] == TENANT[:8] + "…"
    assert "never delivered" in rows["archive"]
    assert " s)" in rows["archive"]  # the oldest waiting event's age, with its unit
    assert "disabled" in rows["paused"]
    assert "failing" not in result.stdout
    assert "workers: none running" in result.stderr


def test_sample_to_dash_writes_standard_output(tmp_path: Path, db: str) -> None:
    """`sample -o -` writes the events to stdout, not to a file named `-`."""
    result = subprocess.run(
        [sys.executable, "-m", "xavyo_siem", "sample", "--count", "2", "-o", "-"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert [orjson.loads(line)["event_id"] for line in result.stdout.splitlines()]
    assert not (tmp_path / "-").exists()


def test_replaying_a_dead_letter_that_does_not_exist_is_refused(db: str, tmp_path: Path) -> None:
    """`dead-letters replay --id 5` with no dead letter 5 names the id, exit 2."""
    add_file_destination(db, tmp_path)
    for command in ("replay", "purge"):
        result = cli("dead-letters", command, "--tenant", TENANT, "archive", "--id", "5", db=db)
        assert result.returncode == 2
        assert "no dead letter 5 for destination archive" in result.stderr


def test_export_with_neither_file_nor_destination_says_what_to_give(
    db: str, tmp_path: Path
) -> None:
    """`export` without `-o` or `--destination` asks for one of them (not "not both")."""
    add_file_destination(db, tmp_path)  # its own audit event gives the tenant an event
    result = cli(
        "export", "--tenant", TENANT, "--from", "2020-01-01T00:00:00Z",
        "--to", "2099-01-01T00:00:00Z", db=db,
    )  # fmt: skip
    assert result.returncode == 2
    assert "give a file to write, or a destination to send to" in result.stderr


def test_a_ca_file_that_does_not_exist_is_refused_at_add(db: str) -> None:
    """`--option ca_file=/nonexistent.pem` is refused when the destination is added."""
    result = cli(
        "destination", "add", "--tenant", TENANT, "--name", "soc", "--type", "syslog_tls",
        "--format", "cef", "--endpoint", "tls://127.0.0.1:6514",
        "--option", "ca_file=/nonexistent.pem", db=db,
    )  # fmt: skip
    assert result.returncode == 2
    assert "ca_file: /nonexistent.pem does not exist" in result.stderr
    listed = cli("destination", "list", "--json", db=db)
    assert listed.stdout == ""


@pytest.fixture
def silent_tcp_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a plain syslog port)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_tls_to_a_plain_tcp_port_asks_whether_it_is_a_tls_port(
    db: str, silent_tcp_port: int
) -> None:
    """`destination test` of TLS against a port that never answers the handshake says so
    in words, not with asyncio's "SSL handshake is taking longer than 9.99… seconds"."""
    added = cli(
        "destination", "add", "--tenant", TENANT, "--name", "soc", "--type", "syslog_tls",
        "--format", "cef", "--endpoint", f"tls://127.0.0.1:{silent_tcp_port}",
        "--option", "tls_verify=false", "--option", "timeout_s=1", db=db,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    result = cli("destination", "test", "--tenant", TENANT, "soc", db=db)
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert "did not answer the TLS handshake in time; is it a TLS port?" in said
    assert "taking longer than" not in said


def test_udp_test_to_a_closed_port_fails_and_to_an_open_one_says_what_it_cannot_know(
    db: str,
) -> None:
    """`destination test` of UDP to a port nobody listens on fails on the ICMP error; to a
    listening one it passes but says UDP cannot confirm receipt."""
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listening.bind(("127.0.0.1", 0))
    try:
        for name, port in (("closed", closed_port), ("open", listening.getsockname()[1])):
            added = cli(
                "destination", "add", "--tenant", TENANT, "--name", name, "--type",
                "syslog_udp", "--format", "cef", "--endpoint", f"udp://127.0.0.1:{port}", db=db,
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
        refused = cli("destination", "test", "--tenant", TENANT, "closed", db=db)
        assert refused.returncode == 1
        assert "deliver: FAILED" in refused.stdout + refused.stderr
        assert "refused" in refused.stdout + refused.stderr
        sent = cli("destination", "test", "--tenant", TENANT, "open", db=db)
        assert sent.returncode == 0, sent.stdout
        assert "no ICMP error came back" in sent.stdout + sent.stderr
    finally:
        listening.close()


def test_run_with_no_destinations_says_so(db: str, tmp_path: Path) -> None:
    """`run` on a store without destinations says the worker waits for one."""
    sample = tmp_path / "events.jsonl"
    assert cli("sample", "--count", "3", "-o", str(sample), db=db).returncode == 0
    assert cli("ingest", str(sample), db=db).returncode == 0
    result = cli("run", "--timeout", "1", db=db)
    assert result.returncode == 0, result.stderr
    assert "no enabled destinations yet" in result.stderr
    assert "delivered 0 events" in result.stderr


def test_drain_with_a_timeout_ends_with_a_summary_and_says_what_is_behind(
    db: str, tmp_path: Path
) -> None:
    """`run --drain --timeout` stops although a destination refuses connections, prints the
    summary and exits 1 naming the timeout; the reachable destination got its events."""
    add_file_destination(db, tmp_path, "archive")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: refuses
    added = cli(
        "destination", "add", "--tenant", TENANT, "--name", "down", "--type", "syslog_tcp",
        "--format", "cef", "--endpoint", f"tcp://127.0.0.1:{port}", db=db,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    result = cli("run", "--drain", "--timeout", "3", db=db)
    assert result.returncode == 1
    assert "not caught up: stopped after 3 s, before every destination caught up" in result.stderr
    assert "delivered " in result.stderr
    assert " events in " in result.stderr
    archive = (tmp_path / "archive.jsonl").read_text().splitlines()
    assert archive  # the destinations' own creation events reached the file


def test_a_drain_that_stops_counts_the_destinations_still_failing(db: str, tmp_path: Path) -> None:
    """A destination whose file cannot be written (its directory went away) still fails
    when `run --drain --timeout` stops: the summary at exit counts it as failing."""
    gone = tmp_path / "gone"
    gone.mkdir()
    added = cli(
        "destination", "add", "--tenant", TENANT, "--name", "lost", "--type", "file",
        "--format", "json", "--endpoint", f"file://{gone / 'lost.jsonl'}", db=db,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    gone.rmdir()
    result = cli("run", "--drain", "--timeout", "5", db=db)
    assert result.returncode == 1
    assert "1 destination(s) failing at exit" in result.stderr


def test_json_logs_are_one_object_a_line(db: str, tmp_path: Path) -> None:
    """`run --log-format json` writes log records as JSON objects with level and message."""
    add_file_destination(db, tmp_path)
    result = cli("run", "--drain", "--timeout", "20", "--log-format", "json", db=db)
    assert result.returncode == 0, result.stderr
    records = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert records
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any("serves 1 destination" in record["message"] for record in records)
