"""The audit event (its fields declared once), its enums, and the other records that flow
through xavyo-siem: destinations, delivery health, batch export jobs.

Every name is importable from `xavyo_siem.model`; the modules are split by subject.
"""

from xavyo_siem.model.conversions import (
    EPOCH,
    format_duration,
    format_timestamp,
    from_epoch_us,
    to_epoch_us,
    uuid_from_canonical,
    uuid_text,
)
from xavyo_siem.model.destination import (
    DEFAULT_RATE_LIMIT,
    DeliveryHealth,
    FleetHealth,
    RateLimit,
    SiemDestination,
    WorkersSeen,
)
from xavyo_siem.model.enums import (
    CircuitState,
    DeliveryType,
    EventCategory,
    ExportFormat,
    ExportTarget,
    JobStatus,
    Outcome,
)
from xavyo_siem.model.event import (
    EVENT_FIELDS,
    FIELD_NAMES,
    TEXT_FIELDS,
    AuditEvent,
    EventField,
    FieldKind,
)
from xavyo_siem.model.filter import EventFilter
from xavyo_siem.model.jobs import BatchExportJob, ExportCheckpoint
from xavyo_siem.model.source import SourcePosition, SourceState, TableSource
from xavyo_siem.model.validation import (
    MAX_EVENT_TYPE_CHARS,
    MAX_METADATA_CHARS,
    MAX_METADATA_ENTRIES,
    MAX_TEXT_CHARS,
)

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "EPOCH",
    "EVENT_FIELDS",
    "FIELD_NAMES",
    "MAX_EVENT_TYPE_CHARS",
    "MAX_METADATA_CHARS",
    "MAX_METADATA_ENTRIES",
    "MAX_TEXT_CHARS",
    "TEXT_FIELDS",
    "AuditEvent",
    "BatchExportJob",
    "CircuitState",
    "DeliveryHealth",
    "DeliveryType",
    "EventCategory",
    "EventField",
    "EventFilter",
    "ExportCheckpoint",
    "ExportFormat",
    "ExportTarget",
    "FieldKind",
    "FleetHealth",
    "JobStatus",
    "Outcome",
    "RateLimit",
    "SiemDestination",
    "SourcePosition",
    "SourceState",
    "TableSource",
    "WorkersSeen",
    "format_duration",
    "format_timestamp",
    "from_epoch_us",
    "to_epoch_us",
    "uuid_from_canonical",
    "uuid_text",
]
