"""The store's hourly upkeep in a worker: finished export jobs expire, the partitions of
the coming days are made (PostgreSQL), and the retention policies are applied."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Engine

from xavyo_siem.batch import expire_export_jobs
from xavyo_siem.store.partitions import ensure_partitions
from xavyo_siem.store.retention import apply_retention

__all__ = ["keep_store"]

log = logging.getLogger(__name__)


def keep_store(engine: Engine, *, export_retention: timedelta | None, now: datetime) -> None:
    """One upkeep pass (blocking; the worker runs it in a thread). Each step runs even if
    the one before failed; the first failure is raised at the end."""
    failed: Exception | None = None
    steps: list[Callable[[], object]] = []
    if export_retention is not None:
        steps.append(partial(expire_export_jobs, engine, retention=export_retention, now=now))
    steps += [partial(ensure_partitions, engine), partial(apply_retention, engine, now=now)]
    for step in steps:
        try:
            step()
        except Exception as exc:  # the next pass tries again
            log.warning("store upkeep: %s failed: %s", getattr(step, "func", step), exc)
            failed = failed or exc
    if failed is not None:
        raise failed
