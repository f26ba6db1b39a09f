"""How an export run is paced and steered: settings, progress, stop, cancel, lost lease."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from xavyo_siem.pipeline.loop import DestinationLoop, PipelineSettings
from xavyo_siem.store.leases import LeaseLost

__all__ = [
    "PARTIAL_SUFFIX",
    "Busy",
    "Cancelled",
    "ExportSettings",
    "Progress",
    "RunControl",
    "RunEnded",
    "Stopped",
    "now_utc",
    "partial_path",
]

# Called with (events done, total or None) after each checkpoint, possibly from a worker thread.
Progress = Callable[[int, int | None], None]


PARTIAL_SUFFIX: Final = ".partial"


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """How an exporter paces itself.

    `chunk_events`: events per page read, written and checkpointed. `lease_ttl_s`: how long
    a job stays leased to a process that stopped renewing (died). `poll_s`: how often the
    lease is renewed and a cancel request looked for while a destination export waits.
    """

    chunk_events: int = 10_000
    lease_ttl_s: float = 30.0
    poll_s: float = 1.0
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)

    @property
    def ttl(self) -> timedelta:
        """The lease time to live."""
        return timedelta(seconds=self.lease_ttl_s)


def partial_path(path: Path) -> Path:
    """Where a file export writes until it is complete: `<file>.partial`."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def now_utc() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


class RunEnded(Exception):
    """A run ended before its end of range; the exporter maps each kind to the job's state."""


class Cancelled(RunEnded):
    """Someone asked to cancel the job."""


class Stopped(RunEnded):
    """The process is shutting down: give the job back, keep the checkpoint."""


class Busy(RunEnded):
    """Another live process still writes the partial file (its lease expired meanwhile)."""


@dataclass(slots=True)
class RunControl:
    """Signals between the exporter, its lease keeper and the thread that writes the file."""

    stop: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    counted: threading.Event = field(default_factory=threading.Event)
    total: int | None = None
    loop: DestinationLoop | None = None

    def halt(self) -> None:
        if self.loop is not None:
            self.loop.stop()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost("the job's lease was lost; another process runs it now")
        if self.cancel.is_set():
            raise Cancelled()
        if self.stop.is_set():
            raise Stopped()
