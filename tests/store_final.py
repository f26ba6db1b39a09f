"""Waiting until the events stored so far are final (the change feed reads up to there)."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from xavyo_siem.store.events import read_horizon
from xavyo_siem.store.scope import FEED_MARK


def wait_until_final(engine: Engine) -> None:
    """Until every stored event is final: on PostgreSQL a transaction elsewhere in the
    cluster (another test's) may hold the horizon back for a moment. Raises after 2 min."""
    if engine.dialect.name != "postgresql":
        return  # SQLite: every committed event is final
    deadline = time.monotonic() + 120
    while True:
        with engine.connect() as conn:
            # The newest event of any tenant, final or not (row-level security hides them
            # from this role; the feed's own function tells the position).
            last = conn.exec_driver_sql(f"SELECT txid FROM {FEED_MARK}(%s, 0)", (2**62,)).scalar()
            if last is None or read_horizon(conn) > last:
                return
        if time.monotonic() > deadline:
            raise AssertionError("a transaction elsewhere in the cluster stayed open for 2 min")
        time.sleep(0.05)
