"""The worker's way to the store: each call one transaction on a thread, outages noticed.

A connection that fails (refused, reset, the server restarting) makes the gate raise
`StoreUnavailable`, mark the store unavailable (the metric, one log line) and remember
since when; the next call that succeeds marks it available again and says how long it was
away. The worker keeps running in between: it waits, tries again, and goes on from what the
store holds. Every statement is counted (`xavyo_siem_store_statements_total`).

Store work runs on threads of the gate's own, not the event loop's shared pool: thousands
of file destinations fsyncing there must not make the feed's reads and the progress writes
wait their turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from xavyo_siem.pipeline import metrics
from xavyo_siem.pipeline.lane import SourceUnavailable
from xavyo_siem.store.engine import in_snapshot, in_transaction

__all__ = ["StoreGate", "StoreUnavailable", "is_outage"]

log = logging.getLogger("xavyo_siem.pipeline")

_R = TypeVar("_R")


class StoreUnavailable(SourceUnavailable):
    """The store cannot be reached now."""


def _count_statement(*_: Any) -> None:
    metrics.STORE_STATEMENTS.inc()


def is_outage(exc: DBAPIError) -> bool:
    """Whether a store error means the store cannot be reached (not a bad statement)."""
    return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated


class StoreGate:
    """Runs store work for the worker and notices when the store is away."""

    def __init__(self, engine: Engine, *, threads: int = 8) -> None:
        self.engine = engine
        self.down_since: datetime | None = None
        self._down_at = 0.0
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="xavyo-store")
        if not event.contains(engine, "before_cursor_execute", _count_statement):
            event.listen(engine, "before_cursor_execute", _count_statement)
        metrics.STORE_AVAILABLE.set(1)
        metrics.STORE_UNAVAILABLE_SINCE.set(0)

    @property
    def available(self) -> bool:
        return self.down_since is None

    async def write(self, work: Callable[[Connection], _R]) -> _R:
        """`work` in one transaction that writes."""
        return await self._through(in_transaction, work)

    async def read(self, work: Callable[[Connection], _R]) -> _R:
        """`work` in one transaction that only reads."""
        return await self._through(in_snapshot, work)

    def close(self) -> None:
        """Let the gate's threads go (work already handed to them finishes first)."""
        self._threads.shutdown(wait=False)

    async def probe(self) -> bool:
        """Whether the store answers now (and say so when it is back)."""
        try:
            await self.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        except StoreUnavailable:
            return False
        return True

    async def _through(self, run: Any, work: Callable[[Connection], _R]) -> _R:
        loop = asyncio.get_running_loop()
        try:
            result: _R = await loop.run_in_executor(self._threads, run, self.engine, work)
        except DBAPIError as exc:
            if not is_outage(exc):
                raise
            self._went_down(exc)
            raise StoreUnavailable(_first_line(exc)) from exc
        if self.down_since is not None:
            self._came_back()
        return result

    def _went_down(self, exc: DBAPIError) -> None:
        if self.down_since is not None:
            return
        self.down_since = datetime.now(UTC)
        self._down_at = time.monotonic()
        metrics.STORE_AVAILABLE.set(0)
        metrics.STORE_UNAVAILABLE_SINCE.set(self.down_since.timestamp())
        log.error(
            "store unavailable since %s: %s; delivery waits and resumes when it is back",
            self.down_since.isoformat(timespec="seconds"),
            _first_line(exc),
        )

    def _came_back(self) -> None:
        away = time.monotonic() - self._down_at
        log.warning("store available again after %.1f s", away)
        self.down_since = None
        metrics.STORE_AVAILABLE.set(1)
        metrics.STORE_UNAVAILABLE_SINCE.set(0)


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", exc)).strip()
    return message.splitlines()[0] if message else type(exc).__name__
