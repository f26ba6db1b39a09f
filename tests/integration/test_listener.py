"""The worker's listener for new events on PostgreSQL: woken by ingest's notification, and
stopped at once rather than at the end of its wait on a silent connection."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import text

import xavyo_siem.store.changes as changes
from xavyo_siem.store import make_engine
from xavyo_siem.store.changes import CHANNEL, Listener


def test_a_notification_wakes_the_listener_and_stop_ends_its_wait_at_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a wait on a silent connection far longer than the join allows, and its
    descriptors numbered past 1,024, the listener is still woken by a notification sent on
    another connection, and `stop()` still ends its thread: both come through its
    sockets, not through the wait's end."""
    monkeypatch.setattr(changes, "SILENT_READ_S", 3600.0)
    # A worker with thousands of files open: the listener's descriptors past 1,024, where
    # select() cannot wait on them.
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    engine, other = make_engine(pg_url), make_engine(pg_url)
    woken = threading.Event()
    listener = Listener(engine, woken.set)
    listener.start()
    try:
        assert woken.wait(10)  # once connected: whatever was stored meanwhile
        woken.clear()
        with other.begin() as conn:  # as ingest in another process would (no local call)
            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        assert woken.wait(10)
    finally:
        listener.stop()
        engine.dispose()
        other.dispose()
        for fd in held:
            os.close(fd)
    assert listener._thread is not None
    assert not listener._thread.is_alive()
