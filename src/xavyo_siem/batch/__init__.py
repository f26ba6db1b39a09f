"""Batch exports: one tenant's events of a time range, to a file or a destination, resumable.

A request is validated (`create_export_job`) and becomes a `BatchExportJob` row: pending
(queued for the workers of `xavyo-siem run`), or running and leased to the process that
created it. `BatchExporter.run` carries a leased job to its end:

* the events are those stored before the job first started (a store snapshot, see
  store/ranges.py), read in `(timestamp, seq)` order one page at a time;
* a file export (`files.py`) writes `<file>.partial`, and after every page flushes, fsyncs
  and records a checkpoint (last key, file length, count, first and last ids) in the job
  row. A resumed job cuts the partial file back to its checkpoint and continues after it,
  so the file is byte for byte the one an uninterrupted run writes. At the end the manifest
  is written and both files are renamed into place; a failed or cancelled job deletes what
  it wrote;
* a destination export (`destination.py`) runs the destination delivery loop (rate limit,
  retries, circuit, dead letters) on a `RangeSource`: its checkpoint lives in the job, so
  the destination's streaming cursor and health never move.

Finished jobs and their files expire after a retention period (`expiry.py`).
`requests.py` validates requests and finds, resumes and cancels jobs; `control.py` holds the
settings and the signals between an exporter and its threads. The layout of the files and
the guarantees are in docs/export.md.
"""

from xavyo_siem.batch.control import ExportSettings, Progress, partial_path
from xavyo_siem.batch.destination import RangeSource
from xavyo_siem.batch.expiry import Expired, expire_export_jobs
from xavyo_siem.batch.exporter import BatchExporter
from xavyo_siem.batch.files import csv_lines_of_parts
from xavyo_siem.batch.requests import (
    ExportRequest,
    cancel_export_job,
    create_export_job,
    find_export_job,
    resume_export_job,
)

__all__ = [
    "BatchExporter",
    "Expired",
    "ExportRequest",
    "ExportSettings",
    "Progress",
    "RangeSource",
    "cancel_export_job",
    "create_export_job",
    "csv_lines_of_parts",
    "expire_export_jobs",
    "find_export_job",
    "partial_path",
    "resume_export_job",
]
