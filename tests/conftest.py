"""Shared fixtures: a store on each backend (SQLite file, PostgreSQL schema), sample events."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE

PG_ADMIN_URL = os.environ.get(
    "XAVYO_SIEM_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test run, dropped at the end."""
    name = f"xavyo_siem_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _pg_schema_url(database_url: str) -> str:
    schema = f"s_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """An empty PostgreSQL store URL (a new schema), for tests that are PostgreSQL-only."""
    return _pg_schema_url(pg_database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty store URL: a new SQLite file, or a new schema in the run's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store')}/store.db"
    return _pg_schema_url(request.getfixturevalue("pg_database_url"))


# The login role the service connects as in tests: a member of both group roles, neither
# owner nor superuser, so that row-level security applies to everything the tests run.
APP_ROLE = "xavyo_siem_test_app"


@pytest.fixture(scope="session")
def pg_app_role() -> str:
    """A login role in `xavyo_siem_service` and `xavyo_siem_worker` (made once per cluster)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for role, login in (
            (SERVICE_ROLE, "NOLOGIN"),
            (WORKER_ROLE, "NOLOGIN"),
            (APP_ROLE, "LOGIN"),
        ):
            conn.execute(
                text(
                    "DO $$ BEGIN"
                    f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN"
                    f" CREATE ROLE {role} {login}; END IF;"
                    " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                )
            )
        conn.execute(text(f"GRANT {SERVICE_ROLE}, {WORKER_ROLE} TO {APP_ROLE}"))
    admin.dispose()
    return APP_ROLE


def as_app_role(url: str, role: str) -> str:
    """`url` (the owner's) with the service's login role instead."""
    return make_url(url).set(username=role).render_as_string(hide_password=False)


@pytest.fixture
def engine(store_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated store on each backend; on PostgreSQL, migrated by the owner and used
    through the service's login role, so row-level security is in force."""
    owner = make_engine(store_url)
    upgrade(owner)
    if owner.dialect.name != "postgresql":
        yield owner
        owner.dispose()
        return
    owner.dispose()
    engine = make_engine(as_app_role(store_url, request.getfixturevalue("pg_app_role")))
    yield engine
    engine.dispose()
