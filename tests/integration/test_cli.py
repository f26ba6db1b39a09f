"""The command line as an operator runs it: sample, ingest, events, db upgrade, --help."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, func, select

from store_roles import owner_connection
from xavyo_siem import __version__, speedups
from xavyo_siem.cli.root import version_line
from xavyo_siem.sample import generate_events
from xavyo_siem.store import make_engine, upgrade, writing
from xavyo_siem.store.quarantine import QuarantineEntry, add_quarantined
from xavyo_siem.store.tables import audit_events

COMMANDS = [
    ["sample"],
    ["ingest"],
    ["events"],
    ["db", "upgrade"],
    ["serve"],
    ["tokens", "create"],
    ["tokens", "list"],
    ["tokens", "revoke"],
    ["keys", "new"],
    ["keys", "rotate"],
    ["keys", "status"],
    ["export"],
    ["export", "verify"],
    ["jobs", "list"],
    ["jobs", "show"],
    ["jobs", "cancel"],
    ["jobs", "expire"],
    ["tenant", "purge"],
    ["quarantine", "list"],
    ["quarantine", "show"],
    ["quarantine", "retry"],
    ["quarantine", "purge"],
]


def cli(
    *args: str, db: str | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COLUMNS": "200"}
    if db is not None:
        env["XAVYO_SIEM_DATABASE_URL"] = db
    return subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def stored_with_a_file_destination(
    tmp_path: Path, db: str, out: Path, *, count: int, seed: int, options: list[str]
) -> Path:
    """`count` sample events of one tenant ingested into `db`, and a file destination of that
    tenant writing to `out` from the beginning; the events' file."""
    events = tmp_path / "events.jsonl"
    sampled = cli(
        "sample", "--count", str(count), "--tenants", "1", "--seed", str(seed), "-o", str(events)
    )
    assert sampled.returncode == 0, sampled.stderr
    assert cli("ingest", str(events), db=db).returncode == 0
    tenant = orjson.loads(events.read_bytes().splitlines()[0])["tenant_id"]
    added = cli(
        "destination", "add", "--tenant", tenant, "--name", "out", "--type", "file",
        "--endpoint", f"file://{out}", "--option", "start=beginning", *options, db=db,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return events


def count_events(engine: Engine) -> int:
    with owner_connection(engine) as conn:  # sees every tenant's rows
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself_with_an_example(command: list[str]) -> None:
    """`--help` on each command exits 0, takes --db, and shows an example invocation."""
    result = cli(*command, "--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "Example" in out
    if command not in (["sample"], ["keys", "new"], ["export", "verify"]):
        assert "--db" in out


def test_version_says_whether_the_c_helpers_are_built() -> None:
    """`--version` prints the version and whether this install runs the C helpers."""
    result = cli("--version")
    helpers = "C helpers" if speedups.COMPILED else "Python helpers"
    assert result.returncode == 0
    assert result.stdout.decode().startswith(f"xavyo-siem {__version__}, running the {helpers}")


def test_version_names_the_python_fallbacks_without_the_c_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the C build, the version line says the Python fallbacks run, and why."""
    monkeypatch.setattr("xavyo_siem.speedups.COMPILED", False)
    monkeypatch.setattr("xavyo_siem.speedups._FORCED", False)
    expected = (
        f"xavyo-siem {__version__}, running the Python helpers (the C extension is not built)"
    )
    assert version_line() == expected


def test_sample_is_deterministic_for_a_seed() -> None:
    """The same seed writes the same events; another seed writes others."""
    first = cli("sample", "--count", "50", "--tenants", "3", "--seed", "9").stdout
    again = cli("sample", "--count", "50", "--tenants", "3", "--seed", "9").stdout
    other = cli("sample", "--count", "50", "--tenants", "3", "--seed", "10").stdout
    lines = first.splitlines()
    assert first == again != other
    assert len(lines) == 50
    assert len({orjson.loads(line)["tenant_id"] for line in lines}) == 3


def test_ingesting_a_file_twice_stores_each_event_once(store_url: str, tmp_path: Path) -> None:
    """The second ingest of the same file stores nothing and reports every event as a duplicate."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(cli("sample", "--count", "300", "--tenants", "2").stdout)
    engine = make_engine(store_url)
    upgrade(engine)
    first = cli("ingest", str(path), db=store_url)
    second = cli("ingest", str(path), db=store_url)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert b"stored 300 events, skipped 0 duplicates" in first.stderr
    assert b"stored 0 events, skipped 300 duplicates" in second.stderr
    assert count_events(engine) == 300
    engine.dispose()


def test_blank_lines_are_skipped_and_still_counted_in_line_numbers(tmp_path: Path) -> None:
    """Empty and whitespace-only lines store nothing and fail nothing, and the line number of
    a later error still counts them."""
    db = f"sqlite:///{tmp_path}/store.db"
    first, second = GOOD.splitlines()
    result = cli("ingest", "-", db=db, stdin=first + b"\n\n \t \r\n" + second + b"\n  ")
    assert result.returncode == 0, result.stderr
    assert b"stored 2 events, skipped 0 duplicates" in result.stderr
    bad = cli("ingest", "-", db=db, stdin=b"\n \r\n{not json\n")
    assert bad.returncode != 0
    assert "line 3: event: is not valid JSON" in bad.stderr.decode()


def test_events_lists_a_tenants_range_as_json(store_url: str) -> None:
    """`events --json` prints the tenant's stored events in time order, within the range."""
    data = cli("sample", "--count", "40", "--tenants", "2", "--seed", "3").stdout
    engine = make_engine(store_url)
    upgrade(engine)
    assert cli("ingest", "-", db=store_url, stdin=data).returncode == 0
    rows = [orjson.loads(line) for line in data.splitlines()]
    tenant = rows[0]["tenant_id"]
    mine = [row for row in rows if row["tenant_id"] == tenant]
    since, until = mine[1]["timestamp"], mine[-1]["timestamp"]
    result = cli(
        "events", "--tenant", tenant, "--since", since, "--until", until, "--json", db=store_url
    )
    assert result.returncode == 0, result.stderr
    listed = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert listed == mine[1:-1]
    table = cli("events", "--tenant", tenant, "--limit", "5", db=store_url)
    assert table.returncode == 0
    assert mine[0]["event_id"] in table.stdout.decode()
    engine.dispose()


BAD_LINES = [
    (b"{not json", "line 3: event: is not valid JSON"),
    (b'{"event_id": "nope"}', "line 3: tenant_id: is required"),
    (b"[1, 2]", "line 3: event: must be a JSON object"),
    (b'"a string"', "line 3: event: must be a JSON object"),
]


GOOD = b"".join(orjson.dumps(e.to_dict()) + b"\n" for e in generate_events(2, 1, seed=5))


def _valid_line(**changes: object) -> bytes:
    row = next(generate_events(1, 1, seed=77)).to_dict()
    row.update(changes)
    return orjson.dumps(row)


@pytest.mark.parametrize(
    ("changes", "normalized"),
    [
        ({"severity": 42}, ["severity"]),
        ({"category": "weather"}, ["category"]),
        ({"source_ip": "999.1.1.1"}, ["source_address", "source_ip"]),
        ({"source_ip": ""}, ["source_ip"]),
        ({"metadata": {"k": 5, "": "x"}}, ["metadata"]),
        ({"actor_email": "a\x00b"}, ["actor_email"]),
        ({"shoe_size": "42"}, ["metadata"]),
        ({"timestamp": "2016-12-31T23:59:60Z"}, ["timestamp"]),
    ],
)
def test_an_event_is_never_refused_for_its_content_and_says_what_changed(
    engine: Engine, store_url: str, changes: dict[str, object], normalized: list[str]
) -> None:
    """A line with content the event cannot carry is stored, normalised, with `normalized`
    naming the changed fields, and ingest succeeds."""
    line = _valid_line(**changes)
    result = cli("ingest", "-", db=store_url, stdin=GOOD + line + b"\n")
    assert result.returncode == 0, result.stderr
    assert count_events(engine) == 3
    tenant = orjson.loads(line)["tenant_id"]
    listed = cli("events", "--tenant", tenant, "--json", db=store_url).stdout.splitlines()
    [stored] = [row for row in map(orjson.loads, listed) if "normalized" in row]
    assert stored["normalized"] == normalized


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_line_that_is_no_event_is_quarantined_and_the_rest_stored(
    engine: Engine, store_url: str, line: bytes, message: str
) -> None:
    """A line that cannot be an event is kept verbatim in the quarantine with its reason,
    the good lines are stored, and ingest exits 1 naming the line."""
    result = cli("ingest", "-", db=store_url, stdin=GOOD + line + b"\n")
    assert result.returncode == 1
    assert message in result.stderr.decode()
    assert count_events(engine) == 2
    listed = cli("quarantine", "list", "--json", db=store_url)
    [entry] = [orjson.loads(row) for row in listed.stdout.splitlines()]
    assert entry["source"] == "stdin:3"
    assert message in entry["reason"]
    shown = orjson.loads(cli("quarantine", "show", str(entry["id"]), db=store_url).stdout)
    assert shown["raw"] == line.decode()


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_strict_ingest_of_a_line_that_is_no_event_stores_nothing(
    engine: Engine, store_url: str, line: bytes, message: str
) -> None:
    """With --strict, a line that is no event makes ingest exit 2 naming it and store
    nothing at all, quarantine included."""
    result = cli("ingest", "--strict", "-", db=store_url, stdin=GOOD + line + b"\n")
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert count_events(engine) == 0
    assert cli("quarantine", "list", "--json", db=store_url).stdout == b""


def test_lone_surrogate_escape_is_replaced_and_named(engine: Engine, store_url: str) -> None:
    """A JSON escape for a lone surrogate is stored as U+FFFD and the event names the field."""
    line = _valid_line().replace(b'"event_type":"', b'"event_type":"\\ud800')
    result = cli("ingest", "-", db=store_url, stdin=line + b"\n")
    assert result.returncode == 0, result.stderr
    tenant = orjson.loads(_valid_line())["tenant_id"]
    [stored] = cli("events", "--tenant", tenant, "--json", db=store_url).stdout.splitlines()
    assert orjson.loads(stored)["event_type"].startswith("\ufffd")
    assert orjson.loads(stored)["normalized"] == ["event_type"]


def test_a_conflict_is_quarantined_and_the_same_content_is_a_duplicate(
    engine: Engine, store_url: str
) -> None:
    """The same event id again with other content is kept as a conflict (exit 1, listed),
    the stored event stays; the same content again is a harmless duplicate (exit 0)."""
    assert cli("ingest", "-", db=store_url, stdin=GOOD).returncode == 0
    again = cli("ingest", "-", db=store_url, stdin=GOOD)
    assert again.returncode == 0
    assert b"skipped 2 duplicates" in again.stderr
    first = orjson.loads(GOOD.splitlines()[0])
    changed = orjson.dumps({**first, "reason": "edited later"})
    conflict = cli("ingest", "-", db=store_url, stdin=changed + b"\n")
    assert conflict.returncode == 1
    assert b"1 conflicts" in conflict.stderr
    [entry] = map(
        orjson.loads, cli("quarantine", "list", "--json", db=store_url).stdout.splitlines()
    )
    assert entry["reason"].startswith("conflict")
    assert entry["event_id"] == first["event_id"]
    listed = cli("events", "--tenant", first["tenant_id"], "--json", db=store_url).stdout
    assert orjson.loads(listed.splitlines()[0]).get("reason") == first.get("reason")


def test_quarantine_retry_stores_what_is_an_event_now_and_purge_deletes(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """`quarantine retry` re-ingests entries through the normalising path (an entry still no
    event stays, exit 1); `purge` deletes; a tenant sees only its own entries."""
    tenant = orjson.loads(GOOD.splitlines()[0])["tenant_id"]
    lines = b'{"tenant_id": "%s", "event_type": "X"}\n{oops\n' % tenant.encode()
    assert cli("ingest", "-", db=store_url, stdin=lines).returncode == 1
    mine = cli("quarantine", "list", "--json", "--tenant", tenant, db=store_url).stdout.splitlines()
    assert len(mine) == 1  # the line without a tenant is the platform's alone
    # An entry kept by an earlier, stricter ingest: an event by today's rules.
    storable = next(generate_events(1, 1, seed=99))
    entry = QuarantineEntry("line 1: older rule", "old.jsonl:1", orjson.dumps(
        storable.to_dict()).decode(), storable.tenant_id)  # fmt: skip
    with writing(engine) as conn:
        add_quarantined(conn, [entry], tenant_id=None, now=datetime.now(UTC))
    retry = cli("quarantine", "retry", db=store_url)
    assert retry.returncode == 1
    assert b"stored 1, duplicates 0, still quarantined 2" in retry.stderr
    assert count_events(engine) == 1
    assert cli("quarantine", "purge", "--tenant", tenant, db=store_url).returncode == 0
    assert len(cli("quarantine", "list", "--json", db=store_url).stdout.splitlines()) == 1
    assert cli("quarantine", "purge", db=store_url).returncode == 0
    assert cli("quarantine", "list", "--json", db=store_url).stdout == b""


def test_missing_file_is_a_clear_usage_error(tmp_path: Path) -> None:
    """Ingesting a path that does not exist fails with a message naming it."""
    result = cli("ingest", str(tmp_path / "absent.jsonl"), db=f"sqlite:///{tmp_path}/s.db")
    assert result.returncode == 2
    assert "no such file" in result.stderr.decode()


def test_a_destination_is_found_by_name_or_id_and_a_missing_one_is_named(
    tmp_path: Path,
) -> None:
    """`destination show` finds a destination by its name and by its id; an unknown one
    exits 2 with an error naming the tenant and the destination."""
    db = f"sqlite:///{tmp_path}/store.db"
    tenant = "7d1c0f2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f"
    added = cli(
        "destination", "add", "--tenant", tenant, "--name", "archive", "--type", "file",
        "--format", "json", "--endpoint", f"file://{tmp_path}/out.jsonl", "--json", db=db,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    ident = orjson.loads(added.stdout)["id"]
    for name_or_id in ("archive", ident):
        shown = cli("destination", "show", "--tenant", tenant, name_or_id, "--json", db=db)
        assert shown.returncode == 0, shown.stderr
        assert orjson.loads(shown.stdout)["id"] == ident
    missing = cli("destination", "show", "--tenant", tenant, "nope", db=db)
    assert missing.returncode == 2
    assert f"error: destination: tenant {tenant} has no destination 'nope'" in (
        missing.stderr.decode()
    )


def test_db_upgrade_migrates_postgresql_and_reports_the_revision(pg_url: str) -> None:
    """`db upgrade` brings an empty PostgreSQL schema to the newest revision, then is a no-op."""
    url = pg_url
    first = cli("db", "upgrade", "--db", url)
    second = cli("db", "upgrade", "--db", url)
    assert first.returncode == 0, first.stderr
    assert b"upgraded from empty" in first.stderr
    assert b"already at revision" in second.stderr


def test_unmigrated_postgresql_is_refused_with_the_fix(pg_url: str) -> None:
    """Commands on an unmigrated PostgreSQL store say to run `db upgrade` instead of guessing."""
    result = cli("ingest", "-", "--db", pg_url, stdin=b"")
    assert result.returncode == 1
    assert b"xavyo-siem db upgrade" in result.stderr


def test_unknown_database_scheme_is_refused() -> None:
    """A store URL of an unsupported database names the schemes that work."""
    result = cli(
        "events", "--tenant", "7d1c0f2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f", "--db", "mysql://x/y"
    )
    assert result.returncode == 1
    assert b"use sqlite:/// or postgresql://" in result.stderr


def test_a_csv_file_destination_writes_one_header_and_crlf_rows(tmp_path: Path) -> None:
    """`run --drain` to a CSV file destination writes the header row once, then one CRLF row
    per event, which the standard csv module reads back to the events' ids; each run's
    summary counts what it delivered."""
    db = f"sqlite:///{tmp_path}/store.db"
    out = tmp_path / "events.csv"
    events = stored_with_a_file_destination(
        tmp_path,
        db,
        out,
        count=300,
        seed=3,
        options=["--format", "csv", "--option", "batch_max_events=64"],
    )
    env_dev = {"XAVYO_SIEM_ENV": "development"}
    for delivered in (301, 0):  # a second run appends nothing and repeats no header
        ran = subprocess.run(
            [sys.executable, "-m", "xavyo_siem", "run", "--drain", "--poll-interval", "0.05"],
            env={**os.environ, **env_dev, "XAVYO_SIEM_DATABASE_URL": db},
            cwd=tmp_path,  # development mode makes its key file in the working directory
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert f"delivered {delivered} events in ".encode() in ran.stderr
    data = out.read_bytes()
    # The header, the 300 events, and the audit event of the destination's own creation.
    assert data.count(b"\n") == data.count(b"\r\n") == 302
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "event_id"
    assert all(rows[0])
    kind = rows[0].index("event_type")
    expected = [orjson.loads(line)["event_id"] for line in events.read_bytes().splitlines()]
    ids = [row[0] for row in rows[1:] if row[kind] != "SIEM_DESTINATION_CREATED"]
    assert sorted(ids) == sorted(expected)


def test_a_worker_on_sqlite_delivers_without_loading_the_postgresql_driver(
    tmp_path: Path,
) -> None:
    """`run --drain` on SQLite delivers its events and never imports psycopg, whose libraries
    (about 25 MB resident) only a PostgreSQL store or a source needs."""
    db = f"sqlite:///{tmp_path}/store.db"
    out = tmp_path / "events.jsonl.out"
    events = stored_with_a_file_destination(
        tmp_path, db, out, count=20, seed=4, options=["--format", "json"]
    )
    run_and_report = (
        "import sys\n"
        "from xavyo_siem.cli.root import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(name for name in sys.modules if name.startswith('psycopg')))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", run_and_report, "run", "--drain", "--poll-interval", "0.05"],
        env={**os.environ, "XAVYO_SIEM_ENV": "development", "XAVYO_SIEM_DATABASE_URL": db},
        cwd=tmp_path, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert b"delivered " in ran.stderr
    assert ran.stdout.strip() == b"[]"
    delivered = {orjson.loads(line)["event_id"] for line in out.read_bytes().splitlines()}
    assert {
        orjson.loads(line)["event_id"] for line in events.read_bytes().splitlines()
    } <= delivered


def test_destination_add_applies_the_default_rate_limit_and_none_lifts_it(tmp_path: Path) -> None:
    """`destination add` without `--rate-limit` sets 1000 events/s, burst 2000;
    `--rate-limit none` sets no limit; `health` shows each destination's limit."""
    db = f"sqlite:///{tmp_path}/store.db"
    tenant = "7d1c0f2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f"
    limits = {}
    for name, extra in (("limited", []), ("unlimited", ["--rate-limit", "none"])):
        added = cli(
            "destination", "add", "--tenant", tenant, "--name", name, "--type", "file",
            "--format", "json", "--endpoint", f"file://{tmp_path}/{name}.jsonl", *extra,
            "--json", db=db,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        limits[name] = orjson.loads(added.stdout)["rate_limit"]
    assert limits == {"limited": {"events_per_s": 1000.0, "burst": 2000}, "unlimited": None}
    shown = cli("health", "--tenant", tenant, db=db)
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout.decode()
    assert "1,000/s burst 2,000" in table
    assert "none" in table
