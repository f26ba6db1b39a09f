"""How a worker shares the work and paces itself: the settings of `runtime.worker.Worker`
(`xavyo-siem run` fills them from its options)."""

from __future__ import annotations

from dataclasses import dataclass, field

from xavyo_siem.pipeline.loop import PipelineSettings

__all__ = ["WorkerSettings"]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker shares the work and paces itself.

    `scan_interval_s` is how often leases are renewed and taken (at most a third of the
    lease time); `poll_interval_s` of the pipeline settings is the slow poll of the feed
    when no notification comes (PostgreSQL: a fallback; SQLite: how another process's
    ingest is noticed).
    """

    lease_ttl_s: float = 30.0
    scan_interval_s: float = 10.0
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    export_jobs: int = 1  # batch export jobs run at once (0: none)
    export_chunk_events: int = 10_000
    idle_close_s: float = 60.0
    feed_page: int = 5_000
    feed_catch_up_events: int = 100_000  # a new feed starts at a cursor at most this far back
    max_turns: int = 256
    max_behind: int = 8
    max_buffered: int = 10_000
    shutdown_grace_s: float = 2.0
    listen_poll_s: float = 5.0  # PostgreSQL with LISTEN: the fallback poll
    export_retention_s: float | None = 7 * 86400.0  # finished export jobs expire (None: never)
    expiry_interval_s: float = 3600.0  # how often the retention is applied
