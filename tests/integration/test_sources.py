"""Sources against a real peer table: the identity provider's audit table in a throw-away
database of a PostgreSQL cluster of the module's own, written by concurrent transactions,
tailed into a store of each backend (on the shared PostgreSQL, or SQLite).

The peer table is the one docs/sources.md shows: each row carries its writing transaction's
id (`xact_id xid8 DEFAULT pg_current_xact_id()`) and a sequence number (`seq`).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, text

from idp_table import (
    ALLOW_LOOPBACK,
    IDP_TABLE,
    INSERT,
    MAPPING,
    PASSWORD,
    TENANT,
    Tailing,
    idp_row,
    stored_ids,
    wait_for,
    write_rows,
)
from store_roles import owner_connection
from xavyo_siem.crypto import CryptoError, KeyRing, new_key_text
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidSource
from xavyo_siem.sources.manage import (
    SOURCE_TENANT,
    SourceSpec,
    add_source,
    dsn_binding,
    find_source,
    list_sources,
    remove_source,
)
from xavyo_siem.sources.peer import PeerTable
from xavyo_siem.store.quarantine import list_quarantined

from peers.postgres_cluster import PostgresCluster


@pytest.fixture(scope="module")
def idp_server() -> Iterator[PostgresCluster]:
    """The identity provider's PostgreSQL: a cluster of this module's own. On the shared
    cluster any other test's open transaction (in any database) holds the peer's horizon
    back, and with it what a source may read, for as long as it stays open."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def idp(idp_server: PostgresCluster) -> Iterator[str]:
    """The connection string (with a password, which trust authentication ignores) of a
    throw-away database holding the identity provider's audit table; dropped afterwards."""
    name = f"idp_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@127.0.0.1:{idp_server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{idp_server.port}/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(IDP_TABLE)
    try:
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.parse(new_key_text())


def _add(engine: Engine, dsn: str, keyring: KeyRing, **options: str) -> None:
    spec = SourceSpec(
        name="idp", source_type="postgres_table", table="audit.events",
        mapping=MAPPING, options={"batch_rows": "50", **options},
    )  # fmt: skip
    add_source(engine, spec=spec, dsn=dsn, keyring=keyring, egress=ALLOW_LOOPBACK)


def test_rows_of_transactions_that_commit_out_of_order_are_read_once_each(
    engine: Engine, idp: str, keyring: KeyRing
) -> None:
    """Rows written by concurrent transactions that commit out of order (one held open
    while later ones commit) all reach the store, each row read exactly once."""
    _add(engine, idp, keyring)
    written: list[uuid.UUID] = []
    lock = threading.Lock()
    held = psycopg.connect(idp)
    early = [idp_row() for _ in range(7)]
    held.cursor().executemany(INSERT, early)  # takes the lowest seq and xid; commits last

    def writer(seed: int) -> None:
        chance = random.Random(seed)
        for _ in range(15):
            ids = write_rows(idp, chance.randint(1, 40))
            with lock:
                written.extend(ids)
            time.sleep(chance.random() * 0.02)

    with Tailing(engine, keyring, ALLOW_LOOPBACK):
        writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        time.sleep(0.3)  # the tailer polls meanwhile: nothing after the open one is final
        assert stored_ids(engine) == []
        held.commit()
        held.close()
        total = len(written) + len(early)
        wait_for(lambda: len(stored_ids(engine)) == total, f"{total} events stored")
        wait_for(
            lambda: find_source(engine, name_or_id="idp").state.events_read == total,
            "the source to count every row",
        )
    stored = stored_ids(engine)
    assert sorted(stored) == sorted(str(i) for i in [*written, *(row[0] for row in early)])
    source = find_source(engine, name_or_id="idp")
    assert source.state.events_read == total  # no page was read (and counted) twice
    assert source.state.quarantined == 0


