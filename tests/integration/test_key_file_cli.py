"""The key file as an operator meets it on the command line: one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_key_file_problems_are_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    """`keys status` with a key file that is not UTF-8, one others may write, or both key
    settings at once exits 1 with one line naming the setting, the file and the fix."""
    key_file = tmp_path / "ring"
    key_file.write_bytes(b"\xff\xfe not a key ring")
    key_file.chmod(0o600)
    key = "k1:" + "A" * 43 + "="
    cases = [
        ({"XAVYO_SIEM_SECRET_KEY_FILE": str(key_file)}, "is not UTF-8 text", 0o600),
        ({"XAVYO_SIEM_SECRET_KEY_FILE": str(key_file)}, f"chmod 600 {key_file}", 0o666),
        (
            {"XAVYO_SIEM_SECRET_KEY_FILE": str(key_file), "XAVYO_SIEM_SECRET_KEY": key},
            "XAVYO_SIEM_SECRET_KEY and XAVYO_SIEM_SECRET_KEY_FILE are both set",
            0o600,
        ),
    ]
    for settings, message, mode in cases:
        key_file.chmod(mode)
        env = {k: v for k, v in os.environ.items() if not k.startswith("XAVYO_SIEM_")}
        done = subprocess.run(
            [sys.executable, "-m", "xavyo_siem", "keys", "status"],
            capture_output=True,
            env={**env, **settings, "COLUMNS": "400"},
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        stderr = done.stderr.decode()
        assert done.returncode == 1, stderr
        assert message in stderr
        assert "Traceback" not in stderr
        assert stderr.startswith("error: ")
        assert key not in stderr
