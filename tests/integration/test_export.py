"""Batch exports to files on both store backends: exact content in every format, boundaries,
filters and tenant isolation, the store snapshot, cancel, bad requests, job leases, the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, func, select

from format_parsers import parse_ocsf
from store_roles import owner_connection
from xavyo_siem.batch import (
    BatchExporter,
    ExportRequest,
    ExportSettings,
    cancel_export_job,
    create_export_job,
    partial_path,
)
from xavyo_siem.errors import InvalidExport
from xavyo_siem.format import (
    CSV_SQL_PARTS,
    CsvFormatter,
    csv_header,
    csv_lines_of_parts,
    make_formatter,
)
from xavyo_siem.manifest import manifest_path, verify_export
from xavyo_siem.model import (
    AuditEvent,
    EventCategory,
    EventFilter,
    ExportFormat,
    JobStatus,
)
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.store import append_events, make_engine, upgrade
from xavyo_siem.store import jobs as job_rows
from xavyo_siem.store.ranges import read_range_parts, start_snapshot
from xavyo_siem.store.tables import export_jobs

from strategies import audit_events

START = DEFAULT_START + timedelta(seconds=2)
END = DEFAULT_START + timedelta(seconds=7)
US = timedelta(microseconds=1)


def store(engine: Engine, events: list[AuditEvent]) -> None:
    with engine.begin() as conn:
        append_events(conn, events)


def at(event: AuditEvent, moment: datetime, **changes: Any) -> AuditEvent:
    """A copy of `event` at `moment`, with a new id."""
    return replace(event, event_id=uuid4(), timestamp=moment, **changes)


def with_boundaries(count: int = 400, seed: int = 1) -> tuple[UUID, list[AuditEvent]]:
    """Two tenants' events, plus events of the first tenant exactly at and next to the bounds,
    two of them at the same microsecond; returned in the order they are stored."""
    events = list(generate_events(count, 2, seed=seed))
    tenant = events[0].tenant_id
    base = next(e for e in events if e.tenant_id == tenant)
    edges = [
        at(base, START - US, reason="just before"),
        at(base, START, reason="at start"),
        at(base, START, reason="also at start"),
        at(base, END - US, reason="last microsecond"),
        at(base, END, reason="at end: excluded"),
    ]
    return tenant, events + edges


def in_range(
    events: list[AuditEvent], tenant: UUID, keep: EventFilter = EventFilter()
) -> list[AuditEvent]:
    """What an export of [START, END) must hold, in (time, store order)."""
    chosen = [
        e
        for e in events
        if e.tenant_id == tenant and START <= e.timestamp < END and keep.matches(e)
    ]
    return sorted(chosen, key=lambda e: e.timestamp)  # stable: ties stay in store order


def expected_bytes(fmt: ExportFormat, events: list[AuditEvent], **options: Any) -> bytes:
    formatter = make_formatter(fmt, options)
    if fmt is ExportFormat.CSV:
        return "".join([csv_header() + "\r\n", *(formatter(e) + "\r\n" for e in events)]).encode()
    return "".join(formatter(e) + "\n" for e in events).encode()


async def export(
    engine: Engine,
    tenant: UUID,
    path: Path,
    *,
    fmt: ExportFormat = ExportFormat.CSV,
    chunk: int = 37,
    on_progress: Callable[[int, int | None], None] | None = None,
    **request: Any,
) -> Any:
    """Create and run a file export in this process, as `xavyo-siem export` does."""
    exporter = BatchExporter(
        engine=engine, settings=ExportSettings(chunk_events=chunk, poll_s=0.05)
    )
    job = create_export_job(
        engine,
        ExportRequest(tenant_id=tenant, start=START, end=END, output=path, format=fmt, **request),
        owner=exporter.owner,
    )
    return await exporter.run(job, on_progress=on_progress)


@pytest.mark.parametrize("fmt", list(ExportFormat), ids=lambda f: f.value)
async def test_every_format_holds_exactly_the_events_of_the_range(
    engine: Engine, tmp_path: Path, fmt: ExportFormat
) -> None:
    """Each format's file is byte for byte the formatter's output of exactly the tenant's events
    in [start, end), boundaries included at the start and excluded at the end, in time order."""
    tenant, events = with_boundaries()
    store(engine, events)
    expected = in_range(events, tenant)
    path = tmp_path / f"out.{fmt.value}"
    job = await export(engine, tenant, path, fmt=fmt)
    assert (job.status, job.exported, job.estimated_total) == (
        JobStatus.COMPLETED, len(expected), len(expected),
    )  # fmt: skip
    assert path.read_bytes() == expected_bytes(fmt, expected)
    reasons = {e.reason for e in expected}
    assert {"at start", "also at start", "last microsecond"} <= reasons
    assert not {"just before", "at end: excluded"} & reasons
    assert verify_export(path).ok
    assert not partial_path(path).exists()
    manifest = orjson.loads(manifest_path(path).read_bytes())
    assert (manifest["events"], manifest["first_event_id"], manifest["last_event_id"]) == (
        len(expected), str(expected[0].event_id), str(expected[-1].event_id),
    )  # fmt: skip
    if fmt is ExportFormat.JSON:  # read back by the model, not by the formatter
        lines = path.read_bytes().splitlines()
        assert [AuditEvent.from_dict(orjson.loads(line)) for line in lines] == expected
    if fmt is ExportFormat.OCSF:  # valid OCSF 1.5.0, each the tenant's event
        records = [parse_ocsf(line) for line in path.read_text().splitlines()]
        assert [r.fields["event_id"] for r in records] == [str(e.event_id) for e in expected]
        assert {r.fields["tenant_id"] for r in records} == {str(tenant)}
    if fmt is ExportFormat.CSV:  # one record per event for a real CSV parser
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode(), newline="")))
        assert [row[0] for row in rows[1:]] == [str(e.event_id) for e in expected]


async def test_filters_apply_and_another_tenants_events_never_appear(
    engine: Engine, tmp_path: Path
) -> None:
    """Another tenant's events with the very same ids and times are never exported; filters
    keep exactly the matching events of the tenant."""
    events = list(generate_events(300, 1, seed=2))
    tenant = events[0].tenant_id
    other = uuid4()
    twins = [replace(e, tenant_id=other, actor_email="intruder@other.example") for e in events]
    store(engine, events + twins)
    keep = EventFilter(categories=frozenset({EventCategory.AUTHENTICATION}), min_severity=3)
    path = tmp_path / "auth.json"
    job = await export(engine, tenant, path, fmt=ExportFormat.JSON, filters=keep)
    got = [AuditEvent.from_dict(orjson.loads(line)) for line in path.read_bytes().splitlines()]
    assert got == in_range(events, tenant, keep)
    assert job.exported == len(got) > 0
    assert b"intruder" not in path.read_bytes()
    assert all(e.tenant_id == tenant for e in got)


def fast_path_lines(engine: Engine, tenant: UUID, *, guard: bool = True) -> list[str]:
    """The CSV rows the export's fast path writes for all of `tenant`'s stored events."""
    with engine.connect() as conn:
        rows, _ = read_range_parts(
            conn, tenant_id=tenant, start=datetime(1, 1, 1, tzinfo=UTC),
            end=datetime(9999, 12, 31, tzinfo=UTC), filter=EventFilter(),
            snapshot=start_snapshot(conn), after=None, limit=1000, parts=CSV_SQL_PARTS,
        )  # fmt: skip
    return csv_lines_of_parts(rows, tenant, formula_guard=guard)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), guard=st.booleans())
def test_csv_fast_path_writes_what_csv_formatter_writes(
    engine: Engine, data: st.DataObject, guard: bool
) -> None:
    """For arbitrary events (hostile text, any year, any metadata), the CSV export's fast
    path (cells from the store, the rest in Python) writes what `CsvFormatter` writes."""
    tenant = uuid4()
    events = data.draw(st.lists(audit_events(st.just(tenant)), min_size=1, max_size=6))
    store(engine, events)
    lines = fast_path_lines(engine, tenant, guard=guard)
    by_time = sorted(events, key=lambda e: e.timestamp)
    formatter = CsvFormatter(formula_guard=guard)
    assert lines == [formatter(e) for e in by_time]


EDGE_TEXT = ["=1+1", "+x", "-1", "@SUM(1)", "\tTAB", "\rCR", 'say "hi"', "a,b\r\nc", "", "zoë 🔐"]
EDGE_TIMES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2256, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=UTC),
]


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "raw"])
def test_csv_fast_path_covers_the_edges(engine: Engine, guard: bool) -> None:
    """Times from year 1 to 9999 (before 1970 too), every formula trigger, quotes, line
    breaks and empty strings: the CSV fast path writes what `CsvFormatter` writes."""
    tenant = uuid4()
    base = next(iter(generate_events(1, 1, seed=12)))
    events = [
        replace(
            base, event_id=uuid4(), tenant_id=tenant, timestamp=moment, event_type=text or "x",
            event_name=text, actor_email=text, reason=text, request_id=text,
            metadata={text or "k": text},
        )
        for moment in EDGE_TIMES
        for text in EDGE_TEXT
    ]  # fmt: skip
    store(engine, events)
    lines = fast_path_lines(engine, tenant, guard=guard)
    formatter = CsvFormatter(formula_guard=guard)
    assert lines == [formatter(e) for e in events]


def test_csv_fast_path_doubles_quotes_in_an_address_zone(engine: Engine) -> None:
    """An IPv6 zone index may hold `"` and `,`: the fast path doubles the quote, as
    `CsvFormatter` does, so the row stays one well-formed record."""
    tenant = uuid4()
    base = next(iter(generate_events(1, 1, seed=13)))
    event = replace(base, event_id=uuid4(), tenant_id=tenant, source_ip='fe80::1%e"t,h0')
    store(engine, [event])
    (line,) = fast_path_lines(engine, tenant)
    assert line == CsvFormatter()(event)
    assert next(csv.reader(io.StringIO(line)))[7] == 'fe80::1%e"t,h0'


async def test_events_stored_while_the_export_runs_are_not_part_of_it(
    engine: Engine, tmp_path: Path
) -> None:
    """An export holds the events stored before it started: events ingested into the range
    meanwhile (after its checkpoint) are left out, so a resumed run cannot differ."""
    tenant, events = with_boundaries(seed=3)
    store(engine, events)
    expected = in_range(events, tenant)
    late = [at(e, END - 2 * US, reason="late") for e in expected[:50]]

    def ingest_late(done: int, total: int | None) -> None:
        if done and late:
            store(engine, late)
            late.clear()

    path = tmp_path / "snapshot.csv"
    job = await export(engine, tenant, path, on_progress=ingest_late)
    assert not late, "the late events were ingested mid-export"
    assert path.read_bytes() == expected_bytes(ExportFormat.CSV, expected)
    assert job.exported == job.estimated_total == len(expected)


async def test_an_export_waits_for_a_transaction_older_than_itself(
    pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL: an event of a transaction still open when the export starts, older than
    one that already committed, is exported once it commits: the export waits, never skips."""
    engine = make_engine(pg_url)
    upgrade(engine)
    tenant, events = with_boundaries(seed=4)
    store(engine, events)
    straggler = at(in_range(events, tenant)[3], START + US, reason="committed late")
    exporter = BatchExporter(engine=engine, settings=ExportSettings(chunk_events=50))
    job = create_export_job(
        engine,
        ExportRequest(tenant_id=tenant, start=START, end=END, output=tmp_path / "late.csv"),
        owner=exporter.owner,
    )
    with engine.connect() as conn:
        transaction = conn.begin()
        append_events(conn, [straggler])
        store(engine, list(generate_events(1, 1, seed=40)))  # a younger one commits first
        running = asyncio.create_task(exporter.run(job))
        await asyncio.sleep(0.3)
        assert not running.done(), "the export must wait for the open transaction"
        transaction.commit()
    finished = await asyncio.wait_for(running, 60)
    engine.dispose()
    assert finished.status is JobStatus.COMPLETED
    assert b"committed late" in (tmp_path / "late.csv").read_bytes()
    assert finished.exported == len(in_range(events, tenant)) + 1


