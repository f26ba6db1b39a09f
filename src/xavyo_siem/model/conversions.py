"""Times and UUIDs to and from their stored forms (epoch microseconds, canonical text) and
their JSON form (RFC 3339 UTC with microseconds)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final
from uuid import UUID, SafeUUID

from xavyo_siem.speedups import EPOCH, to_epoch_us, uuid_text

__all__ = [
    "EPOCH",
    "format_duration",
    "format_timestamp",
    "from_epoch_us",
    "optional_timestamp",
    "to_epoch_us",
    "uuid_from_canonical",
    "uuid_text",
]

_MICROSECOND: Final = timedelta(microseconds=1)


def from_epoch_us(us: int) -> datetime:
    """The UTC datetime `us` microseconds after the Unix epoch, exactly."""
    return EPOCH + _MICROSECOND * us  # twice as fast as timedelta(microseconds=us), as exact


def format_timestamp(ts: datetime) -> str:
    """RFC 3339 in UTC with a four-digit year, exactly six fraction digits and a `Z`."""
    return ts.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_duration(seconds: float) -> str:
    """A duration as a person reads it: `0.4 s`, `42 s`, `7 min`, `3 h`, `12 d`."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    for unit, size, limit in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds / 86400:,.0f} d"


def optional_timestamp(ts: datetime | None) -> str | None:
    """`format_timestamp(ts)`, or None for no time."""
    return None if ts is None else format_timestamp(ts)


_new = object.__new__
_put = object.__setattr__
_UNKNOWN_SAFETY: Final = SafeUUID.unknown  # an enum member looked up once: each lookup costs 0.5 µs


def uuid_from_canonical(text: str) -> UUID:
    """The UUID of canonical text (36 lower-case characters); the caller vouches for the form.

    Twice as fast as `UUID(text)`, which matters on the read path of a million events.
    """
    value = _new(UUID)
    _put(value, "int", int(text.replace("-", ""), 16))
    _put(value, "is_safe", _UNKNOWN_SAFETY)
    return value
