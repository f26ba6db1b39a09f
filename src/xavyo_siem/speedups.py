"""Four hot helpers, in C when the package was built with a compiler, else in Python here.

`xavyo_siem/_speedups.c` implements each function below again; `COMPILED` says which ones
this process runs and `helpers_in_use()` says why, for `--version`. Both give exactly the
same result for every input (the tests compare them with hypothesis), so nothing else needs
to know. The C versions are what keeps CEF ten times faster than `cefevent`;
docs/performance.md has the measurements.

`XAVYO_SIEM_PURE_PYTHON=1` in the environment when this module is first imported makes the
process run the Python versions even where the C ones are built: the test command runs the
format, model and store tests a second time that way, so the versions a machine without a
compiler runs are tested too. An install that fell back without being asked to warns once
(`SlowHelpersWarning`), naming the fix.

This module sits under everything else in the package and imports nothing from it.
"""

from __future__ import annotations

import operator
import os
import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

import orjson

__all__ = [
    "COMPILED",
    "EPOCH",
    "FORCE_PURE_PYTHON",
    "SlowHelpersWarning",
    "helpers_in_use",
    "plain_values_length",
    "py_plain_values_length",
    "py_repaired_text",
    "py_to_epoch_us",
    "py_uuid_text",
    "repaired_text",
    "to_epoch_us",
    "uuid_text",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def py_to_epoch_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, exactly (TypeError if naive).

    datetime's own subtraction, also for a subclass that overrides `-`."""
    return datetime.__sub__(ts, EPOCH) // _MICROSECOND


def py_uuid_text(value: UUID) -> str:
    """`str(value)`, the canonical form, at a quarter of its cost: orjson writes it in C."""
    if type(value) is not UUID:
        if not isinstance(value, UUID):
            raise TypeError(f"value: must be a UUID, got {type(value).__name__}")
        value = UUID(int=value.int)  # orjson writes UUID itself only
    return orjson.dumps(value).decode()[1:-1]


def py_plain_values_length(pieces: list[str], specials: bytes) -> int:
    """The total length of the values `pieces[2::2]` when none needs escaping (all ASCII,
    without a byte of `specials`, the format's whole set); -1 when one may."""
    if type(pieces) is not list or type(specials) is not bytes:
        raise TypeError("pieces: must be a list, and specials bytes")
    values = "".join(pieces[2::2])
    if not values.isascii():
        return -1
    raw = values.encode()
    return len(values) if len(raw.translate(None, specials)) == len(raw) else -1


# What a repaired text holds instead of a character UTF-8 or PostgreSQL cannot carry.
_REPLACEMENT: Final = "\ufffd"
_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def py_repaired_text(text: str, limit: int) -> str:
    """`text` cut to its first `limit` characters (what is cut away is not looked at), with
    NUL and lone surrogates replaced by U+FFFD; `text` itself when nothing changes."""
    if type(text) is not str:
        raise TypeError(f"text: must be a str, got {type(text).__name__}")
    if operator.index(limit) < 0:
        raise ValueError("limit: must not be negative")
    if len(text) > limit:
        text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", _REPLACEMENT)
    if not text.isascii():
        text = _SURROGATES.sub(_REPLACEMENT, text)
    return text


class SlowHelpersWarning(RuntimeWarning):
    """The C helpers are not built, so this install runs their slower Python versions."""


FORCE_PURE_PYTHON: Final = "XAVYO_SIEM_PURE_PYTHON"
_FORCED: Final = os.environ.get(FORCE_PURE_PYTHON) == "1"

to_epoch_us: Callable[[datetime], int] = py_to_epoch_us
uuid_text: Callable[[UUID], str] = py_uuid_text
plain_values_length: Callable[[list[str], bytes], int] = py_plain_values_length
repaired_text: Callable[[str, int], str] = py_repaired_text
COMPILED: bool = False
if not _FORCED:
    try:
        from xavyo_siem._speedups import (
            plain_values_length,
            repaired_text,
            to_epoch_us,
            uuid_text,
        )
    except ImportError:  # built without a C compiler: the same results, slower
        warnings.warn(
            "xavyo-siem runs the Python versions of its C helpers (xavyo_siem._speedups is not"
            " built), so formatting events is slower. To build them, install a C compiler and"
            " the Python headers (gcc and python3-dev on Debian or Ubuntu) and reinstall"
            f" xavyo-siem; or set {FORCE_PURE_PYTHON}=1 to choose the Python versions"
            " without this warning.",
            SlowHelpersWarning,
            stacklevel=1,
        )
    else:
        COMPILED = True


def helpers_in_use() -> str:
    """Which versions of the helpers this process runs, and why: a phrase for `--version`."""
    if COMPILED:
        return "C helpers"
    if _FORCED:
        return f"Python helpers (forced by {FORCE_PURE_PYTHON})"
    return "Python helpers (the C extension is not built)"