async def test_cancelling_a_running_export_leaves_no_file(engine: Engine, tmp_path: Path) -> None:
    """`jobs cancel` on a running file export: it stops at its next checkpoint, is marked
    cancelled, and neither the file, its partial file nor a manifest remains."""
    tenant, events = with_boundaries(seed=5)
    store(engine, events)
    path = tmp_path / "cancelled.csv"
    asked: list[int] = []

    def cancel_after_first_page(done: int, total: int | None) -> None:
        if not asked:
            asked.append(done)
            with owner_connection(engine) as conn:
                (job_id,) = conn.execute(select(export_jobs.c.id)).scalars().all()[-1:]
            cancel_export_job(engine, tenant_id=tenant, job_id=UUID(job_id))

    job = await export(engine, tenant, path, chunk=20, on_progress=cancel_after_first_page)
    assert job.status is JobStatus.CANCELLED
    assert asked
    assert job.exported < len(in_range(events, tenant))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"end": START}, "end"),
        ({"end": START - timedelta(days=1)}, "end"),
        ({"start": START.replace(tzinfo=None)}, "start"),
        ({"tenant_id": UUID(int=7)}, "tenant_id"),
        ({"start": START + timedelta(days=400), "end": END + timedelta(days=400)}, "range"),
        ({"filters": EventFilter(event_types=frozenset({"NO_SUCH_TYPE"}))}, "range"),
        ({"output": "/nonexistent-dir/x.csv"}, "output"),
        ({"output": "."}, "output"),
        ({"output": None, "destination": "nowhere"}, "destination"),
        ({"destination": "both"}, "output"),
        ({"output": None}, "output"),
        ({"options": {"formula_guard": "perhaps"}}, "options.formula_guard"),
        ({"options": {"colour": "red"}}, "options.colour"),
    ],
)
def test_bad_requests_are_refused_naming_the_field_and_store_nothing(
    engine: Engine, tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    """Each bad request raises InvalidExport naming its field, and no job row is stored."""
    events = list(generate_events(200, 1, seed=6))
    store(engine, events)
    request = ExportRequest(
        tenant_id=events[0].tenant_id, start=START, end=END, output=tmp_path / "x.csv"
    )
    with pytest.raises(InvalidExport) as caught:
        create_export_job(engine, replace(request, **changes))
    assert caught.value.field == field
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(export_jobs)).scalar_one() == 0
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_kept_unless_overwrite_is_asked(engine: Engine, tmp_path: Path) -> None:
    """A file that exists is not replaced by accident; `overwrite` (`--force`) allows it."""
    events = list(generate_events(200, 1, seed=7))
    store(engine, events)
    path = tmp_path / "exists.csv"
    path.write_text("keep me")
    request = ExportRequest(tenant_id=events[0].tenant_id, start=START, end=END, output=path)
    with pytest.raises(InvalidExport, match="already exists"):
        create_export_job(engine, request)
    assert create_export_job(engine, replace(request, overwrite=True)).status is JobStatus.PENDING
    with pytest.raises(InvalidExport, match="already writes"):
        create_export_job(engine, replace(request, overwrite=True))


