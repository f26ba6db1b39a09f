"""What comes in: audit events parsed from JSON, normalised, and appended to the store.

One parser serves both ways in. `xavyo-siem ingest` reads a file of JSON lines
(`events_of_lines`); the API's `POST /v1/tenants/{tenant_id}/events` reads a batch
`{"events": [...]}` and hands its list to `events_of_batch`. Both decode with orjson
(`decode_json`; a line that escapes a lone surrogate, which orjson refuses, with the
standard library's parser; a byte order mark at a line's start is passed over) and build
events with `AuditEvent.from_dict`, which never refuses an event for its content (it
normalises it, and the event names the changed fields in `normalized`).

Only an input that cannot be an event at all (not JSON, not an object, no usable tenant,
id or time) is refused, and the error says where it is, then the field and the rule:
`line 3: timestamp: must carry a UTC offset` for a file, field `events.17.timestamp` for a
batch. Given a `set_aside` list, the parsers keep such an input there as a
`QuarantineEntry` and go on; `store_events` then appends the events and keeps the set-aside
entries and the conflicts (an id stored with other content) in the quarantine, all in one
transaction. Without it (`--strict`), one bad input stores nothing.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from sqlalchemy import Connection, Engine

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.model import AuditEvent
from xavyo_siem.store import append_events, writing
from xavyo_siem.store.changes import announce_new_events
from xavyo_siem.store.quarantine import (
    CONFLICT,
    QuarantineEntry,
    add_quarantined,
    get_quarantined,
    remove_quarantined,
)

__all__ = [
    "FIRST_ERRORS",
    "PROGRESS_EVERY",
    "IngestResult",
    "RetryResult",
    "decode_json",
    "events_of_batch",
    "events_of_lines",
    "lone_surrogate_escape_in",
    "retry_quarantined",
    "store_events",
]

# `events_of_lines` reports its progress every this many lines.
PROGRESS_EVERY: Final = 2048
# How many reasons an ingest reports (every entry is kept in the quarantine).
FIRST_ERRORS: Final = 10


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an ingest did: events stored, duplicates skipped (same content), conflicts and
    inputs that were no event kept in the quarantine, and the first reasons."""

    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the API's answer, `ingest --json`)."""
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "quarantined": self.quarantined,
            "errors": list(self.errors),
        }


def _tenant_in(value: Any) -> UUID | None:
    """The tenant an input that is no event names, if it names a usable one."""
    if isinstance(value, dict) and isinstance(tenant := value.get("tenant_id"), str):
        try:
            return UUID(tenant)
        except ValueError:
            return None
    return None


def decode_json(raw: bytes) -> Any:
    """The JSON value `raw` holds; `InvalidEvent` on field `event` when it is not JSON."""
    if _BACKSLASH in raw and lone_surrogate_escape_in(raw):
        return _loads_lone_surrogates(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _loads_leniently(raw, exc)


_BACKSLASH: Final = ord("\\")
# The escapes of surrogates that may make a line one orjson refuses, each a `\udxxx`:
# a high half whose low half does not follow, a low half that does not follow a high one,
# and a pair right after a backslash (`pair`: its high half may be text, `\\ud83d\ude00`). A
# backslash before any of them may make it text; the number of backslashes tells.
_LONE_SURROGATE: Final = re.compile(
    rb"\\u[dD](?:"
    rb"[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|[c-fC-F](?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F])"
    rb"|(?<=\\\\u[dD])(?P<pair>[89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F]))"
)
# Whether any escape may be a surrogate's (\ud000-\ud7ff are Hangul and others): a quicker
# search, which most lines that hold backslashes end with.
_MAYBE_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]").search


def lone_surrogate_escape_in(raw: bytes) -> bool:
    """True when JSON `raw` holds the escape of a lone surrogate (`"\\ud800"` without its low
    half after it, or a low half alone), which orjson refuses and the standard library
    reads. One expression finds the places where that may be; only those are looked at
    again, to count the backslashes before them (an even number: escaped backslashes, so
    what follows is an escape; odd: it is text). Pairs, the surrogates that are fine, are
    passed over in C."""
    if _MAYBE_SURROGATE(raw) is None:
        return False
    for found in _LONE_SURROGATE.finditer(raw):
        at = found.start()
        # What looks like an escape is text after an odd number of backslashes; most
        # matches have none before them, and then there is nothing to count.
        escaped = at > 0 and raw[at - 1] == _BACKSLASH and _backslashes_before(raw, at) % 2 == 1
        if found["pair"] is not None:
            if escaped:  # its high half is text, so its low half is lone
                return True
        elif not escaped:
            return True
    return False


def _backslashes_before(raw: bytes, at: int) -> int:
    """How many backslashes stand right before `raw[at]`, counted 64 bytes at a time."""
    count, end = 0, at
    while end > 0:
        start = max(0, end - 64)
        window = raw[start:end]
        kept = window.rstrip(b"\\")
        count += len(window) - len(kept)
        if kept:
            break
        end = start
    return count


