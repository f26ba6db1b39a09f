"""The audit store: events, and (as later migrations add them) destinations and state."""

from xavyo_siem.store.append import AppendResult, append_events
from xavyo_siem.store.engine import (
    current_revision,
    head_revision,
    make_engine,
    open_store,
    upgrade,
    writing,
)
from xavyo_siem.store.events import (
    START,
    EventCursor,
    EventPage,
    TimeKey,
    head_cursor,
    read_events_after,
    read_events_in_range,
)

__all__ = [
    "START",
    "AppendResult",
    "EventCursor",
    "EventPage",
    "TimeKey",
    "append_events",
    "current_revision",
    "head_cursor",
    "head_revision",
    "make_engine",
    "open_store",
    "read_events_after",
    "read_events_in_range",
    "upgrade",
    "writing",
]
