"""The API as an operator runs it: tokens from the CLI, `serve`, and `run --api` beside the
worker, each a real process on a free port, stopped by its PID."""

from __future__ import annotations

import time
from pathlib import Path
from uuid import uuid4

import orjson

from served import cli, free_port, process
from xavyo_siem.crypto import new_key_text
from xavyo_siem.sample import generate_events


def test_tokens_are_made_listed_and_revoked_and_serve_honours_them(tmp_path: Path) -> None:
    """`tokens create` prints a token once; `serve` accepts it for its tenant only; after
    `tokens revoke` the same token gets 401."""
    env = {
        "XAVYO_SIEM_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
        "XAVYO_SIEM_SECRET_KEY": new_key_text(),
    }
    tenant = uuid4()
    made = cli(
        "tokens", "create", "--tenant", str(tenant), "--role", "viewer", "--name", "soc", env=env
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("xsk_")
    assert "shown once" in made.stderr
    platform = cli("tokens", "create", "--platform", "--role", "admin", "--json", env=env)
    platform_record = orjson.loads(platform.stdout)
    assert platform_record["tenant_id"] is None
    assert platform_record["token"].startswith("xsk_")
    neither = cli("tokens", "create", "--role", "admin", env=env)
    assert neither.exit_code == 2
    listed = [
        orjson.loads(line) for line in cli("tokens", "list", "--json", env=env).stdout.splitlines()
    ]
    assert [(t["name"], t["role"]) for t in listed] == [("soc", "viewer"), (None, "admin")]
    assert token not in cli("tokens", "list", "--json", env=env).stdout
    port = free_port()
    with process(
        "serve", "--port", str(port), env=env, port=port, log=tmp_path / "serve.log"
    ) as http:
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get(f"/v1/tenants/{tenant}/destinations", headers=auth).json() == []
        assert http.get(f"/v1/tenants/{uuid4()}/destinations", headers=auth).status_code == 404
        assert http.get("/openapi.json").json()["info"]["title"] == "xavyo-siem"
        revoked = cli("tokens", "revoke", listed[0]["id"], env=env)
        assert revoked.exit_code == 0
        assert http.get(f"/v1/tenants/{tenant}/destinations", headers=auth).status_code == 401
    assert token not in (tmp_path / "serve.log").read_text()


def test_run_with_api_ingests_over_http_and_delivers_in_the_same_process(tmp_path: Path) -> None:
    """`run --api`: events posted to the API are delivered by the worker of the same process,
    after the audit events of the destination's and the token's creation."""
    env = {
        "XAVYO_SIEM_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
        "XAVYO_SIEM_SECRET_KEY": new_key_text(),
    }
    tenant = uuid4()
    out = tmp_path / "delivered.jsonl"
    added = cli(
        "destination", "add", "--tenant", str(tenant), "--name", "file", "--type", "file",
        "--format", "json", "--endpoint", f"file://{out}", "--option", "start=beginning", env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    token = cli("tokens", "create", "--tenant", str(tenant), "--role", "admin", env=env)
    auth = {"Authorization": f"Bearer {token.stdout.strip()}"}
    port = free_port()
    events = [e.to_dict() for e in generate_events(500, 1, seed=3)]
    for event in events:
        event["tenant_id"] = str(tenant)
    args = ("run", "--api", "--api-port", str(port), "--poll-interval", "0.05")
    with process(*args, env=env, port=port, log=tmp_path / "run.log") as http:
        stored = http.post(f"/v1/tenants/{tenant}/events", headers=auth, json={"events": events})
        assert (stored.json()["stored"], stored.json()["quarantined"]) == (500, 0)
        deadline = time.monotonic() + 30
        while (not out.exists() or len(out.read_bytes().splitlines()) < 502) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        health = http.get(f"/v1/tenants/{tenant}/health", headers=auth).json()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["event_type"] for line in lines[:2]] == [
        "SIEM_DESTINATION_CREATED",
        "SIEM_API_TOKEN_CREATED",
    ]
    assert sorted(line["event_id"] for line in lines[2:]) == sorted(e["event_id"] for e in events)
    assert health["status"] == "ok"