# The standard library's scanner, called as `json.loads` calls it, without what that adds
# around it for every input (finding the encoding, two regular expressions for the white
# space before and after the value): a third of its cost for an event's line. It reads
# numbers as orjson does, so that a line is read, or refused, the same way whichever
# parser reads it: `NaN` and `Infinity` are no JSON, a number past a double's range is
# refused, and integers are exact within 64 bits (signed or unsigned) and the nearest
# double beyond. (`scan_once` is an attribute `JSONDecoder.__init__` sets, which typeshed
# does not declare.)
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _double(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is past a double's range")
    return value


_INT_RANGE: Final = range(-(2**63), 2**64)


def _int_as_orjson_reads_it(digits: str) -> int | float:
    if len(digits) <= len(str(-(2**63))):  # longer: past 64 bits, and int() may refuse it
        number = int(digits)
        if number in _INT_RANGE:
            return number
    return _double(digits)


_scan_json: Final[Callable[[str, int], tuple[Any, int]]] = vars(
    json.JSONDecoder(
        parse_constant=_no_constant, parse_float=_double, parse_int=_int_as_orjson_reads_it
    )
)["scan_once"]
# JSON's white space only: `str.strip()` would also take away characters (\x0b, \xa0,
# \u2028 and others) that make `json.loads` refuse a line.
_JSON_SPACE: Final = " \t\n\r"
_BOM: Final = "\ufeff"
# What the standard library's parser raises for input it refuses.
_REFUSED: Final = (ValueError, StopIteration, RecursionError)


def _read_by_standard_library(raw: bytes) -> Any:
    """`raw` read by the standard library's parser as `json.loads` reads UTF-8 (one byte
    order mark at the start passed over, surrogates encoded in the UTF-8 taken, to be
    replaced later like escaped ones), but strictly: no `NaN` or `Infinity`, and only UTF-8
    (`json.loads` would also take UTF-16 and UTF-32, which orjson refuses). Raises one of
    `_REFUSED` where it refuses `raw`."""
    text = raw.decode("utf-8", "surrogatepass")
    if text.startswith(_BOM):
        text = text[1:]
    text = text.strip(_JSON_SPACE)
    value, end = _scan_json(text, 0)
    if end != len(text):
        raise ValueError("extra data after the value")
    return value


def _loads_lone_surrogates(raw: bytes) -> Any:
    """`raw`, which holds the escape of a lone surrogate, read by the standard library's
    parser at once (orjson would refuse it, at a cost); when that parser refuses `raw`,
    orjson's answer, as for any other input."""
    try:
        return _read_by_standard_library(raw)
    except _REFUSED:
        pass
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _not_json(exc) from None


def _loads_leniently(raw: bytes, exc: orjson.JSONDecodeError) -> Any:
    """`raw`, which orjson refused: without the byte order mark it starts with, if it does
    (`json.loads` passes over one; a file saved by some editors starts with it), else as the
    standard library's parser reads it (surrogates encoded in the UTF-8); where that refuses
    it too, orjson's error, as `InvalidEvent`. So a line is read, or refused, alike whatever
    escapes it holds."""
    if raw.startswith(codecs.BOM_UTF8):
        try:
            return orjson.loads(raw[len(codecs.BOM_UTF8) :])
        except orjson.JSONDecodeError:
            pass
    try:
        return _read_by_standard_library(raw)
    except _REFUSED:
        raise _not_json(exc) from None


def _not_json(exc: orjson.JSONDecodeError) -> InvalidEvent:
    return InvalidEvent("event", f"is not valid JSON ({exc})")


def events_of_lines(
    lines: Iterable[bytes],
    *,
    on_progress: Callable[[int], None] | None = None,
    set_aside: list[QuarantineEntry] | None = None,
    source: str = "-",
) -> Iterator[AuditEvent]:
    """The events of JSON lines, one per line, each normalised as it is read.

    Lazy, so memory stays bounded by the events whatever the input's size (the set-aside
    lines are kept, each capped by the quarantine); on PostgreSQL the store reads it from a
    helper thread. Blank lines are skipped but counted. A line that is no event raises
    `InvalidEvent` located at its (1-based) line, or, given `set_aside`, is added to it
    (source `<source>:<line>`). `on_progress(line_number)` is called every `PROGRESS_EVERY`
    lines.
    """
    from_dict = AuditEvent.from_dict
    for number, line in enumerate(lines, start=1):
        if on_progress is not None and number % PROGRESS_EVERY == 0:
            on_progress(number)
        if line.isspace():  # stops at the first other byte: no copy of the line, as strip() made
            continue
        value: Any = None
        try:
            value = decode_json(line)
            yield from_dict(value)
        except InvalidEvent as exc:
            error = exc.at_line(number)
        else:
            continue
        if set_aside is None:
            raise error from None
        set_aside.append(
            QuarantineEntry.of_line(str(error), f"{source}:{number}", line, _tenant_in(value))
        )


def events_of_batch(
    items: Iterable[Any], *, tenant_id: UUID, set_aside: list[QuarantineEntry] | None = None
) -> list[AuditEvent]:
    """The events of a batch sent for `tenant_id` (the API's path), each normalised.

    `items` is the batch's decoded JSON list. An event without `tenant_id` belongs to
    `tenant_id`. An item that is no event, or names another tenant, raises `InvalidEvent`
    naming `events.<index>.<field>`, or, given `set_aside`, is added to it as the tenant's
    (source `api`, the item as JSON).
    """
    from_dict = AuditEvent.from_dict
    tenant = str(tenant_id)
    events: list[AuditEvent] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, dict):
                given = item.get("tenant_id")
                if given is None:
                    item["tenant_id"] = tenant
                elif given != tenant and not _same_uuid(given, tenant_id):
                    raise InvalidEvent("tenant_id", "must be the tenant of the path, or left out")
            events.append(from_dict(item))
        except InvalidEvent as exc:
            error = InvalidEvent(f"events.{index}.{exc.field}", exc.reason)
            if set_aside is None:
                raise error from None
            set_aside.append(
                QuarantineEntry.of_value(str(error), f"api:events.{index}", item, tenant_id)
            )
    return events


