"""`EventFilter`: which events a destination or an export wants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xavyo_siem.errors import InvalidEvent, InvalidFilter
from xavyo_siem.model.enums import EventCategory
from xavyo_siem.model.event import AuditEvent
from xavyo_siem.model.validation import check_category

__all__ = ["EventFilter"]


def _filter_category(value: object) -> EventCategory:
    try:
        return check_category("category", value)
    except InvalidEvent as exc:
        raise InvalidFilter("filters.categories", exc.reason) from None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a destination or an export wants; empty sets mean "all"."""

    categories: frozenset[EventCategory] = frozenset()
    event_types: frozenset[str] = frozenset()
    min_severity: int = 0

    @property
    def is_everything(self) -> bool:
        """True when the filter lets every event through."""
        return not self.categories and not self.event_types and self.min_severity <= 0

    def matches(self, event: AuditEvent) -> bool:
        """Whether `event` passes (the store decides the same in SQL)."""
        return (
            (not self.categories or event.category in self.categories)
            and (not self.event_types or event.event_type in self.event_types)
            and event.severity >= self.min_severity
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: sorted lists, so equal filters give equal JSON."""
        return {
            "categories": sorted(c.value for c in self.categories),
            "event_types": sorted(self.event_types),
            "min_severity": self.min_severity,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EventFilter:
        """Parse the JSON form; raises InvalidFilter naming `filters.<key>` on a bad value."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidFilter("filters", "must be an object")
        unknown = set(data) - {"categories", "event_types", "min_severity"}
        if unknown:
            raise InvalidFilter(f"filters.{sorted(unknown)[0]}", "is not a filter")
        categories = data.get("categories") or []
        event_types = data.get("event_types") or []
        if not isinstance(categories, list | tuple | set | frozenset):
            raise InvalidFilter("filters.categories", "must be a list of categories")
        if not isinstance(event_types, list | tuple | set | frozenset) or not all(
            isinstance(t, str) and t for t in event_types
        ):
            raise InvalidFilter("filters.event_types", "must be a list of event types")
        min_severity = data.get("min_severity", 0)
        if type(min_severity) is not int or not 0 <= min_severity <= 10:
            raise InvalidFilter("filters.min_severity", "must be an integer from 0 to 10")
        return cls(
            frozenset(_filter_category(c) for c in categories),
            frozenset(event_types),
            min_severity,
        )
