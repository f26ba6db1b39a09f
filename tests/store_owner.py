"""The store as its owner sees it, for tests that look at every tenant's rows.

On PostgreSQL the tests' `engine` connects as the service's login role, which row-level
security confines to the scope a store function sets. A test that checks what was stored
(every tenant's events, a sealed secret) looks through the owner's connection instead: a
superuser here, which the policies do not restrict. On SQLite it is the same engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from xavyo_siem.store import make_engine

__all__ = ["owner_connection"]

_ADMIN_USER = make_url(
    os.environ.get(
        "XAVYO_SIEM_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
).username


@contextmanager
def owner_connection(engine: Engine) -> Iterator[Connection]:
    """A connection to `engine`'s store that sees every row (committed when it ends)."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            yield conn
        return
    owner = make_engine(engine.url.set(username=_ADMIN_USER).render_as_string(False))
    try:
        with owner.begin() as conn:
            yield conn
    finally:
        owner.dispose()
