"""The rules for each kind of audit event value: one check per kind, raising `InvalidEvent`
that names the field and the rule, and returning the value in its model form.

Every check takes the field's name first, so that one check serves every field of its kind
and its message names the field it was given.

An event that comes in is never refused for its content. `AuditEvent.from_dict`, the way
every event comes in (a file, the API), first only checks (the `check_*` functions, and the
`*_within_limits` ones, which also refuse what is past a length limit); when a check fails
it normalises instead, with the `repair_*` functions here: text longer than its limit and
metadata past its limits are cut, NUL and lone surrogates become U+FFFD, a value that is
not a string becomes its JSON text, a leap second becomes the last microsecond of its
minute. What the store keeps, and what every reader of it holds in memory, is bounded per
event. Code that builds an event directly decides its size.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final, TypeGuard
from uuid import UUID

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.model.conversions import uuid_from_canonical
from xavyo_siem.model.enums import EventCategory, Outcome
from xavyo_siem.speedups import repaired_text

__all__ = [
    "DEFAULT_EVENT_TYPE",
    "EMPTY_METADATA_KEY",
    "REPLACEMENT_CHARACTER",
    "add_repaired_entries",
    "check_category",
    "check_event_type_within_limits",
    "check_ip",
    "check_metadata",
    "check_metadata_within_limits",
    "check_outcome",
    "check_required_text",
    "check_severity",
    "check_tenant_id",
    "check_text",
    "check_text_within_limits",
    "check_timestamp",
    "check_uuid",
    "is_ip_address",
    "is_plain_metadata",
    "parse_severity",
    "repair_metadata",
    "repair_text",
    "repair_timestamp",
    "repair_unplain_metadata",
    "text_of",
]

# Limits of what one event that comes in carries; longer values are cut to them, never refused.
MAX_TEXT_CHARS: Final = 65_536  # each free-text field
MAX_EVENT_TYPE_CHARS: Final = 200  # event_type (filters name event types of this length)
MAX_METADATA_ENTRIES: Final = 256
MAX_METADATA_CHARS: Final = 65_536  # metadata's keys and values together


def check_text(name: str, value: object) -> str:
    """A string that UTF-8 can carry (no lone surrogate) and without NUL."""
    if not isinstance(value, str):
        raise InvalidEvent(name, f"must be a string, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEvent(
                name, f"contains a lone surrogate at position {exc.start}; text must be UTF-8"
            ) from None
    if "\x00" in value:
        raise InvalidEvent(name, "contains a NUL character, which audit text may not hold")
    return value


def check_required_text(name: str, value: object) -> str:
    """Text, as `check_text`, that is not empty or blank."""
    text = check_text(name, value)
    if not text.strip():
        raise InvalidEvent(name, "must not be empty")
    return text


def check_text_within_limits(name: str, value: object, limit: int = MAX_TEXT_CHARS) -> str:
    """`check_text`, and at most `limit` characters."""
    if type(value) is str and len(value) > limit:
        raise InvalidEvent(name, f"is longer than {limit} characters")
    return check_text(name, value)


def check_event_type_within_limits(name: str, value: object) -> str:
    """`check_required_text`, and at most `MAX_EVENT_TYPE_CHARS` characters."""
    if type(value) is str and len(value) > MAX_EVENT_TYPE_CHARS:
        raise InvalidEvent(name, f"is longer than {MAX_EVENT_TYPE_CHARS} characters")
    return check_required_text(name, value)


# What a normalised text holds instead of a character an event cannot carry (NUL, which
# PostgreSQL text cannot hold, and a lone surrogate, which UTF-8 cannot): U+FFFD, Unicode's
# replacement character. Other controls are kept; each format writes them its own way.
REPLACEMENT_CHARACTER: Final = "\ufffd"
# The event type of an event that came without one (or with a blank one).
DEFAULT_EVENT_TYPE: Final = "UNKNOWN"


def text_of(value: object) -> str:
    """`value` as text: a string as it is, any other value as its compact JSON text."""
    if isinstance(value, str):
        return value
    try:
        if type(value) is int:  # the commonest: its JSON text is its repr, written directly
            return int.__repr__(value)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError):  # a circular structure, built in Python
        return repr(value)


def repair_text(value: object, limit: int = MAX_TEXT_CHARS) -> str:
    """The text an event can carry for `value`: `text_of(value)` cut to its first `limit`
    characters (what is cut away is not looked at), NUL and lone surrogates -> U+FFFD.

    A string that needs none of it is returned as it is (a `str` subclass as a plain
    `str`); `repaired_text` does the work, in C where it was built."""
    if type(value) is not str:
        value = text_of(value)
        if type(value) is not str:
            value = str.__str__(value)  # a str subclass: its plain text
    return repaired_text(value, limit)


_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_uuid(name: str, value: object) -> UUID:
    """A UUID, or a string of any form `UUID()` accepts; a UUID subclass becomes a plain UUID."""
    if type(value) is UUID:
        return value
    if isinstance(value, UUID):  # a subclass: kept as a plain UUID, which orjson writes
        return UUID(int=value.int)
    if not isinstance(value, str):
        raise InvalidEvent(name, f"must be a UUID string, got {type(value).__name__}")
    if _CANONICAL_UUID.fullmatch(value):  # the form producers send, at a third of UUID()'s cost
        return uuid_from_canonical(value)
    try:
        return UUID(value)
    except ValueError:
        raise InvalidEvent(name, f"must be a UUID, got {value[:60]!r}") from None


# Tenant ids repeat from event to event: their text is parsed once. Bounded (cleared when
# full), so hostile input cannot grow it; UUIDs are immutable, so sharing one is safe.
_TENANT_IDS: dict[str, UUID] = {}
_TENANT_IDS_MAX: Final = 4096


def check_tenant_id(name: str, value: object) -> UUID:
    """`check_uuid` for a tenant id, whose text is parsed once however often it repeats."""
    if type(value) is str:
        cached = _TENANT_IDS.get(value)
        if cached is not None:
            return cached
        tenant = check_uuid(name, value)
        if len(_TENANT_IDS) >= _TENANT_IDS_MAX:
            _TENANT_IDS.clear()
        _TENANT_IDS[value] = tenant
        return tenant
    return check_uuid(name, value)


def check_timestamp(name: str, value: object) -> datetime:
    """An aware datetime or ISO 8601 text with a UTC offset, as a datetime in UTC."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(
                name, f"must be an ISO 8601 date and time, got {value[:60]!r}"
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise InvalidEvent(name, f"must be an ISO 8601 string, got {type(value).__name__}")
    if parsed.tzinfo is UTC:  # "Z" and "+00:00" parse to this very object: nothing to do
        return parsed
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidEvent(name, "must carry a UTC offset (naive times are ambiguous)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(name, "is out of range once converted to UTC") from None


# A leap second (`hh:mm:60`, any fraction), which `datetime` cannot hold.
_LEAP_SECOND: Final = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d):60(?:[.,]\d+)?")


