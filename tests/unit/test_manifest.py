"""Manifests: their fixed layout, and `verify_export` catching every kind of mismatch."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from xavyo_siem.errors import InvalidExport
from xavyo_siem.format import CsvWriter, make_formatter
from xavyo_siem.manifest import (
    PER_RUN_FIELDS,
    build_manifest,
    encode_manifest,
    manifest_path,
    verify_export,
)
from xavyo_siem.model import (
    AuditEvent,
    BatchExportJob,
    EventCategory,
    EventFilter,
    ExportFormat,
    ExportTarget,
)
from xavyo_siem.sample import generate_events

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)


def job_for(fmt: ExportFormat, tenant: uuid.UUID) -> BatchExportJob:
    return BatchExportJob(
        id=uuid.uuid4(),
        tenant_id=tenant,
        target_kind=ExportTarget.FILE,
        target="/tmp/x",
        format=fmt,
        start=START,
        end=END,
        filters=EventFilter(categories=frozenset({EventCategory.AUTHENTICATION})),
        created_at=START,
    )


def write_export(directory: Path, fmt: ExportFormat, events: list[AuditEvent]) -> Path:
    """An exported file and its manifest, written the way the exporter writes them."""
    path = directory / f"events.{fmt.value}"
    with path.open("wb") as handle:
        if fmt is ExportFormat.CSV:
            CsvWriter(handle).write_many(events)
        else:
            formatter = make_formatter(fmt)
            handle.write(b"".join(formatter(e).encode() + b"\n" for e in events))
    data = path.read_bytes()
    manifest = build_manifest(
        job_for(fmt, events[0].tenant_id),
        file_name=path.name,
        events=len(events),
        first_event_id=str(events[0].event_id),
        last_event_id=str(events[-1].event_id),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        finished_at=END,
    )
    manifest_path(path).write_bytes(encode_manifest(manifest))
    return path


def sample(count: int = 40) -> list[AuditEvent]:
    return list(generate_events(count, 1, seed=11))


def test_manifest_has_a_fixed_key_order_and_only_known_per_run_fields() -> None:
    """The manifest lists its fields in one order; only job id, name and times vary by run."""
    job = job_for(ExportFormat.CSV, uuid.uuid4())
    manifest = build_manifest(
        job, file_name="a.csv", events=1, first_event_id="x", last_event_id="x", size=3,
        sha256="00", finished_at=END,
    )  # fmt: skip
    assert list(manifest) == [
        "manifest_version", "generator", "job_id", "file", "tenant_id", "start", "end",
        "filters", "format", "options", "events", "first_event_id", "last_event_id", "bytes",
        "sha256", "created_at", "finished_at",
    ]  # fmt: skip
    assert set(manifest) >= PER_RUN_FIELDS
    assert manifest["filters"] == {
        "categories": ["authentication"],
        "event_types": [],
        "min_severity": 0,
    }
    assert encode_manifest(manifest).endswith(b"}\n")
    assert manifest_path(Path("/d/march.csv")) == Path("/d/march.csv.manifest.json")


@pytest.mark.parametrize("fmt", list(ExportFormat), ids=lambda f: f.value)
def test_an_intact_export_verifies_in_every_format(tmp_path: Path, fmt: ExportFormat) -> None:
    """A file as written verifies: size, hash, count and first/last ids read back per format."""
    events = sample()
    result = verify_export(write_export(tmp_path, fmt, events))
    assert result.ok, result.problems
    assert result.events == len(events)


def test_a_changed_byte_is_caught_by_the_hash(tmp_path: Path) -> None:
    """Changing one character of a record (same length) fails on the SHA-256 alone."""
    path = write_export(tmp_path, ExportFormat.CSV, sample())
    data = bytearray(path.read_bytes())
    index = data.index(b"login")
    data[index] = ord("L")
    path.write_bytes(bytes(data))
    result = verify_export(path)
    assert not result.ok
    assert any("SHA-256" in problem for problem in result.problems)


@pytest.mark.parametrize(
    "fmt", [ExportFormat.CSV, ExportFormat.JSON, ExportFormat.OCSF], ids=lambda f: f.value
)
def test_a_missing_last_record_is_caught_by_count_size_and_last_id(
    tmp_path: Path, fmt: ExportFormat
) -> None:
    """A file cut after its second-to-last record fails on size, hash, count and last id."""
    events = sample()
    path = write_export(tmp_path, fmt, events)
    cut = path.read_bytes()
    separator = b"\r\n" if fmt is ExportFormat.CSV else b"\n"
    path.write_bytes(cut[: cut.rstrip(separator).rindex(separator) + len(separator)])
    result = verify_export(path)
    joined = " ".join(result.problems)
    assert result.events == len(events) - 1
    for expected in ("bytes", "SHA-256", "events", "last event id"):
        assert expected in joined


def test_records_of_another_tenant_are_reported(tmp_path: Path) -> None:
    """A CSV whose manifest names another tenant fails: every record must be that tenant's."""
    path = write_export(tmp_path, ExportFormat.CSV, sample())
    manifest = orjson.loads(manifest_path(path).read_bytes())
    manifest["tenant_id"] = str(uuid.uuid4())
    manifest_path(path).write_bytes(encode_manifest(manifest))
    result = verify_export(path)
    assert any("belongs to tenant" in problem for problem in result.problems)


@pytest.mark.parametrize("fmt", [ExportFormat.JSON, ExportFormat.OCSF], ids=lambda f: f.value)
def test_a_json_record_of_another_tenant_is_reported(tmp_path: Path, fmt: ExportFormat) -> None:
    """A JSON or OCSF record that names another tenant than the manifest's fails the check."""
    path = write_export(tmp_path, fmt, sample())
    manifest = orjson.loads(manifest_path(path).read_bytes())
    manifest["tenant_id"] = str(uuid.uuid4())
    manifest_path(path).write_bytes(encode_manifest(manifest))
    result = verify_export(path)
    assert any("belongs to another tenant" in problem for problem in result.problems)


def test_no_manifest_is_a_clear_error(tmp_path: Path) -> None:
    """Without its manifest a file cannot be verified, and the error says which file is missing."""
    path = tmp_path / "orphan.csv"
    path.write_text("x\r\n")
    with pytest.raises(InvalidExport, match=r"orphan\.csv\.manifest\.json"):
        verify_export(path)


def test_cef_ids_are_read_from_the_extension_not_from_header_text(tmp_path: Path) -> None:
    """An event name that contains `externalId=` (in the CEF header) does not fool the reader."""
    events = sample(5)
    forged = str(uuid.uuid4())
    tricky = AuditEvent.from_dict(
        {**events[0].to_dict(), "event_name": f"x externalId={forged} | y"}
    )
    events[0] = tricky
    result = verify_export(write_export(tmp_path, ExportFormat.CEF, events))
    assert result.ok, result.problems
