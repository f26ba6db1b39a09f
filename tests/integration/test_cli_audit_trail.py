"""The audit trail of management changes made with the command line, on both store backends.

Each command that changes something records an `administrative` event of the tenant it
changed: the operating-system user and host, the action, the object, the outcome; never a
credential, an API token or a key.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from xavyo_siem.cli import app
from xavyo_siem.crypto import new_key_text
from xavyo_siem.model import EventCategory, EventFilter
from xavyo_siem.store import read_events_in_range
from xavyo_siem.store.tables import audit_events

HOOK_SECRET = "whsec_Y2xpLWtub3duLXNlY3JldC1mb3ItdGhlLXRyYWls"
BEARER = "cli-bearer-known-secret-4Kd8Zq"
OLD_KEY, NEW_KEY = new_key_text(), new_key_text()
ENV = {"XAVYO_SIEM_SECRET_KEY": OLD_KEY, "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.0/8"}


def run(store_url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """`xavyo-siem ARGS --db STORE`, in this process."""
    return CliRunner().invoke(app, [*args, "--db", store_url], env={**ENV, **(env or {})})


def trail(engine: Engine, tenant: UUID) -> list[dict[str, Any]]:
    """The tenant's administrative events, oldest first."""
    with engine.connect() as conn:
        events, _ = read_events_in_range(
            conn,
            tenant_id=tenant,
            limit=1000,
            filter=EventFilter(frozenset({EventCategory.ADMINISTRATIVE})),
        )
    return [event.to_dict() for event in events]


def stored_text(engine: Engine) -> str:
    """Every stored event row of every tenant, as one text."""
    with engine.connect() as conn:
        return "\n".join(repr(tuple(row)) for row in conn.execute(select(audit_events)))


def test_every_cli_change_is_an_event_of_its_tenant_naming_the_user_and_host(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """destination add/update/disable/enable/test/remove, dead-letters replay/purge, export
    --queue, jobs cancel, tokens create/revoke and keys rotate each record one event in the
    tenant's store with the OS user, the host, the action and the outcome; no secret, token
    or key is stored in any event."""
    tenant, other = uuid4(), uuid4()
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(HOOK_SECRET)
    second.write_text(orjson.dumps({"bearer_token": BEARER}).decode())
    t = ("--tenant", str(tenant))
    added = run(
        store_url, "destination", "add", *t, "--name", "hook", "--type", "webhook",
        "--format", "json", "--endpoint", "https://127.0.0.1:9/hook",
        "--secret-file", str(first), "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    destination = orjson.loads(added.stdout.splitlines()[0])["id"]
    steps = [
        ("destination", "update", *t, "hook", "--secret-file", str(second), "-o", "timeout_s=5"),
        ("destination", "disable", *t, "hook"),
        ("destination", "enable", *t, "hook"),
        ("dead-letters", "replay", *t, "hook"),
        ("dead-letters", "purge", *t, "hook"),  # an --id that does not exist is refused
    ]
    for step in steps:
        result = run(store_url, *step)
        assert result.exit_code == 0, (step, result.output)
    tested = run(store_url, "destination", "test", *t, "hook")
    assert tested.exit_code == 1  # nothing listens on port 9
    now = datetime.now(UTC)
    queued = run(
        store_url, "export", *t, "--from", (now - timedelta(hours=1)).isoformat(),
        "--to", (now + timedelta(hours=1)).isoformat(), "-o", str(tmp_path / "x.csv"),
        "--queue", "--json",
    )  # fmt: skip
    assert queued.exit_code == 0, queued.output
    job = orjson.loads(queued.stdout.splitlines()[-1])["id"]
    assert run(store_url, "jobs", "cancel", job).exit_code == 0
    made = run(store_url, "tokens", "create", *t, "--role", "viewer", "--json")
    assert made.exit_code == 0, made.output
    token = orjson.loads(made.stdout.splitlines()[0])
    assert run(store_url, "tokens", "revoke", token["id"]).exit_code == 0
    rotated = run(
        store_url, "keys", "rotate", env={"XAVYO_SIEM_SECRET_KEY": f"{OLD_KEY},{NEW_KEY}"}
    )
    assert rotated.exit_code == 0, rotated.output
    assert run(store_url, "destination", "remove", *t, "hook").exit_code == 0

    events = trail(engine, tenant)
    assert [e["event_type"] for e in events] == [
        "SIEM_DESTINATION_CREATED",
        "SIEM_DESTINATION_UPDATED",
        "SIEM_DESTINATION_DISABLED",
        "SIEM_DESTINATION_ENABLED",
        "SIEM_DEAD_LETTERS_REPLAYED",
        "SIEM_DEAD_LETTERS_PURGED",
        "SIEM_DESTINATION_TESTED",
        "SIEM_EXPORT_CREATED",
        "SIEM_EXPORT_CANCELLED",
        "SIEM_API_TOKEN_CREATED",
        "SIEM_API_TOKEN_REVOKED",
        "SIEM_CREDENTIAL_KEY_ROTATED",
        "SIEM_DESTINATION_DELETED",
    ]
    for event in events:
        assert event["actor_id"] == f"os-user:{getpass.getuser()}"
        assert event["metadata"]["host"] == socket.gethostname()
        assert event["metadata"]["via"] == "cli"
        assert event["metadata"]["actor_role"] == "operator"
        assert "source_ip" not in event
    by_type = {e["event_type"]: e for e in events}
    assert by_type["SIEM_DESTINATION_CREATED"]["target_resource"] == f"destination:{destination}"
    assert by_type["SIEM_DESTINATION_UPDATED"]["metadata"]["fields"] == "options.timeout_s,secret"
    assert by_type["SIEM_DESTINATION_TESTED"]["outcome"] == "failure"
    assert by_type["SIEM_API_TOKEN_REVOKED"]["target_resource"] == f"api_token:{token['id']}"
    assert by_type["SIEM_CREDENTIAL_KEY_ROTATED"]["metadata"]["credentials"] == "1"
    assert by_type["SIEM_EXPORT_CANCELLED"]["target_resource"] == f"export_job:{job}"
    stored = stored_text(engine)
    secrets = (HOOK_SECRET, BEARER, token["token"], OLD_KEY.split(":")[1], NEW_KEY.split(":")[1])
    assert [s for s in secrets if s in stored] == []
    assert trail(engine, other) == []


def test_a_refused_cli_change_is_a_failure_event_and_a_platform_token_only_a_log_line(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """A refused `destination add` records a failure naming the field; a platform token
    belongs to no tenant, so issuing it records no event in any tenant's store."""
    tenant = uuid4()
    secret = tmp_path / "secret"
    secret.write_text(HOOK_SECRET)
    refused = run(
        store_url, "destination", "add", "--tenant", str(tenant), "--name", "hook",
        "--type", "webhook", "--format", "json", "--endpoint", "https://127.0.0.1:9/hook",
        "--secret-file", str(secret), "--option", "batch_max_events=-1",
    )  # fmt: skip
    assert refused.exit_code != 0
    platform = run(store_url, "tokens", "create", "--platform", "--role", "admin")
    assert platform.exit_code == 0, platform.output
    events = trail(engine, tenant)
    assert [(e["event_type"], e["outcome"]) for e in events] == [
        ("SIEM_DESTINATION_CREATED", "failure")
    ]
    assert events[0]["reason"].startswith("options.batch_max_events:")
    stored = stored_text(engine)
    assert HOOK_SECRET not in stored
    assert "SIEM_API_TOKEN_CREATED" not in stored
