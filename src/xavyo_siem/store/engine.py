"""Opening the store: one URL picks SQLite or PostgreSQL; migrations bring it up to date."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar
from uuid import UUID

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from xavyo_siem.errors import StoreError

__all__ = [
    "BindCredential",
    "current_revision",
    "head_revision",
    "in_snapshot",
    "in_snapshot_async",
    "in_transaction",
    "in_transaction_async",
    "make_engine",
    "open_store",
    "upgrade",
    "writing",
]

_R = TypeVar("_R")

BindCredential: TypeAlias = Callable[[UUID, UUID, str, str, Mapping[str, Any], str], "str | None"]
"""(tenant id, destination id, delivery type, endpoint, options, sealed `v1` credential) ->
the credential re-sealed under the destination's binding, or None to leave it: what
migration 0006 calls for each credential sealed before bindings (`credentials.CredentialBinder`)."""

_MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    """An engine for `url`: `sqlite:///file.db` or `postgresql://user@host/db` (psycopg 3)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"database URL: cannot parse {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    if backend == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    raise StoreError(f"database URL: use sqlite:/// or postgresql://, not {backend}://")


# SQLite's page cache, per connection, in KiB (negative: SQLite's unit for a size, not
# pages). Reads take each page of a scan once and progress writes touch few pages, so a
# pooled connection keeps a small cache; ingest and retention, whose inserts and deletes
# of random event ids land anywhere in the index, take a large one while they write
# (`large_page_cache`). With 64 MiB on every connection, a worker draining 200,000 events
# kept about 40 MB more resident: what its readers had read, once per pooled connection.
SMALL_PAGE_CACHE: Final = -8192
LARGE_PAGE_CACHE: Final = -65536


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's explicit BEGIN decide transactions; wait for a writer, not fail.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA cache_size={SMALL_PAGE_CACHE}")  # ingest enlarges it (store/append.py)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextlib.contextmanager
def large_page_cache(conn: Connection) -> Iterator[None]:
    """SQLite: the large page cache on `conn` for the block, then the small one again, which
    frees the pages above it (a no-op elsewhere)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    conn.exec_driver_sql(f"PRAGMA cache_size = {LARGE_PAGE_CACHE}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {SMALL_PAGE_CACHE}")


_WRITES: Final = "xavyo_siem_writes"  # the execution option `writing` sets


def _sqlite_begin(conn: Connection) -> None:
    # pysqlite's own transaction handling is off (see _sqlite_pragmas); begin explicitly.
    # A transaction that will write begins IMMEDIATE: it takes the write lock at BEGIN,
    # waiting (busy_timeout) for another writer. A deferred one that reads, then writes
    # after another connection committed, fails at once with "database is locked" (WAL
    # cannot upgrade a stale snapshot, and the busy timeout does not apply). Reads stay
    # deferred, so in WAL mode they never wait.
    immediate = conn.get_execution_options().get(_WRITES, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: committed when the block ends, rolled back if it raises.

    Use it, not `engine.begin()`, for every transaction that writes. On SQLite it takes the
    write lock at its start (`BEGIN IMMEDIATE`), so one that reads before it writes never
    fails with "database is locked" when another connection writes in between. Reads use
    `engine.connect()` and never take that lock.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_WRITES: True})
        with conn.begin():
            yield conn


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest migration this version of xavyo-siem knows."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the store is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(
    engine: Engine, *, bind_credential: BindCredential | None = None
) -> tuple[str | None, str | None]:
    """Run every pending migration; returns (revision before, revision after).

    `bind_credential`, given when the key ring is at hand, lets migration 0006 bind the
    credentials sealed before bindings; without it they stay as they are until `keys rotate`.
    """
    try:
        before = current_revision(engine)
    except OperationalError as exc:
        raise StoreError(f"database: cannot connect ({_first_line(exc)})") from None
    config = _alembic_config()
    with writing(engine) as conn:
        config.attributes["connection"] = conn
        config.attributes["bind_credential"] = bind_credential
        command.upgrade(config, "head")
    return before, head_revision()


def open_store(url: str, *, create: bool = True) -> Engine:
    """An engine on an up-to-date store.

    The embedded SQLite default migrates itself on first use; PostgreSQL must be migrated
    by the operator (`xavyo-siem db upgrade`), so a deploy never changes a shared schema
    by surprise. With `create=False` (commands that only read) a SQLite file that does not
    exist yet is an error instead of a new, empty store.
    """
    engine = make_engine(url)
    database = engine.url.database
    is_file = engine.dialect.name == "sqlite" and database and database != ":memory:"
    if not create and is_file and not Path(str(database)).exists():
        engine.dispose()
        raise StoreError(
            f"database: no store at {database} yet (ingest events or add a destination "
            "first, or give --db)"
        )
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        engine.dispose()
        raise StoreError(f"database: cannot connect ({_first_line(exc)})") from None
    if current == head_revision():
        return engine
    if engine.dialect.name == "sqlite":
        upgrade(engine)
        return engine
    engine.dispose()
    shown = engine.url.render_as_string(hide_password=True)
    raise StoreError(
        f"database: schema is at {current or 'nothing'}, this version needs {head_revision()}; "
        f"run `xavyo-siem db upgrade --db {shown}`"
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def in_transaction(engine: Engine, work: Callable[[Connection], _R]) -> _R:
    """Run `work`, which writes, in one transaction (`writing`): committed if it returns,
    rolled back if it raises."""
    with writing(engine) as conn:
        return work(conn)


async def in_transaction_async(engine: Engine, work: Callable[[Connection], _R]) -> _R:
    """`in_transaction` on a worker thread, so an event loop never waits on the database."""
    return await asyncio.to_thread(in_transaction, engine, work)


def in_snapshot(engine: Engine, work: Callable[[Connection], _R]) -> _R:
    """Run `work`, which only reads, in one transaction: one consistent view of the store,
    and (on SQLite) no write lock, so it never waits for a writer nor holds one up."""
    with engine.connect() as conn:
        return work(conn)


async def in_snapshot_async(engine: Engine, work: Callable[[Connection], _R]) -> _R:
    """`in_snapshot` on a worker thread, so an event loop never waits on the database."""
    return await asyncio.to_thread(in_snapshot, engine, work)
