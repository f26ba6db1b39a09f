"""Tailing sources: one task per enabled source, reading its peer table into the store.

`SourceTailer.run` keeps one task per enabled source (sources are few) and rescans the list
every `rescan_interval_s`, starting the tasks of new sources and stopping those of removed
or disabled ones. Each task works on a thread of its own (the peer's driver blocks):

1. it opens the sealed connection string (bound to the source and its peer);
2. on PostgreSQL it takes a session advisory lock on the store for the source, so one
   worker tails a source at a time (another worker's task waits and tries again; SQLite
   has one worker anyway);
3. it connects to the peer through the SSRF guard and reads pages of final rows in
   `(xid, seq)` order (`PeerTable.read_page`);
4. each row becomes an event through `AuditEvent.from_dict` (the same normalising path as
   a file or the API); a row that cannot be an event is kept in the quarantine, its source
   `source:<name>:<xid>:<seq>`;
5. the events, the quarantine entries and the source's new cursor are committed in one
   transaction (`ingest.store_events` with the cursor moved `within` it, compare-and-set),
   so the cursor never passes a row that is not stored, and a page stored twice (two
   workers racing after a lost lock) is refused the second time.

Anything that goes wrong in a task (the peer down or gone, a table altered, the store
unreachable, a bug) is caught there, recorded in the source's row (scrubbed of the
connection string) and logged, and the task starts again after a backoff with jitter,
doubling up to `backoff_max_s`; it never reaches the worker or another source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine, text

from xavyo_siem.crypto import KeyRing
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidEvent, SiemError
from xavyo_siem.ingest import IngestResult, store_events
from xavyo_siem.model import AuditEvent, SourcePosition, TableSource, to_epoch_us
from xavyo_siem.sources.mapping import RowReader
from xavyo_siem.store import sources as rows
from xavyo_siem.store.quarantine import QuarantineEntry

__all__ = ["SourcePage", "SourceTailer", "TailSettings", "page_of_rows", "store_page"]

log = logging.getLogger("xavyo_siem.sources")

_LOCK_KEY: Final = "SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"
# While caught up, the source's row notes it at most this often (its lag figure).
_SYNC_NOTE_S: Final = 5.0
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class TailSettings:
    """How often a caught-up source polls its peer, how often the list of sources is read
    again, and the backoff after a failure."""

    poll_interval_s: float = 1.0
    rescan_interval_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0


class _CursorMoved(SiemError):
    """The source's cursor is not where this task read it: another worker moved it, or the
    source is gone. The page is rolled back."""


def _tenant_of(data: dict[str, Any]) -> UUID | None:
    tenant = data.get("tenant_id")
    if isinstance(tenant, UUID):
        return tenant
    try:
        return UUID(tenant) if isinstance(tenant, str) else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SourcePage:
    """A page of rows made into events: the events, the rows that are no event (as
    quarantine entries), how many rows, and the position of the last one."""

    events: list[AuditEvent]
    set_aside: list[QuarantineEntry]
    rows: int
    end: SourcePosition


def page_of_rows(
    source: TableSource, reader: RowReader, page: Sequence[Sequence[Any]]
) -> SourcePage:
    """The events of `page` (rows `(xid, seq, *columns)`, not empty), each through
    `AuditEvent.from_dict` (`from_field_values`: the same, without making each row's
    mapping); a row that cannot be an event is set aside for the quarantine, its source
    `source:<name>:<xid>:<seq>`."""
    from_field_values, values_of = AuditEvent.from_field_values, reader.values
    events: list[AuditEvent] = []
    set_aside: list[QuarantineEntry] = []
    for row in page:
        try:
            events.append(from_field_values(values_of(row), partial(reader, row)))
        except InvalidEvent as exc:
            data = reader(row)
            where = f"source:{source.name}:{row[0]}:{row[1]}"
            set_aside.append(QuarantineEntry.of_value(str(exc), where, data, _tenant_of(data)))
    return SourcePage(events, set_aside, len(page), SourcePosition(page[-1][0], page[-1][1]))


def store_page(
    engine: Engine, source: TableSource, page: SourcePage, *, after: SourcePosition, synced: bool
) -> None:
    """Store the events of `page` (read after `after`), keep its set-aside rows in the
    quarantine, and move the source's cursor to its end, all in one transaction.
    `_CursorMoved` (nothing stored) when the cursor is no longer at `after`."""

    def move_cursor(conn: Connection, done: IngestResult) -> None:
        if not rows.advance_source(
            conn,
            source_id=source.id,
            expected=after,
            position=page.end,
            read=page.rows,
            quarantined=done.quarantined,
            synced_us=to_epoch_us(datetime.now(UTC)) if synced else None,
        ):
            raise _CursorMoved(f"source {source.name!r}: its cursor moved meanwhile")

    store_events(
        engine,
        page.events,
        set_aside=page.set_aside,
        source=f"source:{source.name}",
        within=move_cursor,
    )


class SourceTailer:
    """One tailing task per enabled source, until `stop()` (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        keyring: KeyRing,
        egress: EgressGuard,
        settings: TailSettings | None = None,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._egress = egress
        self.settings = settings or TailSettings()
        self._stop = threading.Event()
        self._tasks: dict[UUID, tuple[asyncio.Task[None], threading.Event]] = {}

    def stop(self) -> None:
        """Stop every task (each ends after the page it is storing)."""
        self._stop.set()
        for _, stopping in self._tasks.values():
            stopping.set()

    async def run(self) -> None:
        """Tail every enabled source until `stop()`; never raises for a source's fault."""
        try:
            while not self._stop.is_set():
                try:
                    enabled = await _on_thread(self._enabled)
                except Exception as exc:  # the store is away: the tasks keep trying
                    log.warning("sources: cannot read the list of sources (%s)", type(exc).__name__)
                else:
                    self._follow(enabled)
                await _on_thread(self._stop.wait, self.settings.rescan_interval_s)
        finally:
            for _, stopping in self._tasks.values():
                stopping.set()
            if self._tasks:
                await asyncio.wait([task for task, _ in self._tasks.values()], timeout=30)

    def _enabled(self) -> list[TableSource]:
        with self._engine.connect() as conn:
            return rows.list_sources(conn, enabled_only=True)

    def _follow(self, enabled: list[TableSource]) -> None:
        """Start the tasks of new sources (and of those whose task ended), stop those of
        sources removed or disabled."""
        wanted = {source.id: source for source in enabled}
        for source_id, (task, stopping) in list(self._tasks.items()):
            if source_id not in wanted or task.done():
                stopping.set()
                del self._tasks[source_id]
        for source_id, source in wanted.items():
            if source_id not in self._tasks:
                stopping = threading.Event()
                task = asyncio.create_task(self._keep_tailing(source, stopping))
                self._tasks[source_id] = (task, stopping)

    async def _keep_tailing(self, source: TableSource, stopping: threading.Event) -> None:
        """Tail `source` until told to stop, starting again after each failure (backoff)."""
        delay = self.settings.backoff_initial_s
        while not (stopping.is_set() or self._stop.is_set()):
            try:
                held = await _on_thread(self._tail, source, stopping)
                delay = self.settings.backoff_initial_s
                # Told to stop, gone meanwhile, or another worker tails it: look again later.
                pause = self.settings.poll_interval_s if held else self.settings.rescan_interval_s
                await _on_thread(stopping.wait, pause)
                continue
            except Exception as exc:  # isolation: a source's fault stays with the source
                reason = str(exc) if isinstance(exc, SiemError) else type(exc).__name__
                await self._note_failure(source, reason, delay)
            await _on_thread(stopping.wait, delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.settings.backoff_max_s)

    async def _note_failure(self, source: TableSource, reason: str, delay: float) -> None:
        log.warning("source %s: %s; trying again in %.0f s", source.name, reason, delay)
        now_us = to_epoch_us(datetime.now(UTC))

        def note() -> None:
            with self._engine.begin() as conn:
                rows.record_source_failure(conn, source_id=source.id, reason=reason, at_us=now_us)

        with contextlib.suppress(Exception):  # the store may be the one away
            await _on_thread(note)

    def _tail(self, source: TableSource, stopping: threading.Event) -> bool:
        """Tail `source` on this thread until told to stop; False when another worker
        holds it. Every error leaves as a `SiemError` scrubbed of the connection string."""
        # Imported here, with the driver of the peer: a worker that tails no source never
        # loads it (psycopg, about 25 MB resident).
        from xavyo_siem.sources.manage import open_dsn
        from xavyo_siem.sources.peer import PeerError, scrubbed

        dsn = open_dsn(self._engine, source, self._keyring)
        try:
            with self._holding(source) as held:
                if held:
                    self._follow_peer(source, dsn, stopping)
                return held
        except Exception as exc:
            said = str(exc) if isinstance(exc, SiemError) else f"{type(exc).__name__}: {exc}"
            raise PeerError(scrubbed(said, dsn)) from None

    def _follow_peer(self, source: TableSource, dsn: str, stopping: threading.Event) -> None:
        """Read pages from the peer and store them until told to stop. While a full page is
        stored, the next one is read on a helper thread (the store and the peer wait on
        their sockets and disks meanwhile, not on each other).

        Where a page's rows become events (Python holding the GIL throughout) depends on the
        store. Into PostgreSQL, on the helper: the store mostly waits for its server then,
        so the two overlap. Into SQLite, on this thread: SQLite gives the GIL up at every
        row it writes, in this process, and a helper busy making events took it back for a
        whole switch interval each time, so the two took turns with the switches on top
        (runs alternating in one process: 25,000-28,600 events/s with the events made on
        the helper, 28,700-31,500 without)."""
        from xavyo_siem.sources.manage import peer_table_of
        from xavyo_siem.sources.peer import connect_peer

        reader = RowReader(source.mapping, offset=2)
        table = peer_table_of(source, reader.columns)
        limit = source.batch_rows
        with self._engine.connect() as conn:
            found = rows.find_source(conn, name_or_id=str(source.id))
        if found is None:
            return
        position = found.state.position
        noted = 0.0
        with (
            connect_peer(dsn, self._egress) as peer,
            ThreadPoolExecutor(1, thread_name_prefix="xavyo-siem-source-read") as ahead,
        ):
            early = self._engine.dialect.name == "postgresql"  # events made on the helper

            def read(after: SourcePosition) -> tuple[list[tuple[Any, ...]], SourcePage | None]:
                found = table.read_page(peer, after=after, limit=limit)
                return found, page_of_rows(source, reader, found) if found and early else None

            coming = ahead.submit(read, position)
            while not (stopping.is_set() or self._stop.is_set()):
                found_rows, page = coming.result()
                full = len(found_rows) == limit
                if full:
                    last = found_rows[-1]
                    coming = ahead.submit(read, SourcePosition(last[0], last[1]))
                if found_rows:
                    page = page or page_of_rows(source, reader, found_rows)
                    store_page(self._engine, source, page, after=position, synced=not full)
                    position = page.end
                    noted = noted if full else time.monotonic()
                elif time.monotonic() - noted >= _SYNC_NOTE_S:
                    _note_synced(self._engine, source, position)
                    noted = time.monotonic()
                if not full:
                    stopping.wait(self.settings.poll_interval_s)
                    coming = ahead.submit(read, position)

    @contextlib.contextmanager
    def _holding(self, source: TableSource) -> Iterator[bool]:
        """Hold the source's advisory lock on the store for the block (PostgreSQL); whether
        it was had. The lock's connection is closed, not pooled, at the end."""
        if self._engine.dialect.name != "postgresql":
            yield True
            return
        conn = self._engine.connect()
        try:
            held = bool(
                conn.execute(text(_LOCK_KEY), {"key": f"xavyo_siem.source:{source.id}"}).scalar()
            )
            conn.commit()  # no transaction left open on the store (it would hold its horizon)
            yield held
        finally:
            conn.invalidate()
            conn.close()


def _note_synced(engine: Engine, source: TableSource, position: SourcePosition) -> None:
    """Note that `source` read everything final (its lag is nil now), at `position`."""
    with engine.begin() as conn:
        if not rows.advance_source(
            conn,
            source_id=source.id,
            expected=position,
            position=position,
            read=0,
            quarantined=0,
            synced_us=to_epoch_us(datetime.now(UTC)),
        ):
            raise _CursorMoved(f"source {source.name!r}: its cursor moved meanwhile")


async def _on_thread(function: Callable[..., _T], *args: Any) -> _T:
    """`function(*args)` on a daemon thread of its own: a peer that hangs never holds up
    the event loop, nor the process's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(outcome)

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as exc:
            error = exc  # `exc` is unbound once the block ends; the callback runs later
            settle(lambda: None if future.done() else future.set_exception(error))
        else:
            settle(lambda: None if future.done() else future.set_result(result))

    threading.Thread(target=run, name="xavyo-siem-source", daemon=True).start()
    return await future
