"""The manifest beside an exported file, and checking a file against it (`export verify`).

A manifest is `<file>.manifest.json`: what the file holds (tenant, range, filters, format,
options, event count, first and last event ids), its size and its SHA-256. `verify_export`
recomputes the hash, counts the records with a parser of the format and reads the first and
last event ids back, so anyone holding the two files can check that the file is complete and
unchanged, without access to the store.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from xavyo_siem import __version__
from xavyo_siem.errors import InvalidExport
from xavyo_siem.format import CSV_COLUMNS
from xavyo_siem.model import BatchExportJob, ExportFormat, format_timestamp

__all__ = [
    "MANIFEST_SUFFIX",
    "MANIFEST_VERSION",
    "Verification",
    "build_manifest",
    "encode_manifest",
    "manifest_path",
    "verify_export",
]

MANIFEST_SUFFIX: Final = ".manifest.json"
MANIFEST_VERSION: Final = 1
# The fields that differ between two exports of the same events: everything else is equal.
PER_RUN_FIELDS: Final = frozenset(("job_id", "file", "created_at", "finished_at"))
_REQUIRED: Final = (
    "manifest_version",
    "tenant_id",
    "format",
    "events",
    "first_event_id",
    "last_event_id",
    "bytes",
    "sha256",
)
_READ_BYTES: Final = 1 << 20
_UUID: Final = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CEF_EXTERNAL_ID: Final = re.compile(f"(?:^| )externalId=({_UUID})(?= |$)")
_SYSLOG_EVENT_ID: Final = re.compile(f'^\\[xavyo@[0-9.]+ eventId="({_UUID})"')


def manifest_path(file: Path) -> Path:
    """Where the manifest of `file` is: beside it, named `<file name>.manifest.json`."""
    return file.with_name(file.name + MANIFEST_SUFFIX)


def build_manifest(
    job: BatchExportJob,
    *,
    file_name: str,
    events: int,
    first_event_id: str | None,
    last_event_id: str | None,
    size: int,
    sha256: str,
    finished_at: datetime,
) -> dict[str, Any]:
    """The manifest of a finished file export, keys in a fixed order."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "generator": f"xavyo-siem {__version__}",
        "job_id": str(job.id),
        "file": file_name,
        "tenant_id": str(job.tenant_id),
        "start": format_timestamp(job.start),
        "end": format_timestamp(job.end),
        "filters": job.filters.to_dict(),
        "format": job.format.value,
        "options": dict(sorted(job.options.items())),
        "events": events,
        "first_event_id": first_event_id,
        "last_event_id": last_event_id,
        "bytes": size,
        "sha256": sha256,
        "created_at": format_timestamp(job.created_at),
        "finished_at": format_timestamp(finished_at),
    }


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as indented JSON with a final newline."""
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"


@dataclass(frozen=True, slots=True)
class Verification:
    """What `verify_export` found: `ok`, or each problem in words."""

    file: Path
    manifest: Mapping[str, Any]
    problems: list[str] = field(default_factory=list)
    events: int | None = None

    @property
    def ok(self) -> bool:
        """True when the file matches its manifest in every respect checked."""
        return not self.problems


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise InvalidExport("file", f"no manifest {path} beside the file") from None
    except orjson.JSONDecodeError as exc:
        raise InvalidExport("manifest", f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidExport("manifest", f"{path} is not a JSON object")
    for key in _REQUIRED:
        if key not in data:
            raise InvalidExport("manifest", f"{path} has no {key!r}")
    if data["manifest_version"] != MANIFEST_VERSION:
        raise InvalidExport(
            "manifest", f"version {data['manifest_version']!r} is not {MANIFEST_VERSION}"
        )
    return data


def _digest(path: Path) -> tuple[int, str]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_BYTES):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def _csv_ids(path: Path, tenant: str, problems: list[str]) -> Iterator[str]:
    with path.open("r", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        header = next(reader, None)
        if header != list(CSV_COLUMNS):
            problems.append("the CSV header is not xavyo-siem's")
            return
        for number, row in enumerate(reader, start=2):
            if len(row) != len(CSV_COLUMNS):
                problems.append(f"record {number} has {len(row)} fields, not {len(CSV_COLUMNS)}")
                return
            if row[1] != tenant:
                problems.append(f"record {number} belongs to tenant {row[1]}, not {tenant}")
                return
            yield row[0]


def _line_ids(path: Path, fmt: ExportFormat, tenant: str, problems: list[str]) -> Iterator[str]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                problems.append(f"record {number} does not end with a line feed")
                return
            line = raw[:-1].decode("utf-8")
            found: str | None = None
            if fmt is ExportFormat.JSON:
                data = orjson.loads(line)
                found = data.get("event_id") if isinstance(data, dict) else None
                if isinstance(data, dict) and data.get("tenant_id") != tenant:
                    problems.append(f"record {number} belongs to another tenant")
                    return
            elif fmt is ExportFormat.OCSF:
                data = orjson.loads(line)
                meta = data.get("metadata") if isinstance(data, dict) else None
                found = meta.get("uid") if isinstance(meta, dict) else None
                if isinstance(meta, dict) and meta.get("tenant_uid") != tenant:
                    problems.append(f"record {number} belongs to another tenant")
                    return
            elif fmt is ExportFormat.CEF:
                match = _CEF_EXTERNAL_ID.search(_cef_extension(line))
                found = match.group(1) if match else None
            else:
                parts = line.split(" ", 6)
                match = _SYSLOG_EVENT_ID.match(parts[6]) if len(parts) == 7 else None
                found = match.group(1) if match else None
            if not isinstance(found, str):
                problems.append(f"record {number} has no event id")
                return
            yield found


def _cef_extension(line: str) -> str:
    """The extension of a CEF line: what follows the seventh unescaped `|`."""
    pipes = 0
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char == "|":
            pipes += 1
            if pipes == 7:
                return line[index + 1 :]
        index += 1
    return ""


def verify_export(file: Path, *, manifest_file: Path | None = None) -> Verification:
    """Check `file` against its manifest: size, SHA-256, record count, first and last ids.

    Raises `InvalidExport` when there is no usable manifest; every mismatch is a problem in
    the result. Reads the file twice (hash, then records), in bounded memory.
    """
    manifest = _load_manifest(manifest_file or manifest_path(file))
    problems: list[str] = []
    if not file.is_file():
        raise InvalidExport("file", f"{file} does not exist or is not a file")
    size, sha256 = _digest(file)
    if size != manifest["bytes"]:
        problems.append(f"the file has {size:,} bytes, the manifest says {manifest['bytes']:,}")
    if sha256 != manifest["sha256"]:
        problems.append("the SHA-256 differs from the manifest's: the file was changed")
    try:
        fmt = ExportFormat(manifest["format"])
    except ValueError:
        problems.append(f"unknown format {manifest['format']!r}")
        return Verification(file, manifest, problems)
    tenant = str(manifest["tenant_id"])
    count = 0
    first: str | None = None
    last: str | None = None
    try:
        ids = (
            _csv_ids(file, tenant, problems)
            if fmt is ExportFormat.CSV
            else _line_ids(file, fmt, tenant, problems)
        )
        for event_id in ids:
            if first is None:
                first = event_id
            last = event_id
            count += 1
    except (UnicodeDecodeError, csv.Error, orjson.JSONDecodeError) as exc:
        problems.append(f"the file cannot be read as {fmt.value}: {exc}")
    if count != manifest["events"]:
        problems.append(
            f"the file holds {count:,} events, the manifest says {manifest['events']:,}"
        )
    if first != manifest["first_event_id"] or last != manifest["last_event_id"]:
        problems.append("the first or last event id differs from the manifest's")
    return Verification(file, manifest, problems, count)
