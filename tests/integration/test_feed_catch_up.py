"""The change feed's walk over a backlog: tenant by tenant, each event of the range once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Connection, Engine

import xavyo_siem.store.feed as feed_module
from file_output import add_file_destination
from store_final import wait_until_final
from xavyo_siem.ingest import store_events
from xavyo_siem.model import AuditEvent
from xavyo_siem.sample import generate_events
from xavyo_siem.store import writing
from xavyo_siem.store.events import START, EventCursor, read_events_after
from xavyo_siem.store.feed import CatchUp, catch_up, feed_start, read_catch_up, read_feed
from xavyo_siem.store.leases import acquire_leases, heartbeat

TTL = timedelta(seconds=30)


def events_over(tenants: list[UUID], count: int, seed: int) -> list[AuditEvent]:
    """`count` events of `tenants`, interleaved unevenly (the first ones get the most)."""
    events = list(generate_events(count, 1, seed=seed))
    return [
        event.__class__.from_dict(
            {**event.to_dict(), "tenant_id": str(tenants[(i * i) % len(tenants)])}
        )
        for i, event in enumerate(events)
    ]


def serve(engine: Engine, tenants: list[UUID], tmp_path: Path) -> None:
    """Worker w1 leases one file destination of each of `tenants`."""
    for tenant in tenants:
        add_file_destination(engine, tenant, tmp_path / f"{tenant.int}.jsonl")
    with writing(engine) as conn:
        now = datetime.now(UTC)
        heartbeat(conn, owner="w1", ttl=TTL, now=now)
        acquire_leases(conn, owner="w1", limit=len(tenants), ttl=TTL, now=now)


def serve_with_events(engine: Engine, tenant: UUID, count: int, tmp_path: Path) -> None:
    """Worker w1 leases a file destination of `tenant`, which has `count` final events."""
    serve(engine, [tenant], tmp_path)
    store_events(engine, events_over([tenant], count, seed=count))
    wait_until_final(engine)


def test_the_walk_brings_each_served_tenants_range_once_tenant_by_tenant(
    engine: Engine, tmp_path: Path
) -> None:
    """Walked in pages of 7, the backlog after a start position comes tenant by tenant (in
    the text order of their ids), each tenant's events in store order and each once: all
    the served tenants' events after the start and up to the store's last final event when
    the walk began, none of a tenant not served, none before the start or stored later."""
    served = [UUID(int=30 + n) for n in range(4)]
    other = UUID(int=99)
    serve(engine, served, tmp_path)
    before = events_over([*served, other], 40, seed=1)
    store_events(engine, before)
    wait_until_final(engine)
    with engine.connect() as conn:
        start = read_feed(conn, owner="w1", after=START, limit=1000).position
    backlog = events_over([*served, other], 200, seed=2)
    store_events(engine, backlog)
    wait_until_final(engine)
    with engine.connect() as conn:
        walk = catch_up(conn, owner="w1", start=start)
    assert walk is not None
    store_events(engine, events_over(served, 30, seed=3))  # after the walk began
    pages = []
    walking: CatchUp | None = walk
    with engine.connect() as conn:
        while walking is not None:
            page, walking = read_catch_up(conn, owner="w1", walk=walking, limit=7)
            pages.append(page)
    assert all(page.count == 7 for page in pages[:-1])
    assert pages[-1].count < 7
    assert [page.position for page in pages] == [start] * (len(pages) - 1) + [walk.through]
    walked = [
        (tenant, position, event)
        for page in pages
        for tenant, events in page.by_tenant.items()
        for position, event in events
    ]
    assert [str(t) for t, _, _ in walked] == sorted(str(t) for t, _, _ in walked)
    assert all(start < position <= walk.through for _, position, _ in walked)
    for tenant in served:
        mine = [(position, event) for t, position, event in walked if t == tenant]
        assert [position for position, _ in mine] == sorted(position for position, _ in mine)
        expected = [event.event_id for event in backlog if event.tenant_id == tenant]
        assert [event.event_id for _, event in mine] == expected
    assert other not in {tenant for tenant, _, _ in walked}


def test_there_is_no_walk_when_nothing_follows_the_start(engine: Engine, tmp_path: Path) -> None:
    """A feed that starts at the store's last final event has no backlog to walk."""
    tenant = UUID(int=40)
    serve_with_events(engine, tenant, 5, tmp_path)
    with engine.connect() as conn:
        head = read_feed(conn, owner="w1", after=START, limit=1000).position
        assert head != START
        assert catch_up(conn, owner="w1", start=head) is None
        assert catch_up(conn, owner="w1", start=EventCursor(0, 0)) is not None


