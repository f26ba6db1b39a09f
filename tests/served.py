"""Commands of the API as an operator runs them: `xavyo-siem` in this process (for quick
set-up), and `serve` or `run --api` as a real process on a free port, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from click.testing import Result
from typer.testing import CliRunner

from xavyo_siem.cli import app

__all__ = ["cli", "free_port", "process"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli(*args: str, env: dict[str, str]) -> Result:
    """`xavyo-siem ARGS` in this process (the servers below are real processes)."""
    return CliRunner().invoke(app, list(args), env=env)


@contextmanager
def process(*args: str, env: dict[str, str], port: int, log: Path) -> Iterator[httpx.Client]:
    """Start `xavyo-siem ARGS`, wait until /healthz answers, stop it with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "xavyo_siem", *args],
        env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            if time.monotonic() > deadline:  # a start-up guard, not a speed check
                raise AssertionError(f"no answer on /healthz within 30 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
