"""Shared fixtures: a store on each backend (SQLite file, PostgreSQL schema), sample events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from store_roles import APP_ROLE, PG_ADMIN_URL, as_role, make_login_role
from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE


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


@pytest.fixture(scope="session")
def pg_app_role() -> str:
    """A login role in `xavyo_siem_service` and `xavyo_siem_worker` (made once per cluster):
    the tests' engine connects as it (see store_roles.py)."""
    return make_login_role(APP_ROLE, (SERVICE_ROLE, WORKER_ROLE))


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
    engine = make_engine(as_role(store_url, request.getfixturevalue("pg_app_role")))
    yield engine
    engine.dispose()
