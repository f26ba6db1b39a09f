"""The formatter a worker's destinations share when they write events alike, and the way a
lane takes the events the feed offers it."""

from __future__ import annotations

import functools
from dataclasses import replace
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem.destinations import format_key
from xavyo_siem.errors import EncodeError
from xavyo_siem.format.jsonl import to_json
from xavyo_siem.model import AuditEvent, DeliveryType, EventFilter, ExportFormat, SiemDestination
from xavyo_siem.pipeline.batches import SharedFormats
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import DestinationComponents
from xavyo_siem.sample import generate_events

from strategies import audit_events


class Counting:
    """A formatter that counts the events it formatted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: AuditEvent) -> str:
        self.calls += 1
        return to_json(event)


@given(st.lists(audit_events(), min_size=1, max_size=8), st.integers(1, 8))
def test_a_shared_formatter_gives_each_event_its_own_text(
    events: list[AuditEvent], remember: int
) -> None:
    """Whatever the events (copies with the same id, equal or not, included) and however few
    it remembers, a shared formatter returns exactly what the formatter makes of each event."""
    formats = SharedFormats(remember=remember)
    formats.formatter("json", to_json)
    shared = formats.formatter("json", lambda event: to_json(event))
    equal = [replace(event) for event in events]  # equal, not the same objects
    edited = [replace(event, reason=f"{event.reason or ''}!") for event in events]
    for event in [*events, *equal, *edited, *reversed(events)]:
        assert shared(event) == to_json(event)


def test_destinations_that_format_alike_format_an_event_once() -> None:
    """Two destinations of one format share a formatter: the second takes the first's text
    for the same event object, and an event not seen recently is formatted again."""
    formats = SharedFormats(remember=2)
    counting = Counting()
    assert formats.formatter("json", counting) is counting  # alone: nothing to share
    shared = formats.formatter("json", counting)  # the same function, another destination
    assert formats.formatter("json", to_json) is shared  # a third shares it too
    events = list(generate_events(6, 1, seed=5))
    for event in events[:2]:
        assert shared(event) == shared(event) == to_json(event)
    assert counting.calls == 2
    for event in events[2:]:
        shared(event)
    shared(events[0])  # forgotten: two generations of two hold the last two to four
    assert counting.calls == 7


def test_formats_remember_texts_within_one_bound() -> None:
    """Many formats together keep at most twice `remember` texts, and each format's text
    stays its own even for the same event."""
    formats = SharedFormats(remember=4)
    shared = []
    for index in range(10):
        own = functools.partial(lambda i, e: f"{i}:{e.event_id}", index)
        formats.formatter(index, own)
        shared.append(formats.formatter(index, own))
    events = list(generate_events(5, 1, seed=6))
    for event in events:
        for index, formatter in enumerate(shared):
            assert formatter(event) == f"{index}:{event.event_id}"
    assert len(formats._newer) + len(formats._older) <= 8


def test_a_refusal_is_not_remembered() -> None:
    """An event the formatter cannot encode raises each time it is formatted."""

    def refuse(event: AuditEvent) -> str:
        raise EncodeError("event", "cannot be written")

    formats = SharedFormats()
    formats.formatter("refusing", refuse)
    shared = formats.formatter("refusing", refuse)
    event = next(iter(generate_events(1, 1, seed=1)))
    for _ in range(2):
        with pytest.raises(EncodeError):
            shared(event)


def test_the_format_key_names_what_the_formatter_is_built_from() -> None:
    """Destinations differing only in endpoint or transport options share a key; a format
    option, the format, or a syslog transport gives another."""

    def destination(kind: DeliveryType, fmt: ExportFormat, **options: object) -> SiemDestination:
        return SiemDestination(
            id=uuid4(),
            tenant_id=uuid4(),
            name="d",
            delivery_type=kind,
            format=fmt,
            endpoint=f"file:///tmp/{uuid4()}.log",
            options=options,
        )

    base = format_key(destination(DeliveryType.FILE, ExportFormat.CSV, batch_max_events=10))
    assert format_key(destination(DeliveryType.FILE, ExportFormat.CSV)) == base
    assert format_key(destination(DeliveryType.FILE, ExportFormat.CSV, formula_guard="0")) != base
    assert format_key(destination(DeliveryType.FILE, ExportFormat.JSON)) != base
    assert format_key(destination(DeliveryType.SYSLOG_TCP, ExportFormat.CSV)) != base


def following_lane(*, filters: EventFilter | None = None, max_buffered: int = 100) -> Lane:
    destination = SiemDestination(
        id=uuid4(),
        tenant_id=uuid4(),
        name="d",
        delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON,
        endpoint="file:///tmp/d.log",
        filters=filters or EventFilter(),
    )

    async def never(_: SiemDestination) -> DestinationComponents:
        raise AssertionError("not opened")

    lane = Lane(
        destination=destination, position=0, open_components=never, max_buffered=max_buffered
    )
    lane.join()
    return lane


def offered(lane: Lane, positions: range) -> list[tuple[int, AuditEvent]]:
    events = generate_events(len(positions), 1, seed=positions.start)
    return [
        (p, replace(e, tenant_id=lane.tenant_id)) for p, e in zip(positions, events, strict=True)
    ]


def test_a_lane_takes_what_it_has_not_seen_and_its_filter_wants() -> None:
    """Events at or before what the lane has seen are skipped; those its filter leaves out
    move what it has seen without being buffered."""
    wanted = EventFilter(min_severity=5)
    lane = following_lane(filters=wanted)
    events = offered(lane, range(1, 21))
    lane.offer(events[:10])
    lane.offer(events)  # the first ten again, then ten new
    assert [p for p, _ in lane.buffer] == [p for p, e in events if wanted.matches(e)]
    assert lane.seen == 20
    assert not lane.offer(events)


def test_a_lane_whose_buffer_would_overflow_reads_from_the_store_instead() -> None:
    """Offered more than it may hold, a lane keeps none of it and goes back to what it has
    taken, to read the rest from the store: nothing is skipped."""
    lane = following_lane(max_buffered=10)
    assert lane.offer(offered(lane, range(1, 9)))
    assert not lane.offer(offered(lane, range(9, 12)))
    assert not lane.buffer
    assert not lane.following
    assert lane.seen == lane.taken == 0
