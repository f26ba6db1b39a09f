"""Batch export jobs: one tenant's time range to a file or a destination, and how far it got."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from xavyo_siem.model.conversions import EPOCH, format_timestamp, optional_timestamp
from xavyo_siem.model.enums import ExportFormat, ExportTarget, JobStatus
from xavyo_siem.model.filter import EventFilter

__all__ = ["BatchExportJob", "ExportCheckpoint"]


@dataclass(frozen=True, slots=True)
class ExportCheckpoint:
    """How far a batch export got: past the event at `(ts_us, seq)` in time order.

    `bytes_written` is the length of the partial file at that point (file exports only): a
    resumed export cuts the file back to it and continues after `(ts_us, seq)`.
    """

    ts_us: int
    seq: int
    bytes_written: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchExportJob:
    """One tenant's events of `[start, end)` exported to a file or a destination.

    `status` goes pending -> running -> completed | failed | cancelled. `exported` counts the
    events written (or delivered) so far, `estimated_total` the events in the range when the
    job started. The events are those stored before the job started (`snapshot_txid`,
    `snapshot_seq`, see docs/export.md), so a resumed job exports exactly what an
    uninterrupted one would. `owner` and `lease_expires_at` say which process runs it.
    """

    id: UUID
    tenant_id: UUID
    target_kind: ExportTarget
    target: str
    format: ExportFormat
    start: datetime
    end: datetime
    filters: EventFilter = field(default_factory=EventFilter)
    options: Mapping[str, Any] = field(default_factory=dict)
    status: JobStatus = JobStatus.PENDING
    exported: int = 0
    estimated_total: int | None = None
    dead_lettered: int = 0
    error: str | None = None
    cancel_requested: bool = False
    first_event_id: UUID | None = None
    last_event_id: UUID | None = None
    checkpoint: ExportCheckpoint | None = None
    snapshot_txid: int | None = None
    snapshot_seq: int | None = None
    attempts: int = 0
    owner: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime = EPOCH
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """True once the job completed, failed or was cancelled."""
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    def to_dict(self) -> dict[str, Any]:
        """The public JSON form shown by `xavyo-siem jobs show --json` and the API."""
        return {
            "id": str(self.id),
            "tenant_id": str(self.tenant_id),
            "target_kind": self.target_kind.value,
            "target": self.target,
            "format": self.format.value,
            "options": dict(self.options),
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "filters": self.filters.to_dict(),
            "status": self.status.value,
            "exported": self.exported,
            "estimated_total": self.estimated_total,
            "dead_lettered": self.dead_lettered,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "first_event_id": None if self.first_event_id is None else str(self.first_event_id),
            "last_event_id": None if self.last_event_id is None else str(self.last_event_id),
            "attempts": self.attempts,
            "owner": self.owner,
            "lease_expires_at": optional_timestamp(self.lease_expires_at),
            "created_at": format_timestamp(self.created_at),
            "started_at": optional_timestamp(self.started_at),
            "finished_at": optional_timestamp(self.finished_at),
        }
