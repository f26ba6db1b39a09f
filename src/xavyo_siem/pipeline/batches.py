"""A batch on its way to a destination: formatted from events, then judged by the answer.

Both ways of delivering share this: the worker's scheduler (`lane.Lane`, streaming) and the
single-destination loop (`loop.DestinationLoop`, batch exports). Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
    Transport,
)
from xavyo_siem.errors import EncodeError
from xavyo_siem.model import AuditEvent

__all__ = [
    "Batch",
    "Formatter",
    "SharedFormats",
    "Verdict",
    "batch_name",
    "format_batch",
    "format_replay",
    "judge",
    "replay_outcome",
    "send_batch",
]

Formatter = Callable[[AuditEvent], str]


class SharedFormats:
    """One formatter for all of a worker's destinations that write events alike, which
    remembers the texts of the events it formatted last.

    The feed hands the same event object to every destination of its tenant: when two of
    them format alike (a tenant's file and HEC destination, both JSON), the second takes
    the text the first made instead of formatting the event again. Events are recognised
    by identity, never by value, so a text is only ever reused for the event it was made
    of. Between `remember` and twice that many texts are kept in all (two generations:
    when the newer fills up it becomes the older, and the older is let go); a format only
    one destination has so far is not remembered.
    """

    def __init__(self, remember: int = 2048) -> None:
        self._remember = remember
        self._opened: dict[Hashable, Formatter] = {}  # a format's first destination's
        self._shared: dict[Hashable, Formatter] = {}
        self._newer: dict[tuple[int, int], tuple[AuditEvent, str]] = {}
        self._older: dict[tuple[int, int], tuple[AuditEvent, str]] = {}

    def formatter(self, key: Hashable, formatter: Formatter) -> Formatter:
        """The formatter of a destination whose format is `key`, given its own `formatter`:
        that one while no other destination has the format, else the shared one."""
        shared = self._shared.get(key)
        if shared is not None:
            return shared
        first = self._opened.pop(key, None)
        if first is None:  # the first destination of this format
            self._opened[key] = formatter
            return formatter
        shared = self._shared[key] = self._remembering(first)
        return shared

    def _remembering(self, formatter: Formatter) -> Formatter:
        def remembering(event: AuditEvent) -> str:
            key = (ident, id(event))  # the entry holds the event: its id is not reused
            seen = self._newer.get(key) or self._older.get(key)
            if seen is not None and seen[0] is event:
                return seen[1]
            text = formatter(event)
            if len(self._newer) >= self._remember:
                self._older, self._newer = self._newer, {}
            self._newer[key] = (event, text)
            return text

        ident = id(remembering)  # lives as long as `_shared` holds it
        return remembering


@dataclass(slots=True)
class Batch:
    """Formatted records waiting to be accepted, and the source's position after them.

    `unencodable` are the events the formatter refused (they become dead letters with the
    batch). A replay batch (dead letters sent again) has `replayed`, the dead-letter id of
    each record's event, and does not move the position. `after` is the position the batch
    starts after (None where unknown): with `position` it names the batch for transports that
    name what they write (`send_batch`).
    """

    records: list[Record]
    position: Any
    unencodable: list[tuple[UUID, str]]
    replayed: dict[str, int] | None = None
    after: Any = None


def format_batch(
    events: Iterable[AuditEvent],
    *,
    formatter: Formatter,
    tenant_id: UUID,
    position: Any,
    after: Any = None,
) -> Batch:
    """The records of `events`, after `after` and through `position`; an event the
    formatter cannot encode is set aside."""
    records: list[Record] = []
    unencodable: list[tuple[UUID, str]] = []
    tenant = tenant_id.int
    for event in events:
        if event.tenant_id.int != tenant:  # the store guarantees it; so do we
            raise AssertionError("an event of another tenant reached a destination")
        try:
            text = formatter(event)
        except EncodeError as exc:
            unencodable.append((event.event_id, f"cannot be encoded: {exc}"))
            continue
        records.append(Record.of(event, text))
    return Batch(records, position, unencodable, after=after)


def format_replay(
    letters: Sequence[tuple[int, AuditEvent]], *, formatter: Formatter, position: Any
) -> Batch | None:
    """Dead letters to send again as a batch (None when none can be encoded now)."""
    records: list[Record] = []
    replayed: dict[str, int] = {}
    for letter_id, event in letters:
        try:
            text = formatter(event)
        except EncodeError:
            continue  # still unencodable: it stays a dead letter
        record = Record.of(event, text)
        records.append(record)
        replayed[record.event_id] = letter_id
    return Batch(records, position, [], replayed) if records else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a destination's answer means for a batch.

    Accepted (`failed` is None): `delivered` records went through and `dead` are refused
    for good (with the unencodable ones). Failed: the batch is sent again later; `failed`
    is the reason, `misconfigured` says whether a person must fix something first, and
    `disable` whether the endpoint said it is gone for good (switch the destination off).
    """

    delivered: int = 0
    dead: list[tuple[UUID, str]] | None = None
    failed: str | None = None
    misconfigured: bool = False
    disable: bool = False
    after_s: float | None = None
    refused_index: dict[int, str] | None = None


def judge(batch: Batch, result: DeliveryResult) -> Verdict:
    """What `result`, the destination's answer to `batch`, means."""
    match result:
        case Delivered():
            return Verdict(len(batch.records), list(batch.unencodable), refused_index={})
        case Rejected(by_index=by_index):
            dead = list(batch.unencodable) + [
                (UUID(batch.records[index].event_id), reason)
                for index, reason in sorted(by_index.items())
            ]
            return Verdict(len(batch.records) - len(by_index), dead, refused_index=dict(by_index))
        case RetryLater(reason=reason, after_s=after_s):
            return Verdict(failed=reason, after_s=after_s)
        case Misconfigured(reason=reason, disable=disable):
            return Verdict(failed=reason, misconfigured=True, disable=disable)
    raise AssertionError(f"unknown delivery result {result!r}")


def replay_outcome(batch: Batch, verdict: Verdict) -> tuple[list[int], dict[int, str]]:
    """For an accepted replay batch: the dead letters delivered, and those refused again."""
    assert batch.replayed is not None
    assert verdict.refused_index is not None
    refused = {
        batch.replayed[batch.records[index].event_id]: reason
        for index, reason in verdict.refused_index.items()
    }
    delivered = [ident for ident in batch.replayed.values() if ident not in refused]
    return delivered, refused


def _position_text(position: Any) -> str | None:
    """A position as text, for a name (`EventCursor.encode`); None when it has no text form."""
    encode = getattr(position, "encode", None)
    text = encode() if callable(encode) else None
    return text if isinstance(text, str) else None


def batch_name(batch: Batch) -> str | None:
    """`<after>-<through>` of a batch that moves the position; None otherwise."""
    if batch.replayed is not None:
        return None
    after, through = _position_text(batch.after), _position_text(batch.position)
    return None if after is None or through is None else f"{after}-{through}"


async def send_batch(transport: Transport, batch: Batch) -> DeliveryResult:
    """Send `batch` through `transport`; one that names what it writes (S3) gets its name."""
    send_named = getattr(transport, "send_named", None)
    if send_named is not None:
        result: DeliveryResult = await send_named(batch.records, name=batch_name(batch))
        return result
    return await transport.send(batch.records)