def test_every_read_of_the_walk_follows_an_index_without_sorting_the_range(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk reads each tenant's rows through the `(tenant_id, txid, seq)` index, never
    the whole range (PostgreSQL: laterally, each tenant's read capped at the page; SQLite: a
    read per tenant, sorting nothing), so a page costs neither memory nor time that grows
    with the backlog."""
    served = [UUID(int=50 + n) for n in range(3)]
    serve(engine, served, tmp_path)
    store_events(engine, events_over(served, 300, seed=5))
    wait_until_final(engine)
    reads: list[Any] = []
    fetch = feed_module.fetch_rows

    def noted(conn: Connection, statement: Any) -> list[tuple[Any, ...]]:
        reads.append(statement)
        return fetch(conn, statement)

    monkeypatch.setattr(feed_module, "fetch_rows", noted)
    with engine.connect() as conn:
        walk = catch_up(conn, owner="w1", start=START)
        assert walk is not None
        page, _ = read_catch_up(conn, owner="w1", walk=walk, limit=50)
        assert page.count == 50
        assert reads
        explain = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN"
        for statement in reads:
            sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(row) for row in conn.exec_driver_sql(f"{explain} {sql}"))
            if engine.dialect.name == "sqlite":
                assert "ix_audit_events_tenant_order" in plan, plan
                assert "TEMP B-TREE" not in plan, plan
            else:  # each tenant's rows through its index, capped at the page
                assert "Seq Scan on audit_events" not in plan, plan
                assert "(tenant_id)::text = (leases.tenant_id)::text" in plan, plan


def test_a_feed_starts_at_the_oldest_cursor_within_the_window_or_else_at_the_end(
    engine: Engine, tmp_path: Path
) -> None:
    """A new feed starts at the oldest destination cursor among the last `window` final
    events; with every cursor further behind (or none), after the last final event, so its
    walk reads nothing for destinations that catch up alone; with fewer events than the
    window, at the oldest cursor; never after the last final event."""
    tenant = UUID(int=41)
    serve_with_events(engine, tenant, 30, tmp_path)
    with engine.connect() as conn:
        head = read_feed(conn, owner="w1", after=START, limit=1000).position
        behind = read_events_after(conn, tenant_id=tenant, after=START, limit=5).cursor
        within = read_events_after(conn, tenant_id=tenant, after=START, limit=25).cursor
        later = read_events_after(conn, tenant_id=tenant, after=START, limit=28).cursor

        def start(*cursors: EventCursor, window: int) -> EventCursor:
            mine = [(tenant, cursor) for cursor in cursors]
            return feed_start(conn, owner="w1", cursors=mine, window=window).position

        assert start(START, behind, window=10) == head
        assert start(window=10) == head
        assert start(later, START, within, window=10) == within
        assert start(behind, START, window=100) == START
        beyond = EventCursor(head.txid, head.seq + 100)  # e.g. a start time's position
        assert start(beyond, window=10) == head
        assert start(beyond, START, window=100) == START


def test_a_destination_with_nothing_before_the_window_starts_the_feed_at_its_edge(
    engine: Engine, tmp_path: Path
) -> None:
    """A destination far behind whose tenant has events in the window and none before it
    (just added with `start=beginning`, its tenant's events all recent, many other events
    stored before) starts the feed at the window's edge, so the walk serves it with the
    others; one whose tenant has events before the edge still catches up alone, and one of
    a quiet tenant (caught up, or without events) does not move the start."""
    old, recent, quiet, empty = (UUID(int=n) for n in (42, 43, 44, 45))
    serve(engine, [old, recent, quiet, empty], tmp_path)
    store_events(engine, events_over([quiet], 5, seed=6))
    store_events(engine, events_over([old], 40, seed=7))
    store_events(engine, events_over([recent], 10, seed=8))
    wait_until_final(engine)
    with engine.connect() as conn:
        head = read_feed(conn, owner="w1", after=START, limit=1000).position
        edge = read_feed(conn, owner="w1", after=START, limit=35).position  # 20 from the end
        caught_up = read_events_after(conn, tenant_id=quiet, after=START, limit=10).cursor

        def start(*cursors: tuple[UUID, EventCursor]) -> EventCursor:
            return feed_start(conn, owner="w1", cursors=list(cursors), window=20).position

        assert start((old, START)) == head  # it catches up alone
        assert start((quiet, caught_up)) == head
        assert start((empty, START)) == head
        assert start((quiet, caught_up), (empty, START), (recent, START)) == edge
        assert start((old, START), (recent, START)) == edge
        walk = catch_up(conn, owner="w1", start=edge)
        assert walk is not None
        page, _ = read_catch_up(conn, owner="w1", walk=walk, limit=1000)
        assert sum(len(events) for events in page.by_tenant.values()) == 20
        assert len(page.by_tenant[recent]) == 10  # all of the recent tenant's events
