"""What the benchmarks print about the machine they ran on, and how fast it ran Python."""

from __future__ import annotations

import os
import platform
import time

__all__ = ["describe_machine", "python_speed"]


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


def python_speed(rounds: int = 5) -> float:
    """Millions of iterations per second of a fixed pure-Python loop, best of `rounds`.

    A yardstick, not a result: the same virtual machine has run this loop at very different
    speeds on different days (its host is shared), so every table carries the yardstick
    measured with it, and two tables compare only as far as their yardsticks agree.
    """
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - began)
    return 2.0 / best


def describe_machine() -> str:
    """CPU model, core count, Python version and the Python yardstick, for every table."""
    from xavyo_siem.speedups import COMPILED

    helpers = "C helpers built" if COMPILED else "C helpers NOT built (Python fallbacks)"
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"yardstick {python_speed():.1f} M loop iterations/s, {helpers}"
    )
