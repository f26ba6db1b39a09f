"""The service files in contrib/ match the code: the example environment names every setting
the service reads, the systemd units run commands and options that exist, and the alert
rules are valid YAML over metrics the worker exports, the same rules docs/operations.md shows."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from typer.testing import CliRunner

import xavyo_siem.pipeline.metrics  # noqa: F401 - registers the worker's metrics
from xavyo_siem.cli.root import app
from xavyo_siem.fleet_metrics import FleetCollector, FleetSnapshot
from xavyo_siem.model import WorkersSeen

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"


def test_the_example_environment_names_every_setting_and_only_those() -> None:
    """Each XAVYO_SIEM_ variable the settings read appears in the example, and no other."""
    read = set(
        re.findall(r"XAVYO_SIEM_[A-Z_]+[A-Z]", (ROOT / "src/xavyo_siem/settings.py").read_text())
    )
    example = (CONTRIB / "xavyo-siem.env.example").read_text()
    named = set(re.findall(r"^#?(XAVYO_SIEM_[A-Z_]+)=", example, flags=re.MULTILINE))
    assert named == read


@pytest.mark.parametrize(
    "unit", sorted((CONTRIB / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_a_unit_runs_a_command_with_options_that_exist(unit: Path) -> None:
    """The unit's ExecStart is `xavyo-siem COMMAND --option …` with options COMMAND takes."""
    line = next(x for x in unit.read_text().splitlines() if x.startswith("ExecStart="))
    words = shlex.split(line.removeprefix("ExecStart="))
    assert words[0].endswith("/xavyo-siem")
    command = words[1]
    shown = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for option in (w for w in words[2:] if w.startswith("--")):
        assert option in shown.output, f"{unit.name}: {command} has no {option}"
    assert "EnvironmentFile=/etc/xavyo-siem/xavyo-siem.env" in unit.read_text()


def test_the_alert_rules_are_valid_and_watch_metrics_that_exist() -> None:
    """contrib's alert rules parse, equal the block in docs/operations.md, and every
    xavyo_siem_ metric they use is one the worker registers or the service's fleet view
    exports."""
    rules_text = (CONTRIB / "prometheus" / "xavyo-siem-alerts.yml").read_text()
    assert rules_text in (ROOT / "docs" / "operations.md").read_text()
    rules = yaml.safe_load(rules_text)["groups"][0]["rules"]
    fleet = FleetCollector(FleetSnapshot([], WorkersSeen(0, 0, None), datetime.now(UTC)))
    known = {
        sample_name
        for family in (*REGISTRY.collect(), *fleet.collect())
        for sample_name in (family.name, family.name + "_total")
    }
    for rule in rules:
        for metric in re.findall(r"xavyo_siem_[a-z_]+", rule["expr"]):
            assert metric in known, f"{rule['alert']}: no metric {metric}"
