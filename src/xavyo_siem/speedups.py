"""Three hot helpers, in C when the package was built with a compiler, else in Python here.

`xavyo_siem/_speedups.c` implements each function below again; `COMPILED` says which ones
this process runs. Both give exactly the same result for every input (the tests compare them
with hypothesis), so nothing else needs to know. The C versions are what keeps CEF ten times
faster than `cefevent`; docs/performance.md has the measurements.

This module sits under everything else in the package and imports nothing from it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

import orjson

__all__ = [
    "COMPILED",
    "EPOCH",
    "plain_values_length",
    "py_plain_values_length",
    "py_to_epoch_us",
    "py_uuid_text",
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


to_epoch_us: Callable[[datetime], int]
uuid_text: Callable[[UUID], str]
plain_values_length: Callable[[list[str], bytes], int]
try:
    from xavyo_siem._speedups import plain_values_length, to_epoch_us, uuid_text
except ImportError:  # built without a C compiler: the same results, slower
    to_epoch_us, uuid_text, plain_values_length = (
        py_to_epoch_us,
        py_uuid_text,
        py_plain_values_length,
    )
    COMPILED = False
else:
    COMPILED = True
