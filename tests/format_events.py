"""The one small event the format unit tests start from, changed per test (tests only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from xavyo_siem.model import AuditEvent, EventCategory

EVENT_ID = UUID("7f5c9a2e-3b1d-4c8e-9f6a-2d4b8e1c0a37")
TENANT_ID = UUID("0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58")


def make_event(**changes: Any) -> AuditEvent:
    """A valid login event with only the required fields, plus `changes`."""
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "tenant_id": TENANT_ID,
        "timestamp": datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC),
        "event_type": "USER_LOGIN",
        "category": EventCategory.AUTHENTICATION,
    }
    fields.update(changes)
    return AuditEvent(**fields)
