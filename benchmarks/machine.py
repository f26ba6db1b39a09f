"""What the benchmarks print about the machine they ran on."""

from __future__ import annotations

import os
import platform

__all__ = ["describe_machine"]


def _cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine() -> str:
    """CPU model, core count and Python version, for the record beside every table."""
    return f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
