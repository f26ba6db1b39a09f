"""The closed sets of values the model uses: event categories and outcomes, formats,
transports, circuit states, job states and export targets."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "CircuitState",
    "DeliveryType",
    "EventCategory",
    "ExportFormat",
    "ExportTarget",
    "JobStatus",
    "Outcome",
]


class EventCategory(StrEnum):
    """What area of the identity provider an audit event belongs to."""

    AUTHENTICATION = "authentication"
    USER_LIFECYCLE = "user_lifecycle"
    GROUP_CHANGES = "group_changes"
    ACCESS_REQUESTS = "access_requests"
    PROVISIONING = "provisioning"
    ADMINISTRATIVE = "administrative"
    SECURITY = "security"
    ENTITLEMENT = "entitlement"
    SOD_VIOLATION = "sod_violation"

    @property
    def default_severity(self) -> int:
        """The 0-10 severity an event of this category gets when it names none."""
        return _DEFAULT_SEVERITY[self]


_DEFAULT_SEVERITY: Final[dict[EventCategory, int]] = {
    EventCategory.AUTHENTICATION: 3,
    EventCategory.USER_LIFECYCLE: 3,
    EventCategory.GROUP_CHANGES: 3,
    EventCategory.ACCESS_REQUESTS: 3,
    EventCategory.PROVISIONING: 3,
    EventCategory.ADMINISTRATIVE: 5,
    EventCategory.ENTITLEMENT: 4,
    EventCategory.SECURITY: 7,
    EventCategory.SOD_VIOLATION: 8,
}


class Outcome(StrEnum):
    """How the audited action ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


class ExportFormat(StrEnum):
    """The record formats an event can be written in."""

    CEF = "cef"
    SYSLOG = "syslog"
    JSON = "json"
    CSV = "csv"
    OCSF = "ocsf"
    LEEF = "leef"
    ECS = "ecs"


class DeliveryType(StrEnum):
    """The transports a destination can use."""

    SYSLOG_TCP = "syslog_tcp"
    SYSLOG_TLS = "syslog_tls"
    SYSLOG_UDP = "syslog_udp"
    SYSLOG_RELP = "syslog_relp"
    WEBHOOK = "webhook"
    SPLUNK_HEC = "splunk_hec"
    SENTINEL = "sentinel"
    FILE = "file"
    ELASTICSEARCH = "elasticsearch"
    S3 = "s3"


class CircuitState(StrEnum):
    """The state of a destination's circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class JobStatus(StrEnum):
    """The lifecycle of a batch export job."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ExportTarget(StrEnum):
    """Where a batch export writes: a file, or a tenant's destination."""

    FILE = "file"
    DESTINATION = "destination"