def test_a_job_lease_is_exclusive_and_fences_the_loser(engine: Engine, tmp_path: Path) -> None:
    """Only one process claims a job; once its lease expired and another took the job, the
    first one's checkpoints change nothing."""
    events = list(generate_events(200, 1, seed=8))
    store(engine, events)
    tenant = events[0].tenant_id
    job = create_export_job(
        engine, ExportRequest(tenant_id=tenant, start=START, end=END, output=tmp_path / "l.csv")
    )
    now = datetime.now(UTC)
    ttl = timedelta(seconds=10)
    with engine.begin() as conn:
        first = job_rows.claim_job(conn, owner="a", ttl=ttl, now=now)
        assert first is not None
        assert first.id == job.id
        assert first.owner == "a"
        assert job_rows.claim_job(conn, owner="b", ttl=ttl, now=now) is None
        later = now + timedelta(seconds=11)
        second = job_rows.claim_job(conn, owner="b", ttl=ttl, now=later)
        assert second is not None
        assert (second.owner, second.attempts) == ("b", 2)
        lost = job_rows.save_checkpoint(
            conn, tenant_id=tenant, job_id=job.id, owner="a", checkpoint=None, exported=99,
            first_event_id=None, last_event_id=None, ttl=ttl, now=later,
        )  # fmt: skip
        assert lost is None
        assert job_rows.get_job(conn, tenant_id=tenant, job_id=job.id).exported == 0  # type: ignore[union-attr]
        assert job_rows.get_job(conn, tenant_id=uuid4(), job_id=job.id) is None


