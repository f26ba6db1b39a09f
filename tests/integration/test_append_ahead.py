"""Appending events that come lazily: their rows are built on a helper thread while the
previous chunk is written (PostgreSQL), and nothing is left running or written when either
side fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import cycle

import pytest
from sqlalchemy import Engine, func, select

from store_roles import owner_connection
from xavyo_siem.errors import InvalidEvent
from xavyo_siem.model import AuditEvent
from xavyo_siem.sample import generate_events
from xavyo_siem.store import append as append_module
from xavyo_siem.store import append_events
from xavyo_siem.store.tables import audit_events


def _rows_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "xavyo-siem-rows"]


def _stored_count(engine: Engine) -> int:
    """Every tenant's stored events (row-level security aside)."""
    with owner_connection(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def test_an_error_from_the_events_while_chunks_are_stored_rolls_back_everything(
    engine: Engine,
) -> None:
    """An error raised by the events after several chunks were handed over (a bad input
    line) reaches the caller unchanged, the helper thread is gone, and the caller's
    transaction rolls back every chunk written before it."""
    bad_line = InvalidEvent("timestamp", "must carry a UTC offset", line=41)

    def events() -> Iterator[AuditEvent]:
        yield from generate_events(40, 2, seed=32)
        raise bad_line

    with pytest.raises(InvalidEvent) as raised, engine.begin() as conn:
        append_events(conn, events(), chunk_size=4)
    assert raised.value is bad_line
    assert _rows_threads() == []
    assert _stored_count(engine) == 0


def test_a_write_that_fails_stops_the_helper_thread_of_endless_events(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When writing a chunk fails, the error reaches the caller and the helper thread that
    builds rows has stopped by then, even though the events never end."""

    def fail(*_args: object, **_kwargs: object) -> append_module.AppendResult:
        raise RuntimeError("disk full")

    monkeypatch.setattr(append_module, "_append_sqlite", fail)
    monkeypatch.setattr(append_module, "_append_postgres", fail)
    endless = cycle(list(generate_events(10, 1, seed=33)))
    with pytest.raises(RuntimeError, match="disk full") as raised, engine.begin() as conn:
        append_events(conn, endless, chunk_size=4)
    # Checked while the error, and through its traceback the append's frame, is alive.
    assert raised.tb is not None
    assert _rows_threads() == []
    assert _stored_count(engine) == 0
