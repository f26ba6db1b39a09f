"""A lane that lingers (S3's object age cap) on a fake clock, and the name a batch carries to
a transport that names what it writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from uuid import uuid4

from lane_stores import MemoryStore
from xavyo_siem.delivery.base import Delivered, DeliveryResult, Record
from xavyo_siem.model import AuditEvent, DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.pipeline.batches import Batch, batch_name, send_batch
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import DestinationComponents
from xavyo_siem.sample import generate_events


@dataclass(frozen=True, order=True)
class Position:
    """A store position with a text form, as `EventCursor` has."""

    seq: int

    def encode(self) -> str:
        return f"7.{self.seq}"


class NamingTransport:
    """Records each batch with the name the pipeline gave it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, list[Record]]] = []

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        raise AssertionError("a naming transport is sent named batches")

    async def send_named(self, records: Sequence[Record], *, name: str | None) -> DeliveryResult:
        self.sent.append((name, list(records)))
        return Delivered()

    async def check(self) -> DeliveryResult:
        return Delivered()

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lane_of(transport: NamingTransport, clock: Clock, *, linger_s: float) -> Lane:
    tenant = uuid4()
    destination = SiemDestination(
        id=uuid4(),
        tenant_id=tenant,
        name="archive",
        delivery_type=DeliveryType.S3,
        format=ExportFormat.JSON,
        endpoint="s3://archive",
    )

    async def open_components(_: SiemDestination) -> DestinationComponents:
        return DestinationComponents(transport, lambda e: str(e.event_id), 3, linger_s=linger_s)

    lane = Lane(
        destination=destination,
        position=Position(0),
        open_components=open_components,
        clock=clock,
    )
    lane.join()
    return lane


def events_of(lane: Lane, count: int) -> list[AuditEvent]:
    return [replace(e, tenant_id=lane.tenant_id) for e in generate_events(count, 1, seed=3)]


async def test_a_lingering_lane_waits_for_a_full_batch_or_the_age_cap() -> None:
    """Fewer events than a batch wait until the oldest is `linger_s` old; a full batch goes
    at once; the cursor moves only with what was sent."""
    clock, transport, store = Clock(), NamingTransport(), MemoryStore()
    lane = lane_of(transport, clock, linger_s=10)
    events = events_of(lane, 7)
    assert lane.offer([(Position(1), events[0])])
    await lane.turn(store)
    assert transport.sent == []
    assert (lane.due, lane.lingering) == (110.0, True)
    clock.now = 105.0
    lane.offer([(Position(2), events[1])])
    assert lane.due == 110.0  # still lingering: the age counts from the oldest
    lane.offer([(Position(3), events[2])])
    assert lane.due is None  # full: ready now
    await lane.turn(store)
    assert [name for name, _ in transport.sent] == ["7.0-7.3"]
    assert store.positions == [Position(3)]
    lane.written()

    clock.now = 200.0
    lane.offer([(Position(4), events[3])])
    await lane.turn(store)
    assert len(transport.sent) == 1
    assert lane.due == 210.0
    clock.now = 210.0
    await lane.turn(store)
    assert [(name, len(records)) for name, records in transport.sent] == [
        ("7.0-7.3", 3),
        ("7.3-7.4", 1),
    ]
    assert store.positions == [Position(3), Position(4)]


async def test_a_lane_that_does_not_linger_sends_what_it_has() -> None:
    """With `linger_s` 0 one buffered event is sent on the next turn."""
    clock, transport, store = Clock(), NamingTransport(), MemoryStore()
    lane = lane_of(transport, clock, linger_s=0)
    lane.offer([(Position(1), events_of(lane, 1)[0])])
    await lane.turn(store)
    assert [name for name, _ in transport.sent] == ["7.0-7.1"]


async def test_a_replay_or_a_position_without_text_has_no_name() -> None:
    """Dead letters sent again, and positions with no text form, give the transport None."""
    transport = NamingTransport()
    replay = Batch([], Position(5), [], replayed={}, after=Position(5))
    plain = Batch([], 9, [], after=8)
    assert batch_name(replay) is None
    assert batch_name(plain) is None
    assert batch_name(Batch([], Position(9), [], after=Position(4))) == "7.4-7.9"
    await send_batch(transport, plain)
    assert transport.sent == [(None, [])]
