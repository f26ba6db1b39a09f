"""What commands print: tables and fields on stdout, JSON lines for `--json`, and messages
and progress on stderr (`err`), so a pipe only ever receives the data."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from rich.console import Console

__all__ = ["err", "out", "print_fields", "print_json_lines"]

err = Console(stderr=True, highlight=False, soft_wrap=True)


def out() -> Console:
    """Tables on stdout: the terminal's width, or wide enough not to cut columns in a pipe."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 250)


def print_json_lines(items: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line on stdout."""
    stdout = sys.stdout.buffer
    for item in items:
        stdout.write(orjson.dumps(item) + b"\n")


def print_fields(data: Mapping[str, Any], *, key_width: int, none: str) -> None:
    """One `key: value` line per field, keys right-aligned; lists and objects as JSON, and
    `none` for a missing value."""
    console = out()
    for key, value in data.items():
        if value is None:
            shown = none
        elif isinstance(value, dict | list):
            shown = orjson.dumps(value).decode()
        else:
            shown = value
        console.print(f"{key:>{key_width}}: {shown}")
