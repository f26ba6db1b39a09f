"""The API against its own OpenAPI document (schemathesis): no 5xx, every answer documented.

Every operation gets generated requests, valid and invalid, with an admin token of a real
tenant (and real destination ids half of the time, so the routes get past their 404s).
Each answer must not be a server error, must have a documented status code and content
type, and must match the documented schema. Names are resolved numerically only, so a
generated host name never waits on DNS.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine
from test_auth import add_udp

from xavyo_siem.api import ApiLimits, create_app
from xavyo_siem.egress import EgressGuard
from xavyo_siem.settings import Settings
from xavyo_siem.store.jobs import list_jobs
from xavyo_siem.store.tokens import Role, issue_token

from conftest import KEYS, LOOPBACK

EXAMPLES_PER_OPERATION = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def numeric_only(host: str, port: Any, family: int = 0, type: int = 0, **_: Any) -> Any:
    """getaddrinfo for IP literals only: generated names fail at once, without DNS."""
    return socket.getaddrinfo(host, port, family, type, flags=socket.AI_NUMERICHOST)


def test_every_operation_keeps_to_its_openapi_document(engine: Engine, tmp_path: Path) -> None:
    """Generated valid and invalid requests to every operation never get a 5xx, every
    answer's status, content type and body are the documented ones, and the export
    directory holds a folder only for a tenant with an export job."""
    tenant = uuid4()
    with engine.begin() as conn:
        _, token = issue_token(
            conn, tenant_id=tenant, role=Role.ADMIN, name="fuzz", now=datetime.now(UTC)
        )
    destination = add_udp(engine, tenant)
    app = create_app(
        Settings(egress_allow=LOOPBACK, api_rate_limit=(1e6, 1_000_000)),  # fuzz, not 429s
        engine,
        keyring=KEYS,
        egress=EgressGuard(allow=LOOPBACK, getaddrinfo=numeric_only),
        limits=ApiLimits(max_body_bytes=256 * 1024, max_batch_events=50),
        export_dir=tmp_path,
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {token}"}
    real = {"tenant_id": str(tenant), "destination_id": str(destination.id)}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 23
    for operation in operations:
        known = {k: v for k, v in real.items() if f"{{{k}}}" in operation.path}
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known, headers=auth),
            operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=known, headers=auth),
            operation.as_strategy(GenerationMode.POSITIVE, headers=auth),
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        run()
    with engine.connect() as conn:  # refused export requests left no folder behind
        exporting = {
            str(job.tenant_id)
            for folder in tmp_path.iterdir()
            for job in list_jobs(conn, tenant_id=UUID(folder.name))
        }
    assert {folder.name for folder in tmp_path.iterdir()} == exporting
