"""Destinations as a file: `apply -f` makes the store match a declaration, applying it again
changes and records nothing, a credential is compared without being shown, `--dry-run`
changes nothing, `--prune` alone removes, and `destination export` round-trips."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from xavyo_siem.crypto import new_key_text

TENANT = "7d1c0f2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f"
TOKEN = str(uuid.UUID(int=0x1234))
OTHER_TOKEN = str(uuid.UUID(int=0x5678))


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """A migrated store on each backend, a key ring, loopback allowed, a token file."""
    (tmp_path / "hec-token").write_text(TOKEN + "\n")
    settings = {
        "XAVYO_SIEM_DATABASE_URL": store_url,
        "XAVYO_SIEM_SECRET_KEY": new_key_text(),
        "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.1/32",
    }
    upgraded = cli("db", "upgrade", env=settings)
    assert upgraded.exit_code == 0, upgraded.output
    return settings


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str, env: dict[str, str]) -> Ran:
    """`xavyo-siem ARGS` as a process, as an operator runs it (errors become exit codes)."""
    done = subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def declaration(tmp_path: Path, *, archive_path: str = "a.jsonl", index: str = "audit") -> Path:
    text = f"""\
version: 1
tenants:
  - tenant: {TENANT}
    destinations:
      - name: archive
        type: file
        format: json
        endpoint: file://{tmp_path / archive_path}
        filters: {{categories: [authentication], min_severity: 2}}
      - name: splunk
        type: splunk_hec
        format: json
        endpoint: https://127.0.0.1:8088
        options: {{index: {index}, ack: false}}
        rate_limit: {{events_per_s: 500, burst: 1000}}
        secret: {{file: {tmp_path / "hec-token"}}}
"""
    path = tmp_path / "destinations.yaml"
    path.write_text(text)
    return path


def trail(env: dict[str, str]) -> int:
    """How many events the tenant's stream holds (each management change adds one)."""
    listed = cli("events", "--tenant", TENANT, "--json", "--limit", "1000", env=env)
    return len(listed.stdout.splitlines())


def test_applying_twice_adds_once_then_changes_and_records_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The first apply adds both destinations; the second writes nothing and adds no audit
    event; the credential never appears in what is printed."""
    path = declaration(tmp_path)
    first = cli("apply", "-f", str(path), env=env)
    assert first.exit_code == 0, first.output
    assert "+ " + TENANT + "/archive" in first.stdout
    assert "did add 2, update 0, remove 0; 0 unchanged" in first.stderr
    listed = [
        orjson.loads(x) for x in cli("destination", "list", "--json", env=env).stdout.splitlines()
    ]
    assert {(d["name"], d["has_secret"]) for d in listed} == {("archive", False), ("splunk", True)}
    before = trail(env)
    again = cli("apply", "-f", str(path), env=env)
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert "did add 0, update 0, remove 0; 2 unchanged" in again.stderr
    assert trail(env) == before
    assert TOKEN not in first.output + again.output


def test_a_changed_setting_and_credential_are_applied_field_by_field(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Changing an option shows `options.index audit -> main` and updates only that; a new
    token in the secret file shows as "credential replaced", never as its value."""
    assert cli("apply", "-f", str(declaration(tmp_path)), env=env).exit_code == 0
    (tmp_path / "hec-token").write_text(OTHER_TOKEN)
    path = declaration(tmp_path, index="main")
    planned = cli("apply", "-f", str(path), "--dry-run", env=env)
    assert planned.exit_code == 0, planned.output
    assert f"~ {TENANT}/splunk: options.index audit -> main; credential replaced" in planned.stdout
    assert "would add 0, update 1, remove 0; 1 unchanged" in planned.stderr
    assert OTHER_TOKEN not in planned.output
    still = [
        orjson.loads(x) for x in cli("destination", "list", "--json", env=env).stdout.splitlines()
    ]
    assert {d["name"]: d["options"].get("index") for d in still}["splunk"] == "audit"
    applied = cli("apply", "-f", str(path), env=env)
    assert applied.exit_code == 0, applied.output
    assert "did add 0, update 1" in applied.stderr
    assert cli("apply", "-f", str(path), env=env).stdout == ""  # and now it matches


