"""A `LaneStore` that keeps nothing, for tests of lanes and the scheduler (tests only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xavyo_siem.model import AuditEvent
from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import SourcePage


class MemoryStore:
    """A LaneStore with nothing behind the lane: it follows the feed from the start."""

    def __init__(self) -> None:
        self.positions: list[Any] = []

    async def read_backlog(self, lane: Lane, *, after: Any, limit: int) -> SourcePage[Any] | None:
        return None

    async def read_replay(self, lane: Lane, *, limit: int) -> list[tuple[int, AuditEvent]]:
        return []

    async def settle_replay(
        self, lane: Lane, *, delivered: Sequence[int], refused: Mapping[int, str]
    ) -> None:
        return None

    def note_delivered(self, lane: Lane, *, position: Any, **_: Any) -> None:
        self.positions.append(position)

    def note_failure(
        self, lane: Lane, *, reason: str, circuit: CircuitBreaker, misconfigured: bool
    ) -> None:
        raise AssertionError(reason)

    def note_losses(self, lane: Lane, *, possibly_lost: int, truncated: int) -> None:
        return None

    def note_disabled(self, lane: Lane, *, reason: str) -> None:
        return None