def _same_uuid(value: object, tenant_id: UUID) -> bool:
    try:
        return isinstance(value, str) and UUID(value) == tenant_id
    except ValueError:
        return False


def store_events(
    engine: Engine,
    events: Iterable[AuditEvent],
    *,
    tenant_id: UUID | None = None,
    set_aside: list[QuarantineEntry] | None = None,
    source: str = "api",
    within: Callable[[Connection, IngestResult], None] | None = None,
) -> IngestResult:
    """Append `events` in one transaction, each `(tenant_id, event_id)` once, and keep in
    the quarantine what was set aside while they were read and every conflict.

    Events already stored with the same content are counted as duplicates and left as they
    are; one whose id is stored with other content is a conflict, kept in the quarantine
    (source `source`, the event as JSON) while the stored event stays. `set_aside` is the
    list the parser filled (read once `events` is exhausted). An error raised while `events`
    is read rolls back everything, so it stores nothing. Once committed, the workers are
    told (`announce_new_events`). `tenant_id`, when given, is the one tenant the events
    belong to (see `append_events`). `within`, when given, is called last in the same
    transaction with what was done (a source moves its cursor there; raising rolls back).
    """
    with writing(engine) as conn:
        result = append_events(conn, events, tenant_id=tenant_id)
        entries = list(set_aside or ())
        for event in result.conflicts:
            raw = orjson.dumps(event.to_dict()).decode()
            entries.append(QuarantineEntry(CONFLICT, source, raw, event.tenant_id, event.event_id))
        add_quarantined(conn, entries, tenant_id=tenant_id, now=datetime.now(UTC))
        done = IngestResult(
            stored=result.stored,
            duplicates=result.duplicates,
            conflicts=len(result.conflicts),
            quarantined=len(entries),
            errors=tuple(entry.reason for entry in entries[:FIRST_ERRORS]),
        )
        if within is not None:
            within(conn, done)
    if result.stored:
        announce_new_events(engine)
    return done


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What `retry_quarantined` did: entries that are stored events now (or were duplicates
    of stored ones) and left the quarantine, and entries that stay (with why)."""

    stored: int
    duplicates: int
    kept: tuple[str, ...]


def retry_quarantined(
    engine: Engine, *, tenant_id: UUID | None, entry_ids: Iterable[int]
) -> RetryResult:
    """Ingest quarantined entries again through the normalising path, in one transaction.

    An entry that is now an event is stored (or found a duplicate) and leaves the
    quarantine; one that is still no event, or still conflicts with the stored event of
    its id, stays as it is. `tenant_id` scopes it to that tenant's entries; None is the
    platform's view (every entry, tenantless ones included).
    """
    stored = duplicates = 0
    kept: list[str] = []
    with writing(engine) as conn:
        for entry_id in entry_ids:
            entry = get_quarantined(conn, tenant_id=tenant_id, entry_id=entry_id)
            if entry is None:
                kept.append(f"{entry_id}: no such quarantine entry")
                continue
            try:
                event = AuditEvent.from_dict(decode_json(entry.raw.encode()))
                if tenant_id is not None and event.tenant_id != tenant_id:
                    raise InvalidEvent("tenant_id", "is another tenant's")
            except InvalidEvent as exc:
                kept.append(f"{entry_id}: {exc}")
                continue
            result = append_events(conn, [event], tenant_id=tenant_id)
            if result.conflicts:
                kept.append(f"{entry_id}: {CONFLICT}")
                continue
            stored, duplicates = stored + result.stored, duplicates + result.duplicates
            remove_quarantined(conn, tenant_id=tenant_id, entry_ids=[entry_id])
    if stored:
        announce_new_events(engine)
    return RetryResult(stored, duplicates, tuple(kept))
