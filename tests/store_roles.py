"""Who the tests connect to the PostgreSQL store as.

The tests' `engine` connects as the service's login role (`APP_ROLE`, a member of both
group roles, neither owner nor superuser), so that row-level security applies to everything
the tests run. A test that checks what was stored (every tenant's events, a sealed secret)
looks through the owner's connection (`owner_connection`) instead: a superuser here, which
the policies do not restrict. On SQLite both are the same engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from xavyo_siem.store import make_engine

__all__ = [
    "APP_ROLE",
    "OWNER_ROLE",
    "PG_ADMIN_URL",
    "as_role",
    "make_login_role",
    "make_owner_role",
    "owner_connection",
]

PG_ADMIN_URL: Final = os.environ.get(
    "XAVYO_SIEM_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
APP_ROLE: Final = "xavyo_siem_test_app"
OWNER_ROLE: Final = "xavyo_siem_test_owner"  # owns a store, and is no superuser


def _make_role(conn: Connection, name: str, attributes: str) -> None:
    """Make the role `name` with `attributes` unless it exists (or another test makes it
    at the same moment)."""
    conn.execute(
        text(
            "DO $$ BEGIN"
            f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN"
            f" CREATE ROLE {name} {attributes}; END IF;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    )


def make_login_role(role: str, groups: tuple[str, ...]) -> str:
    """Make the login role `role` (and its group roles) unless they exist, in `groups`."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name, login in (*((group, "NOLOGIN") for group in groups), (role, "LOGIN")):
            _make_role(conn, name, login)
        conn.execute(text(f"GRANT {', '.join(groups)} TO {role}"))
    admin.dispose()
    return role


def make_owner_role(database: str) -> str:
    """`OWNER_ROLE`, a login role that is no superuser and does not bypass row-level
    security (as a managed PostgreSQL service has it), allowed to make schemas in
    `database` and to fix the custom settings the store's definer functions set."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        _make_role(conn, OWNER_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS")
        conn.execute(text(f'GRANT CREATE, CONNECT ON DATABASE "{database}" TO {OWNER_ROLE}'))
        # PostgreSQL 15 lets only a superuser, or a role granted it, fix a custom setting in
        # a function's definition (the definer functions set theirs).
        conn.execute(
            text(
                "GRANT SET ON PARAMETER xavyo_siem.feed_marks, xavyo_siem.fleet_health"
                f" TO {OWNER_ROLE}"
            )
        )
    admin.dispose()
    return OWNER_ROLE


def as_role(url: str, role: str) -> str:
    """`url` (the owner's) with the login role `role` instead."""
    return make_url(url).set(username=role).render_as_string(hide_password=False)


@contextmanager
def owner_connection(engine: Engine) -> Iterator[Connection]:
    """A connection to `engine`'s store that sees every row (committed when it ends)."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            yield conn
        return
    owner = make_engine(
        as_role(engine.url.render_as_string(False), make_url(PG_ADMIN_URL).username or "")
    )
    try:
        with owner.begin() as conn:
            yield conn
    finally:
        owner.dispose()
