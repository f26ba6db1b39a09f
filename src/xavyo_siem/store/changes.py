"""Telling workers that new events were stored: PostgreSQL NOTIFY, or a call in-process.

Ingest calls `announce_new_events` after its transaction committed. On PostgreSQL it sends
a NOTIFY on the channel `xavyo_siem_events` in a transaction of its own: a transaction that
notifies takes a cluster-wide lock at commit, so it stays out of ingest's transaction, and
notifications are coalesced to at most one per `COALESCE_S` per process (the last one is
sent when the interval ends, never dropped). Workers in the same process (`run --api`)
are called directly, on either backend.

A worker listens with `Listener` (PostgreSQL: a connection of its own, on a thread,
reconnecting after an outage and waking the worker when it is back). A missed signal costs
latency, never an event: the worker also polls, slowly.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Final

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["CHANNEL", "COALESCE_S", "Listener", "announce_new_events"]

log = logging.getLogger("xavyo_siem.store")

CHANNEL: Final = "xavyo_siem_events"
COALESCE_S: Final = 0.02
# How long the listening thread waits on a silent connection before it reads it anyway.
SILENT_READ_S: Final = 1.0

_local: dict[str, set[Callable[[], None]]] = {}
_local_lock = threading.Lock()
_announcers: dict[str, _Announcer] = {}


def _key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def announce_new_events(engine: Engine) -> None:
    """Wake the workers that serve this store: new events were committed."""
    key = _key(engine)
    with _local_lock:
        callbacks = list(_local.get(key, ()))
        announcer = None
        if engine.dialect.name == "postgresql":
            announcer = _announcers.get(key)
            if announcer is None:
                announcer = _announcers[key] = _Announcer(engine)
    for callback in callbacks:
        callback()
    if announcer is not None:
        announcer.announce()


class _Announcer:
    """At most one NOTIFY per `COALESCE_S`; one asked for in between is sent at its end."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._last = 0.0
        self._waiting = False

    def announce(self) -> None:
        with self._lock:
            if self._waiting:
                return
            wait = self._last + COALESCE_S - time.monotonic()
            if wait > 0:
                self._waiting = True
                timer = threading.Timer(wait, self._send_waiting)
                timer.daemon = True
                timer.start()
                return
            self._last = time.monotonic()
        self._send()

    def _send_waiting(self) -> None:
        with self._lock:
            self._waiting = False
            self._last = time.monotonic()
        self._send()

    def _send(self) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        except SQLAlchemyError as exc:  # the workers' slow poll covers a lost signal
            log.debug("could not notify workers of new events: %s", exc)


class Listener:
    """Calls `wake` (from another thread) whenever new events may have been stored.

    Call `start()` once and `stop()` at the end. On PostgreSQL a thread holds a LISTEN
    connection; when it breaks, the thread reconnects with backoff and calls `wake` once
    connected again (signals may have been missed meanwhile). The thread waits on that
    connection's socket and on one of its own, on which `stop()` wakes it at once.
    """

    def __init__(self, engine: Engine, wake: Callable[[], None]) -> None:
        self._engine = engine
        self._wake = wake
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._interrupt: socket.socket | None = None  # stop() writes to it, the thread wakes

    def start(self) -> None:
        with _local_lock:
            _local.setdefault(_key(self._engine), set()).add(self._wake)
        if self._engine.dialect.name == "postgresql":
            self._interrupt, interrupted = socket.socketpair()
            self._thread = threading.Thread(
                target=self._listen, args=(interrupted,), name="xavyo-siem-listen"
            )
            self._thread.daemon = True
            self._thread.start()

    def stop(self) -> None:
        with _local_lock:
            _local.get(_key(self._engine), set()).discard(self._wake)
        self._stopping.set()
        if self._thread is not None and self._interrupt is not None:
            self._interrupt.send(b"\0")
            self._thread.join(timeout=5)
            self._interrupt.close()

    def _listen(self, interrupted: socket.socket) -> None:
        import psycopg  # here: only a PostgreSQL store listens, and the driver is 25 MB resident

        url = self._engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        delay = 0.5
        with interrupted:
            while not self._stopping.is_set():
                try:
                    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        delay = 0.5
                        self._wake()  # anything stored while we were not listening
                        # poll, not select: a worker with thousands of files open
                        # reconnects on a descriptor past select's limit of 1,024.
                        waited = select.poll()
                        waited.register(conn.fileno(), select.POLLIN)
                        waited.register(interrupted.fileno(), select.POLLIN)
                        while not self._stopping.is_set():
                            if list(conn.notifies(timeout=0)):  # all that arrived, at once
                                self._wake()
                            # The timeout only bounds how long a silent connection goes
                            # unread; a notification or `stop()` ends the wait at once.
                            waited.poll(SILENT_READ_S * 1000)
                except psycopg.Error as exc:
                    log.debug(
                        "listening for new events failed (%s); retrying in %.1f s", exc, delay
                    )
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 10.0)
