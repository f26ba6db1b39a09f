"""The documentation's commands work as written: every shell block marked runnable in
README.md and docs/*.md runs top to bottom, in a fresh directory, and succeeds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- runnable -->"
_BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```(?:sh|bash)\n(.*?)\n```", re.DOTALL)


def runnable_blocks() -> list[tuple[str, str]]:
    """(where, script) of each block marked runnable, in document order."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for number, match in enumerate(_BLOCK.finditer(text), start=1):
            found.append((f"{doc.relative_to(ROOT)}#{number}", match.group(1)))
        # A marker not followed by a shell block would be skipped silently: refuse it.
        assert text.count(MARKER) == len(_BLOCK.findall(text)), f"{doc}: a marker without a block"
    return found


BLOCKS = runnable_blocks()


def test_the_readme_has_a_runnable_walk_through() -> None:
    """README's "Using it" is marked runnable, so the test below really runs it."""
    assert any(where.startswith("README.md#") for where, _ in BLOCKS)


@pytest.mark.parametrize(("where", "script"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_runnable_block_succeeds_in_a_fresh_directory(
    where: str, script: str, tmp_path: Path
) -> None:
    """The block runs under `bash -euo pipefail` with only `xavyo-siem` on the path and no
    xavyo-siem settings in the environment, as a reader's fresh shell would."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("XAVYO_SIEM_")
    }
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stderr[-3000:]}"