def repair_timestamp(name: str, value: object) -> tuple[datetime, bool]:
    """`check_timestamp` of `value`, and whether it had to change it: a leap second
    (`23:59:60`) becomes the last microsecond of its minute (`23:59:59.999999`); any other
    bad time is refused (an event without a time cannot be one)."""
    if isinstance(value, str) and ":60" in value:
        leap = _LEAP_SECOND.match(value)
        if leap is not None:
            # Seconds 60, which `check_timestamp` refuses: found without trying it first, and
            # replaced by slicing (`re.sub` cost ten times as much, for its replacement template).
            repaired = f"{leap[1]}:59.999999{value[leap.end() :]}"
            return check_timestamp(name, repaired), True
    return check_timestamp(name, value), False


# What `ipaddress.IPv4Address` could take: ASCII digits and dots only (it refuses any other
# character), so text of any other shape is no IPv4 address without asking it.
_IPV4_SHAPED: Final = re.compile(r"[0-9.]+")


def check_ip(name: str, value: object) -> str:
    """An IPv4 or IPv6 address (an IPv6 zone index included), kept as given."""
    text = check_text(name, value)
    if not is_ip_address(text):
        raise InvalidEvent(name, f"must be an IPv4 or IPv6 address, got {text[:60]!r}")
    return text


def is_ip_address(text: str) -> bool:
    """Whether `text` is an IPv4 or IPv6 address (an IPv6 zone index included)."""
    v6 = ":" in text  # no IPv4 address has one
    try:  # inet_pton is the fast path; ipaddress also knows IPv6 zone indexes (fe80::1%eth0)
        socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, text)
        return True
    except OSError:
        pass
    # `ip_address`, without its IPv4 try of text with ":", nor at all for text that cannot
    # be an IPv4 address (a host name: its exceptions in ipaddress were a third of the cost
    # of an event that sends one)
    if v6 or _IPV4_SHAPED.fullmatch(text) is not None:
        try:
            (ipaddress.IPv6Address if v6 else ipaddress.IPv4Address)(text)
            return True
        except ValueError:
            pass
    return False


_CATEGORY_OF: Final[dict[object, EventCategory]] = {c.value: c for c in EventCategory}
_OUTCOME_OF: Final[dict[object, Outcome]] = {o.value: o for o in Outcome}


def check_category(name: str, value: object) -> EventCategory:
    """An `EventCategory` or its value."""
    try:  # a dict lookup: calling the enum costs ten times as much
        return _CATEGORY_OF[value]  # KeyError if not a member, TypeError if unhashable
    except (KeyError, TypeError):
        allowed = ", ".join(c.value for c in EventCategory)
        raise InvalidEvent(name, f"must be one of {allowed}; got {str(value)[:60]!r}") from None


def check_severity(name: str, value: object) -> int:
    """An integer from 0 to 10 (a bool is not one)."""
    if type(value) is not int or not 0 <= value <= 10:
        raise InvalidEvent(name, f"must be an integer from 0 to 10, got {value!r}"[:120])
    return value


