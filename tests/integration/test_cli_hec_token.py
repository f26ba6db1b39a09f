"""The command line refuses an HEC token of the wrong shape on `destination add` and
`destination update`, naming `secret` and the rule, never quoting the token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from xavyo_siem.crypto import new_key_text
from xavyo_siem.store import make_engine
from xavyo_siem.store.tables import destinations

TENANT = "7d1c0f2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f"
GOOD = "5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c01"
ENDPOINT = "https://93.184.216.34:8088"  # a public IP literal: the SSRF guard asks no resolver


def cli(db: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "COLUMNS": "200",
        "XAVYO_SIEM_DATABASE_URL": db,
        "XAVYO_SIEM_SECRET_KEY": KEY,
    }
    return subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


KEY = new_key_text()


@pytest.mark.parametrize(
    ("token", "rule"),
    [
        ("5e1f0c2a-7d3b-4c8e 9f10-8ec5ec2e7c01", "spaces"),
        ("5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c01\r\nX-Injected: 1", "line breaks"),
        ("5e1f0c2a-7d3b-4c8e-9f10-8ec5\x1bec2e7c01", "control characters"),
        ("hec-token-0001", "a GUID"),
    ],
    ids=["space", "crlf", "escape", "not-a-guid"],
)
def test_a_wrong_hec_token_is_refused_by_add_and_update(
    tmp_path: Path, token: str, rule: str
) -> None:
    """`destination add` and `destination update --secret-file` exit 2 with an error on
    `secret` naming the rule; nothing is added and the stored token is kept."""
    db = f"sqlite:///{tmp_path}/store.db"
    bad, good = tmp_path / "bad.txt", tmp_path / "good.txt"
    bad.write_text(token)
    good.write_text(GOOD + "\n")
    base = ["--tenant", TENANT, "--type", "splunk_hec", "--format", "json", "--endpoint", ENDPOINT]
    refused = cli(db, "destination", "add", "--name", "bad", *base, "--secret-file", str(bad))
    assert refused.returncode == 2, refused.stderr
    said = refused.stderr.decode()
    assert "secret:" in said
    assert rule in said
    assert token not in said
    added = cli(db, "destination", "add", "--name", "ok", *base, "--secret-file", str(good))
    assert added.returncode == 0, added.stderr
    sealed_before = sealed_secrets(db)
    changed = cli(db, "destination", "update", "--tenant", TENANT, "ok", "--secret-file", str(bad))
    assert changed.returncode == 2, changed.stderr
    assert "secret:" in changed.stderr.decode()
    listed = cli(db, "destination", "list", "--tenant", TENANT, "--json")
    assert [orjson.loads(line)["name"] for line in listed.stdout.splitlines()] == ["ok"]
    assert sealed_secrets(db) == sealed_before


def sealed_secrets(db: str) -> list[str]:
    """The sealed credentials the store holds."""
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return [row for (row,) in conn.execute(select(destinations.c.secret))]
    finally:
        engine.dispose()
