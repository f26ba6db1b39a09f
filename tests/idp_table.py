"""The identity provider's audit table as the source tests and benchmark make it: each row
carries its writing transaction's id and a sequence number (docs/sources.md), and rows are
written in transactions of their own with psycopg. `Tailing` runs a `SourceTailer` on a
thread of its own for one test, with short intervals."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import orjson
import psycopg
from sqlalchemy import Engine, text

from store_roles import owner_connection
from xavyo_siem.crypto import KeyRing
from xavyo_siem.egress import EgressGuard
from xavyo_siem.sources.tail import SourceTailer, TailSettings

__all__ = [
    "ALLOW_LOOPBACK",
    "IDP_TABLE",
    "INSERT",
    "MAPPING",
    "PASSWORD",
    "TENANT",
    "Tailing",
    "idp_row",
    "stored_ids",
    "wait_for",
    "write_rows",
]

# The peer's password in the tests' connection strings (trust authentication ignores it):
# what must never be shown.
PASSWORD: Final = "s3cret-Pa55word-of-the-idp"
ALLOW_LOOPBACK: Final = EgressGuard(allow=("127.0.0.1/32",))

IDP_TABLE: Final = """
CREATE SCHEMA audit;
CREATE TABLE audit.events (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id uuid NOT NULL,
    tenant uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    actor text,
    ip inet,
    details jsonb,
    region text
);
CREATE INDEX ON audit.events (xact_id, seq);
"""
INSERT: Final = (
    "INSERT INTO audit.events (id, tenant, kind, actor, ip, details, region)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
MAPPING: Final = [
    "event_id=id",
    "tenant_id=tenant",
    "timestamp=created_at",
    "event_type=kind",
    "actor_email=actor",
    "source_ip=ip",
    "metadata=details",
    "metadata.region=region",
]
TENANT: Final = uuid.UUID("3f0c6a8e-1d2b-4c5d-9e8f-0a1b2c3d4e5f")


def idp_row(tenant: uuid.UUID | None = TENANT) -> tuple[Any, ...]:
    """One row's values, in INSERT's order, with a fresh event id."""
    return (
        uuid.uuid4(), tenant, "USER_LOGIN", "ada@example.com", "192.0.2.7",
        orjson.dumps({"app": "console"}).decode(), "eu",
    )  # fmt: skip


def write_rows(dsn: str, count: int, tenant: uuid.UUID | None = TENANT) -> list[uuid.UUID]:
    """Insert `count` rows in one transaction; their event ids."""
    rows = [idp_row(tenant) for _ in range(count)]
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.cursor().executemany(INSERT, rows)
    return [row[0] for row in rows]


def stored_ids(engine: Engine) -> list[str]:
    """The event ids of every event in the store, any tenant's."""
    with owner_connection(engine) as conn:
        return [row[0] for row in conn.execute(text("SELECT event_id FROM audit_events"))]


class Tailing:
    """A `SourceTailer` running on an event loop of its own thread, for one test."""

    def __init__(self, engine: Engine, keyring: KeyRing, egress: EgressGuard) -> None:
        settings = TailSettings(
            poll_interval_s=0.05, rescan_interval_s=0.2, backoff_initial_s=0.1, backoff_max_s=0.5
        )
        self.tailer = SourceTailer(engine, keyring=keyring, egress=egress, settings=settings)
        self._thread = threading.Thread(target=lambda: asyncio.run(self.tailer.run()))

    def __enter__(self) -> Tailing:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tailer.stop()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()


def wait_for(check: Callable[[], bool], what: str, *, deadline_s: float = 120.0) -> None:
    """Return once `check()` holds; fail naming `what` after `deadline_s` (generous: the
    machine is shared). A wait, not a speed check."""
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:  # a bound on the wait, not a speed check
            raise AssertionError(f"still waiting for {what} after {deadline_s} s")
        time.sleep(0.05)