def test_a_mapped_row_becomes_the_event_it_describes(
    engine: Engine, idp: str, keyring: KeyRing
) -> None:
    """Each mapped column lands in its field; the JSON column and the metadata.KEY column
    make the metadata; an inet becomes the source address text."""
    _add(engine, idp, keyring)
    (event_id,) = write_rows(idp, 1)
    with Tailing(engine, keyring, ALLOW_LOOPBACK):
        wait_for(lambda: len(stored_ids(engine)) == 1, "the event")
    with owner_connection(engine) as conn:
        row = conn.execute(
            text("SELECT tenant_id, event_type, actor_email, source_ip, metadata, category"
                 " FROM audit_events WHERE event_id = :id"), {"id": str(event_id)},
        ).one()  # fmt: skip
    assert row[:4] == (str(TENANT), "USER_LOGIN", "ada@example.com", "192.0.2.7")
    assert orjson.loads(row[4]) == {"app": "console", "region": "eu"}
    assert row[5] == "security"  # no category mapped: normalised, as ingest does


def test_a_row_without_tenant_is_quarantined_naming_the_source(
    engine: Engine, idp: str, keyring: KeyRing
) -> None:
    """A row whose tenant is NULL cannot be an event: it goes to the quarantine with the
    source and its position named, and the rows around it are stored."""
    _add(engine, idp, keyring)
    good = write_rows(idp, 2)
    (orphan,) = write_rows(idp, 1, tenant=None)
    good += write_rows(idp, 2)
    with Tailing(engine, keyring, ALLOW_LOOPBACK):
        wait_for(lambda: find_source(engine, name_or_id="idp").state.events_read == 5, "rows")
    assert sorted(stored_ids(engine)) == sorted(str(i) for i in good)
    with engine.connect() as conn:
        (entry,) = list_quarantined(conn, tenant_id=None)
    assert entry.tenant_id is None
    assert entry.source.startswith("source:idp:")
    assert "tenant_id" in entry.reason
    assert str(orphan) in entry.raw
    assert find_source(engine, name_or_id="idp").state.quarantined == 1


def test_a_table_without_order_columns_is_refused_with_what_to_add(
    engine: Engine, idp: str, keyring: KeyRing
) -> None:
    """A table without the transaction id and sequence columns is refused at `source add`,
    and the message gives the ALTER TABLE statements that add them."""
    with psycopg.connect(idp, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE audit.plain (id uuid, tenant uuid, created_at timestamptz, kind text)"
        )
    spec = SourceSpec(
        name="plain", source_type="postgres_table", table="audit.plain",
        mapping=["event_id=id", "tenant_id=tenant", "timestamp=created_at"],
    )  # fmt: skip
    with pytest.raises(InvalidSource) as refused:
        add_source(engine, spec=spec, dsn=idp, keyring=keyring, egress=ALLOW_LOOPBACK)
    message = str(refused.value)
    assert refused.value.field == "table"
    assert (
        "ALTER TABLE audit.plain ADD COLUMN xact_id xid8 NOT NULL DEFAULT pg_current_xact_id();"
        in message
    )
    assert "ALTER TABLE audit.plain ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;" in message
    assert "CREATE INDEX ON audit.plain (xact_id, seq);" in message
    assert list_sources(engine) == []
    with psycopg.connect(idp, autocommit=True) as conn:  # a seq filled by hand is not enough
        conn.execute("ALTER TABLE audit.plain ADD COLUMN xact_id xid8, ADD COLUMN seq bigint")
    with pytest.raises(InvalidSource) as refused:
        add_source(engine, spec=spec, dsn=idp, keyring=keyring, egress=ALLOW_LOOPBACK)
    assert "SET DEFAULT pg_current_xact_id();" in str(refused.value)
    assert "ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY;" in str(refused.value)


