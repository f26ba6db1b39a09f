"""The blocking side of the file transport: appends and fsyncs on a few threads of the
process, shared by every file destination.

`Appends` runs the appends. A batch's append is handed over as a job; a thread takes the
jobs waiting (up to `CHUNK`), writes each, then fsyncs each, and hands the outcomes back to
the event loop in one call. A worker with thousands of file destinations, each sending a
batch of one event, then wakes its event loop once per chunk instead of once per batch, and
a handful of threads contend for the interpreter instead of one per batch in flight.
Writing a chunk before fsyncing it also lets the file system's journal commit the chunk's
files together: the later fsyncs find most of their work done.

`DirectorySync` makes new directory entries durable: files made at once in one directory
share its fsyncs (a group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = ["CHUNK", "AppendTarget", "Appends", "DirectorySync", "fsync_directory"]

CHUNK: Final = 32  # jobs a thread takes at once
_THREADS: Final = 8  # fsyncs in flight at once, each thread's chunk one after the other


class AppendTarget(Protocol):
    """A file that appends in two steps, both blocking (run on an `Appends` thread)."""

    def write(self, payload: bytes) -> int:
        """Append `payload` (not durable yet); the file's size before it. On failure the
        file is as it was, and the OSError is raised."""
        ...

    def sync(self, start: int) -> None:
        """Make what was appended since `start` durable; on failure take it back out and
        raise the OSError."""
        ...


@dataclass(slots=True, eq=False)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    target: AppendTarget
    payload: bytes
    start: int = 0
    error: BaseException | None = None


def _settle(jobs: list[_Job]) -> None:
    """On the event loop: each job's outcome to whoever awaits it (unless it gave up)."""
    for job in jobs:
        if job.future.done():
            continue
        if job.error is None:
            job.future.set_result(None)
        else:
            job.future.set_exception(job.error)


class Appends:
    """Durable appends on `threads` threads, started on first use (see the module
    docstring). Threads of the process's life: they wait for jobs, and hold none when
    the process ends with no append in flight."""

    def __init__(self, threads: int = _THREADS) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads = threads
        self._started = False
        self._lock = threading.Lock()

    async def append(self, target: AppendTarget, payload: bytes) -> None:
        """Append `payload` to `target` durably; raises what `write` or `sync` raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._started:
            self._start()
        self._jobs.put(_Job(loop, future, target, payload))
        await future

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for index in range(self._threads):
                thread = threading.Thread(
                    target=self._serve, name=f"xavyo-siem-append-{index}", daemon=True
                )
                thread.start()
            self._started = True

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            chunk = [jobs.get()]
            with contextlib.suppress(queue.Empty):
                while len(chunk) < CHUNK:
                    chunk.append(jobs.get_nowait())
            written: list[_Job] = []
            for job in chunk:
                try:
                    job.start = job.target.write(job.payload)
                    written.append(job)
                except Exception as exc:  # handed to the awaiting lane, never lost here
                    job.error = exc
            for job in written:
                try:
                    job.target.sync(job.start)
                except Exception as exc:
                    job.error = exc
            by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
            for job in chunk:
                by_loop.setdefault(job.loop, []).append(job)
            for loop, settled in by_loop.items():
                with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits
                    loop.call_soon_threadsafe(_settle, settled)


def fsync_directory(path: str) -> None:
    """Make the entries of directory `path` durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(slots=True)
class _Directory:
    started: int = 0  # fsyncs begun
    done: int = 0  # the last of them that succeeded
    running: bool = False
    callers: int = 0  # in `sync` now


@dataclass(slots=True)
class DirectorySync:
    """fsyncs of directories shared by the threads that need one (a group commit).

    `sync(path)` returns once an fsync of `path` that began after the call has succeeded
    (or raises the OSError of the one it ran itself). While one fsync runs, the callers that
    arrive wait; when it ends, one of them runs the next, which serves them all.
    `sync(path, since=generation(path))` with the generation noted when a file was made
    returns at once if an fsync that began after that has already succeeded: files made one
    after the other on one thread share one fsync too.
    """

    fsync: Callable[[str], None] = fsync_directory
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)
    _directories: dict[str, _Directory] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def generation(self, path: str) -> int:
        """The fsyncs of `path` begun so far: one begun later numbers above it."""
        with self._lock:
            return self._directories.setdefault(path, _Directory()).started

    def sync(self, path: str, *, since: int | None = None) -> None:
        with self._lock:
            directory = self._directories.setdefault(path, _Directory())  # kept: a few per process
            directory.callers += 1
            try:
                # The first fsync to begin after the call, or after `since` was noted.
                wanted = (directory.started if since is None else since) + 1
                while directory.done < wanted:
                    if directory.running:
                        self._changed.wait()
                    else:
                        self._run(path, directory)
            finally:
                directory.callers -= 1

    def waiting(self, path: str) -> int:
        """How many callers are in `sync(path)` now."""
        with self._lock:
            directory = self._directories.get(path)
            return 0 if directory is None else directory.callers

    def _run(self, path: str, directory: _Directory) -> None:
        """One fsync of `path`, the lock released meanwhile (held on entry and exit)."""
        directory.running = True
        directory.started += 1
        ticket = directory.started
        succeeded = False
        self._lock.release()
        try:
            self.fsync(path)
            succeeded = True
        finally:
            self._lock.acquire()
            directory.running = False
            if succeeded:
                directory.done = ticket
            self._changed.notify_all()