def cli(*args: str, db: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "XAVYO_SIEM_DATABASE_URL": db, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_cli_exports_queues_lists_cancels_and_verifies(tmp_path: Path) -> None:
    """The commands end to end: a bad request exits 2 naming the flag, an export exits 0 and
    verifies, a queued job is listed and cancelled, and a tampered file fails to verify."""
    db = f"sqlite:///{tmp_path}/cli.db"
    engine = make_engine(db)
    upgrade(engine)
    events = list(generate_events(300, 1, seed=9))
    store(engine, events)
    tenant = str(events[0].tenant_id)
    span = ["--tenant", tenant, "--from", START.isoformat(), "--to", END.isoformat()]
    backwards = cli("export", "--tenant", tenant, "--from", END.isoformat(), "--to",
                    START.isoformat(), "-o", str(tmp_path / "b.csv"), db=db)  # fmt: skip
    assert backwards.returncode == 2
    assert b"error: --to: must be after --from" in backwards.stderr
    done = cli("export", *span, "-o", str(tmp_path / "a.csv"), "--json", db=db)
    assert done.returncode == 0, done.stderr
    job = orjson.loads(done.stdout)
    assert job["status"] == "completed"
    assert job["exported"] == len(in_range(events, events[0].tenant_id))
    assert cli("export", "verify", str(tmp_path / "a.csv"), db=db).returncode == 0
    queued = cli("export", *span, "--format", "json", "-o", str(tmp_path / "q.json"), "--queue",
                 "--json", db=db)  # fmt: skip
    queued_id = orjson.loads(queued.stdout)["id"]
    listed = [
        orjson.loads(line) for line in cli("jobs", "list", "--json", db=db).stdout.splitlines()
    ]
    assert {(j["id"], j["status"]) for j in listed} == {
        (job["id"], "completed"), (queued_id, "pending"),
    }  # fmt: skip
    assert cli("jobs", "cancel", queued_id, db=db).returncode == 0
    shown = orjson.loads(cli("jobs", "show", queued_id, "--json", db=db).stdout)
    assert shown["status"] == "cancelled"
    again = cli("jobs", "cancel", queued_id, db=db)
    assert again.returncode == 2
    assert b"already cancelled" in again.stderr
    with (tmp_path / "a.csv").open("ab") as handle:
        handle.write(b"extra\r\n")
    tampered = cli("export", "verify", str(tmp_path / "a.csv"), db=db)
    assert tampered.returncode == 1
    assert b"MISMATCH" in tampered.stderr
    engine.dispose()


def test_a_claim_with_no_job_waiting_is_one_small_statement(engine: Engine) -> None:
    """A worker asks for a job at every renewal with all of its destinations; when no job
    waits, it costs one statement that names none of them, and nothing is written."""
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    destinations = [uuid4() for _ in range(5_000)]
    with engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", seen)
        try:
            claimed = job_rows.claim_job(
                conn, owner="w", ttl=timedelta(seconds=10), now=datetime.now(UTC),
                destination_ids=destinations,
            )  # fmt: skip
        finally:
            event.remove(conn, "before_cursor_execute", seen)
        txid = conn.exec_driver_sql("SELECT 1").scalar()  # the transaction still works
    assert claimed is None
    assert txid == 1
    asked = [s for s, _ in statements if "export_jobs" in s]
    assert len(asked) == 1
    assert "UPDATE" not in asked[0].upper()
    assert str(destinations[0]) not in repr(statements)