def test_an_internal_peer_is_refused_unless_the_operator_allows_it(
    engine: Engine, idp: str, keyring: KeyRing
) -> None:
    """The SSRF guard refuses a peer on loopback without XAVYO_SIEM_EGRESS_ALLOW, naming
    the rule and never the connection string; nothing is stored."""
    spec = SourceSpec(name="idp", source_type="postgres_table", table="audit.events",
                      mapping=MAPPING)  # fmt: skip
    with pytest.raises(InvalidSource) as refused:
        add_source(engine, spec=spec, dsn=idp, keyring=keyring, egress=EgressGuard())
    assert refused.value.field == "dsn"
    assert "XAVYO_SIEM_EGRESS_ALLOW" in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert list_sources(engine) == []


def test_the_connection_string_is_stored_sealed_and_never_shown(
    engine: Engine, idp: str, idp_server: PostgresCluster, keyring: KeyRing
) -> None:
    """The stored connection string is a sealed `v2` text bound to the source and its
    peer; the listing shows the peer's origin only, and it opens for no other source."""
    _add(engine, idp, keyring)
    (source,) = list_sources(engine)
    shown = orjson.dumps(source.to_dict(now=datetime.now(UTC))).decode()
    assert PASSWORD not in shown
    assert idp.rpartition("/")[2] not in shown
    assert source.peer == f"postgresql://127.0.0.1:{idp_server.port}"
    with owner_connection(engine) as conn:
        sealed = conn.execute(text("SELECT sealed_dsn FROM sources")).scalar_one()
    assert sealed.startswith("v2.")
    assert PASSWORD not in sealed
    assert idp.rpartition("/")[2] not in sealed

    assert keyring.open(sealed, tenant_id=SOURCE_TENANT, destination_id=source.id,
                        binding=dsn_binding(source)) == idp  # fmt: skip
    with pytest.raises(CryptoError):
        keyring.open(sealed, tenant_id=SOURCE_TENANT, destination_id=uuid.uuid4(),
                     binding=dsn_binding(source))  # fmt: skip


def test_a_removed_source_is_no_longer_listed_and_its_events_stay(
    engine: Engine, idp: str, keyring: KeyRing
) -> None:
    """`remove_source` deletes the source (by name or id); the events it stored stay."""
    _add(engine, idp, keyring)
    write_rows(idp, 3)
    with Tailing(engine, keyring, ALLOW_LOOPBACK):
        wait_for(lambda: len(stored_ids(engine)) == 3, "the events")
    source = find_source(engine, name_or_id="idp")
    assert find_source(engine, name_or_id=str(source.id)) == source
    remove_source(engine, name_or_id=str(source.id))
    assert list_sources(engine) == []
    assert len(stored_ids(engine)) == 3
    with pytest.raises(InvalidSource):
        remove_source(engine, name_or_id="idp")


def test_a_source_that_starts_now_skips_the_rows_already_there(
    engine: Engine, idp: str, keyring: KeyRing
) -> None:
    """With `start=now` the rows already in the table are not read; later ones are."""
    write_rows(idp, 4)
    _add(engine, idp, keyring, start="now")
    later = write_rows(idp, 2)
    with Tailing(engine, keyring, ALLOW_LOOPBACK):
        wait_for(lambda: len(stored_ids(engine)) == 2, "the later events")
    assert sorted(stored_ids(engine)) == sorted(str(i) for i in later)


def test_a_page_is_read_along_the_order_index_without_sorting(idp: str) -> None:
    """The statement that reads a page walks the table's `(xact_id, seq)` index: no sort of
    the whole table per page (which `ORDER BY` on a selected expression of the same name
    would ask for)."""
    table = PeerTable("audit.events", xid_column="xact_id", seq_column="seq",
                      columns=("id", "tenant", "created_at", "ip", "details"))  # fmt: skip
    with psycopg.connect(idp, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")  # a small table: make the index the choice
        conn.execute("SET enable_bitmapscan = off")
        plan = "\n".join(
            row[0] for row in conn.execute(sql.SQL("EXPLAIN ") + table.prepare(conn), ("0", 0, 50))
        )
    assert "Index Scan using events_xact_id_seq_idx" in plan, plan
    assert "Sort" not in plan, plan