def test_destinations_left_out_are_removed_only_with_prune(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A destination of a named tenant that the file leaves out stays without `--prune`
    and is removed with it."""
    assert cli("apply", "-f", str(declaration(tmp_path)), env=env).exit_code == 0
    extra = cli(
        "destination", "add", "--tenant", TENANT, "--name", "extra", "--type", "file",
        "--format", "json", "--endpoint", f"file://{tmp_path / 'x.jsonl'}", env=env,
    )  # fmt: skip
    assert extra.exit_code == 0, extra.output
    kept = cli("apply", "-f", str(declaration(tmp_path)), env=env)
    assert "remove 0" in kept.stderr
    pruned = cli("apply", "-f", str(declaration(tmp_path)), "--prune", env=env)
    assert f"- {TENANT}/extra" in pruned.stdout
    names = {
        orjson.loads(x)["name"]
        for x in cli("destination", "list", "--json", env=env).stdout.splitlines()
    }
    assert names == {"archive", "splunk"}


def test_export_gives_a_file_that_applies_without_a_change(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`destination export` of what `apply` made applies back with nothing to do."""
    assert cli("apply", "-f", str(declaration(tmp_path)), env=env).exit_code == 0
    exported = cli("destination", "export", "--tenant", TENANT, env=env)
    assert exported.exit_code == 0, exported.output
    assert TOKEN not in exported.stdout
    path = tmp_path / "exported.yaml"
    path.write_text(exported.stdout)
    back = cli("apply", "-f", str(path), "--dry-run", env=env)
    assert back.exit_code == 0, back.output
    assert "would add 0, update 0, remove 0; 2 unchanged" in back.stderr


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (
            ("secret: {file: ", "secret: inline-token #"),
            "tenants[0].destinations[1].secret",
            "never written inline",
        ),
        (
            ("type: file", "type: carrier-pigeon"),
            "tenants[0].destinations[0].type",
            "must be one of",
        ),
        (
            (
                "format: json\n        endpoint: file",
                "format: json\n        colour: blue\n        endpoint: file",
            ),
            "tenants[0].destinations[0].colour",
            "is not a destination setting",
        ),
        (("version: 1", "version: 2"), "version", "must be 1"),
    ],
)
def test_a_bad_declaration_names_the_place_and_changes_nothing(
    env: dict[str, str], tmp_path: Path, change: tuple[str, str], field: str, reason: str
) -> None:
    """Each mistake is refused with exit 2, naming where in the file it is; nothing is added."""
    path = declaration(tmp_path)
    path.write_text(path.read_text().replace(*change, 1))
    result = cli("apply", "-f", str(path), env=env)
    assert result.exit_code == 2, result.output
    assert f"{field}: " in result.output
    assert reason in result.output
    assert cli("destination", "list", "--json", env=env).stdout == ""


def test_a_type_cannot_change_in_place(env: dict[str, str], tmp_path: Path) -> None:
    """Declaring an existing destination with another type is refused, naming `type`."""
    assert cli("apply", "-f", str(declaration(tmp_path)), env=env).exit_code == 0
    path = declaration(tmp_path)
    path.write_text(
        path.read_text().replace(
            "type: file\n        format: json\n        endpoint: file://",
            "type: syslog_tcp\n        format: cef\n        endpoint: tcp://127.0.0.1:514 #",
            1,
        )
    )
    result = cli("apply", "-f", str(path), env=env)
    assert result.exit_code == 2, result.output
    assert (
        "tenants[0].destinations[0].type: archive is file; a type cannot change in place"
        in result.output
    )