def parse_severity(name: str, value: object) -> int:
    """`check_severity` of a JSON value, where 3.0 is the integer 3."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return check_severity(name, value)


def check_outcome(name: str, value: object) -> Outcome:
    """An `Outcome` or its value."""
    try:
        return _OUTCOME_OF[value]  # KeyError if not a member, TypeError if unhashable
    except (KeyError, TypeError):
        raise InvalidEvent(
            name, f"must be success, failure or unknown; got {str(value)[:60]!r}"
        ) from None


def is_plain_metadata(
    value: object, max_entries: int = MAX_METADATA_ENTRIES, max_chars: int = MAX_METADATA_CHARS
) -> TypeGuard[dict[str, str]]:
    """True when `value` is a dict of non-empty ASCII keys to ASCII values, without NUL,
    within the limits: metadata as it comes, valid as it is (found at once)."""
    if type(value) is dict and len(value) <= max_entries:
        try:  # all keys, then all values, as one string each (TypeError: not all strings)
            keys, items = "".join(value), "".join(value.values())
        except TypeError:
            return False
        return (
            len(keys) + len(items) <= max_chars
            and "" not in value
            and keys.isascii()
            and items.isascii()
            and "\x00" not in keys
            and "\x00" not in items
        )
    return False


def _metadata(name: str, value: object, max_entries: int, max_chars: int) -> dict[str, str]:
    """A mapping of non-empty text keys to text values, as a dict, within the limits
    (`InvalidEvent` past them)."""
    if is_plain_metadata(value, max_entries, max_chars):
        return value
    if not isinstance(value, Mapping):
        raise InvalidEvent(name, f"must be an object of strings, got {type(value).__name__}")
    checked: dict[str, str] = {}
    budget = max_chars
    if len(value) > max_entries:
        raise InvalidEvent(name, f"holds more than {max_entries} entries")
    for key, item in value.items():
        check_text(name, key)
        if not key:
            raise InvalidEvent(name, "keys must not be empty")
        if not isinstance(item, str):
            raise InvalidEvent(f"{name}.{key[:40]}", f"must be a string, got {type(item).__name__}")
        checked[key] = check_text(f"{name}.{key[:40]}", item)
        budget -= len(key) + len(item)
    if budget < 0:
        raise InvalidEvent(name, f"holds more than {max_chars} characters of keys and values")
    return checked


def check_metadata(name: str, value: object) -> dict[str, str]:
    """A mapping of non-empty text keys to text values, as a dict."""
    return _metadata(name, value, sys.maxsize, sys.maxsize)


def check_metadata_within_limits(name: str, value: object) -> dict[str, str]:
    """`check_metadata` within `MAX_METADATA_ENTRIES` entries and `MAX_METADATA_CHARS`
    characters of keys and values."""
    return _metadata(name, value, MAX_METADATA_ENTRIES, MAX_METADATA_CHARS)


# The key of an empty metadata key, and of metadata that was not an object at all.
EMPTY_METADATA_KEY: Final = "_"


def repair_metadata(value: object) -> dict[str, str]:
    """The metadata an event can carry for `value`.

    Something that is not an object is kept as one entry under `_`, as its JSON text. Each
    key and value is repaired as text (`repair_text`: a value that is not a string becomes
    its JSON text); an empty key becomes `_`, and a key that then repeats one before it gets
    `_` appended until it is new. The first `MAX_METADATA_ENTRIES` entries are kept as long
    as their keys and values together fit in `MAX_METADATA_CHARS`: the value that crosses
    that limit is cut, and the entries after it are dropped, unread (a key is never cut).
    """
    if is_plain_metadata(value, MAX_METADATA_ENTRIES, MAX_METADATA_CHARS):
        return dict(value)  # nothing to repair
    return repair_unplain_metadata(value)


def repair_unplain_metadata(value: object) -> dict[str, str]:
    """`repair_metadata` of `value` that `is_plain_metadata` found not plain (a caller that
    asked already does not ask again)."""
    if not isinstance(value, Mapping):
        value = {EMPTY_METADATA_KEY: value}
    return add_repaired_entries({}, value.items())


def add_repaired_entries(
    repaired: dict[str, str], entries: Iterable[tuple[object, object]]
) -> dict[str, str]:
    """`repaired` (metadata as `repair_metadata` leaves it) with `entries` added after it,
    each repaired as `repair_metadata` repairs the entries after those of `repaired`: what
    `repair_metadata` makes of the two joined, without looking at `repaired` again."""
    budget = MAX_METADATA_CHARS - sum(map(len, repaired)) - sum(map(len, repaired.values()))
    for raw_key, raw_item in entries:
        if len(repaired) >= MAX_METADATA_ENTRIES:
            break
        # `repair_text`, its string case inlined (a hostile event's metadata runs this).
        key = (
            repaired_text(raw_key, budget) if type(raw_key) is str else repair_text(raw_key, budget)
        ) or EMPTY_METADATA_KEY
        while key in repaired:
            key += EMPTY_METADATA_KEY
        if len(key) > budget:
            break
        budget -= len(key)
        repaired[key] = item = (
            repaired_text(raw_item, budget)
            if type(raw_item) is str
            else repair_text(raw_item, budget)
        )
        budget -= len(item)
    return repaired
