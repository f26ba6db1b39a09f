"""Minimal audit events at known times, for the store's partition and key tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from xavyo_siem.model import AuditEvent, EventCategory

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def events_of(tenant: UUID, count: int, *, at: datetime = NOW) -> list[AuditEvent]:
    """`count` login events of `tenant`, a second apart from `at`, each with a new id."""
    return [
        AuditEvent(
            event_id=uuid4(),
            tenant_id=tenant,
            timestamp=at + timedelta(seconds=n),
            event_type="USER_LOGIN",
            category=EventCategory.AUTHENTICATION,
        )
        for n in range(count)
    ]
