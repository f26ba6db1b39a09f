"""What the HTTP API accepts and returns; `*Public` is exactly what may leave the service.

Request schemas forbid unknown fields, so a misspelt field is a 422 naming it rather than
a setting silently ignored. The credential (`secret`) is write-only: it is accepted by
`DestinationCreate` and `DestinationUpdate`, typed `SecretStr` so that it never shows in a
repr or a log, and `DestinationPublic` has no field for it at all, only `has_secret`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, create_model

from xavyo_siem.model import (
    EVENT_FIELDS,
    MAX_EVENT_TYPE_CHARS,
    MAX_METADATA_CHARS,
    MAX_METADATA_ENTRIES,
    MAX_TEXT_CHARS,
    DeliveryType,
    EventCategory,
    EventField,
    ExportFormat,
    FieldKind,
    JobStatus,
    Outcome,
)

__all__ = [
    "MAX_SECRET_CHARS",
    "AuditEventIn",
    "AuditEventPublic",
    "DeadLetterPage",
    "DeadLetterPublic",
    "DeadLetterSelection",
    "DestinationCreate",
    "DestinationHealth",
    "DestinationPublic",
    "DestinationUpdate",
    "ErrorBody",
    "ErrorItem",
    "EventBatch",
    "EventPage",
    "ExportCreate",
    "ExportJobPublic",
    "FilterSchema",
    "IngestResult",
    "PurgeResult",
    "RateLimitSchema",
    "ReplayResult",
    "ServiceHealth",
    "TenantHealth",
    "TestReport",
    "TestStepPublic",
]

MAX_SECRET_CHARS = 16_384

OptionValue = str | int | float | bool
_Strict = ConfigDict(extra="forbid")


class ErrorItem(BaseModel):
    """One problem with a request: where (`loc`), what rule (`msg`), and its kind (`type`)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of the API: the problems found, each naming its field."""

    detail: list[ErrorItem]


class FilterSchema(BaseModel):
    """Which events a destination wants; empty lists mean "all"."""

    model_config = _Strict

    categories: list[EventCategory] = Field(default_factory=list, max_length=20)
    event_types: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=1000
    )
    min_severity: int = Field(default=0, ge=0, le=10)


class RateLimitSchema(BaseModel):
    """A token bucket: at most `burst` events at once, refilled at `events_per_s`."""

    model_config = _Strict

    events_per_s: float = Field(gt=0, le=10_000_000, allow_inf_nan=False)
    burst: int = Field(ge=1, le=10_000_000)


Name = Annotated[str, Field(min_length=1, max_length=100)]
Endpoint = Annotated[str, Field(min_length=1, max_length=2048)]
Options = Annotated[dict[Annotated[str, Field(max_length=64)], OptionValue], Field(max_length=64)]
Secret = Annotated[SecretStr, Field(min_length=1, max_length=MAX_SECRET_CHARS)]


class DestinationCreate(BaseModel):
    """A new destination. `secret` is the credential (HEC token, webhook secrets): write-only.

    Without `rate_limit` the destination gets the default limit (1000 events/s, burst 2000);
    `rate_limit: null` asks for none.
    """

    model_config = _Strict

    name: Name
    delivery_type: DeliveryType
    format: ExportFormat
    endpoint: Endpoint
    options: Options = Field(default_factory=dict)
    filters: FilterSchema = Field(default_factory=FilterSchema)
    rate_limit: RateLimitSchema | None = None
    enabled: bool = True
    secret: Secret | None = None


class DestinationUpdate(BaseModel):
    """Changes to a destination; fields left out stay as they are.

    `options` are merged into the current ones (a `null` value removes that option);
    `rate_limit: null` removes the limit; a `secret` replaces the stored credential.
    """

    model_config = _Strict

    name: Name | None = None
    endpoint: Endpoint | None = None
    format: ExportFormat | None = None
    options: (
        Annotated[
            dict[Annotated[str, Field(max_length=64)], OptionValue | None], Field(max_length=64)
        ]
        | None
    ) = None
    filters: FilterSchema | None = None
    rate_limit: RateLimitSchema | None = None
    enabled: bool | None = None
    secret: Secret | None = None


class DestinationPublic(BaseModel):
    """A destination as the API shows it: never its credential, only whether it has one."""

    id: UUID
    tenant_id: UUID
    name: str
    delivery_type: DeliveryType
    format: ExportFormat
    endpoint: str
    options: dict[str, Any]
    filters: FilterSchema
    rate_limit: RateLimitSchema | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the worker switched the destination off (its endpoint said it is"
        " gone); cleared when it is enabled again."
    )
    has_secret: bool
    created_at: datetime
    updated_at: datetime


class TestStepPublic(BaseModel):
    """One step of a destination test: `resolve`, `connect`, `tls`, `authenticate`, ..."""

    step: str
    ok: bool
    detail: str


class TestReport(BaseModel):
    """The outcome of a destination test: `ok` when every step passed."""

    ok: bool
    steps: list[TestStepPublic]


class DestinationHealth(BaseModel):
    """How delivery to one destination is going."""

    destination_id: UUID
    tenant_id: UUID
    name: str
    enabled: bool
    status: Literal["ok", "failing"]
    circuit_state: Literal["closed", "open", "half_open"]
    circuit_reason: str | None
    successes: int
    failures: int
    consecutive_failures: int
    last_success: datetime | None
    last_failure: datetime | None
    last_error: str | None
    lag_events: int
    lag_seconds: float
    throughput_eps: float
    dead_letters: int
    rate_limit: RateLimitSchema | None = Field(
        description="The rate limit that applies to the destination; null: none."
    )
    disabled_reason: str | None = Field(
        description="Why the worker switched the destination off, if it did."
    )
    possibly_lost: int = Field(
        description="Records a syslog receiver's TCP acknowledged that could be neither"
        " confirmed read nor sent again (the TCP loss window)."
    )
    truncated: int = Field(description="UDP messages sent cut to fit (option truncate).")
    retention_held_since: datetime | None = Field(
        default=None,
        description="Since when the destination holds retention back: expired events it has"
        " not delivered yet, or dead letters of them, are kept (null: it holds nothing).",
    )
    retention_held_events: int = Field(
        default=0, description="How many expired events it held at the last retention run."
    )


class TenantHealth(BaseModel):
    """A tenant's delivery health: `failing` when any enabled destination is failing."""

    tenant_id: UUID
    status: Literal["ok", "failing"]
    destinations: list[DestinationHealth]


class ServiceHealth(BaseModel):
    """Liveness of the service and its store."""

    status: Literal["ok"]


class DeadLetterPublic(BaseModel):
    """An event the destination refused for good, and why."""

    id: int
    destination_id: UUID
    event_id: UUID
    reason: str
    created_at: datetime


class DeadLetterPage(BaseModel):
    """Dead letters, oldest first; pass `next_after_id` as `after_id` for the next page."""

    items: list[DeadLetterPublic]
    next_after_id: int | None


class QuarantinedPublic(BaseModel):
    """A line ingest could not take as an event, or an event that came again with different
    content (`reason` starts with `conflict`); `raw` only when one entry is asked for."""

    id: int
    tenant_id: UUID | None
    event_id: UUID | None
    reason: str
    source: str
    raw_bytes: int
    received_at: datetime
    raw: str | None = None


class QuarantinePage(BaseModel):
    """Quarantined entries, oldest first; pass `next_after_id` as `after_id` for the next."""

    items: list[QuarantinedPublic]
    next_after_id: int | None


class DeadLetterSelection(BaseModel):
    """Which dead letters to replay or purge: `ids`, or every one when left out."""

    model_config = _Strict

    ids: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, max_length=10_000)


class ReplayResult(BaseModel):
    """How many dead letters were queued to be sent again."""

    queued: int


class PurgeResult(BaseModel):
    """How many dead letters were deleted."""

    purged: int


# Over-long event values are cut, never refused: the schema says so ("x-normalised")
# instead of declaring a maxLength the server does not enforce.
_Text = Annotated[
    str, Field(json_schema_extra={"x-normalised": f"cut to {MAX_TEXT_CHARS:,} characters"})
]
_EventType = Annotated[
    str,
    Field(
        min_length=1,
        json_schema_extra={"x-normalised": f"cut to {MAX_EVENT_TYPE_CHARS:,} characters"},
    ),
]
_METADATA_CUT: Final = (
    f"cut to its first {MAX_METADATA_ENTRIES:,} entries and {MAX_METADATA_CHARS:,} "
    "characters of keys and values"
)
# Each kind of event field in the API: its type, and what its schema says besides.
_EVENT_IN_TYPES: Final[dict[FieldKind, tuple[Any, dict[str, Any]]]] = {
    FieldKind.UUID: (UUID, {}),
    FieldKind.TENANT: (UUID, {}),
    FieldKind.TIMESTAMP: (datetime, {"description": "ISO 8601 with a UTC offset"}),
    FieldKind.CATEGORY: (EventCategory, {}),
    FieldKind.SEVERITY: (int, {"ge": 0, "le": 10}),
    FieldKind.OUTCOME: (Outcome, {}),
    FieldKind.IP: (
        str,
        {
            "description": "IPv4 or IPv6 address",
            "json_schema_extra": {"x-normalised": "anything else is kept in source_address"},
        },
    ),
    FieldKind.METADATA: (dict[str, str], {"json_schema_extra": {"x-normalised": _METADATA_CUT}}),
    FieldKind.NAMES: (
        list[str],
        {"description": "the fields ingest normalised (sorted); ingest adds its own"},
    ),
}


def _event_in_field(field: EventField) -> tuple[Any, Any]:
    """`field` in `AuditEventIn`: required as in the model, but for the tenant (the path's)."""
    annotation: Any
    extra: dict[str, Any]
    if field.kind is FieldKind.TEXT:
        annotation, extra = (_EventType if field.required else _Text), {}
    else:
        annotation, extra = _EVENT_IN_TYPES[field.kind]
    if field.required and field.kind is not FieldKind.TENANT:
        return annotation, Field(**extra) if extra else ...
    return annotation | None, Field(default=None, **extra)


_EVENT_IN_FIELDS: Final[dict[str, Any]] = {f.name: _event_in_field(f) for f in EVENT_FIELDS}
AuditEventIn: Final[type[BaseModel]] = create_model(
    "AuditEventIn",
    __config__=_Strict,
    __doc__="An audit event as ingested; `tenant_id`, when given, must be the path's tenant.",
    **_EVENT_IN_FIELDS,
)
"""An audit event as ingested, made from the model's field declaration (`EVENT_FIELDS`)."""


class EventBatch(BaseModel):
    """A batch of audit events, each normalised; items that are no event are quarantined."""

    model_config = _Strict

    events: list[AuditEventIn]  # type: ignore[valid-type]  # a model made from EVENT_FIELDS


class IngestResult(BaseModel):
    """How many events the batch stored, how many were already stored with the same content
    (skipped), how many came with a stored id but other content (conflicts) and how many
    items were no event: both kept in the tenant's quarantine. `errors`: the first reasons."""

    stored: int
    duplicates: int
    conflicts: int
    quarantined: int
    errors: list[str]


class AuditEventPublic(BaseModel):
    """A stored audit event in its JSON form (absent fields left out)."""

    model_config = ConfigDict(extra="allow")

    event_id: UUID
    tenant_id: UUID
    timestamp: datetime
    event_type: str
    category: EventCategory
    severity: int


class EventPage(BaseModel):
    """Events in time order; pass `next` as `after` to continue (null: nothing more)."""

    events: list[AuditEventPublic]
    next: str | None


class ExportCreate(BaseModel):
    """A batch export of the tenant's events of `[start, end)`.

    Without `destination` the events go to a file the service names (CSV unless `format`
    says otherwise), downloadable with its manifest once the job completed. With
    `destination` (a name or id) they are delivered there, in the destination's format.
    """

    model_config = _Strict

    start: AwareDatetime
    end: AwareDatetime
    destination: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    format: ExportFormat | None = None
    filters: FilterSchema | None = None
    options: Options = Field(default_factory=dict)


class ExportJobPublic(BaseModel):
    """A batch export job: where it stands. `target` is the file's name or the destination id."""

    id: UUID
    tenant_id: UUID
    target_kind: Literal["file", "destination"]
    target: str
    format: ExportFormat
    options: dict[str, Any]
    start: datetime
    end: datetime
    filters: FilterSchema
    status: JobStatus
    exported: int
    estimated_total: int | None
    dead_lettered: int
    error: str | None
    cancel_requested: bool
    first_event_id: UUID | None
    last_event_id: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    downloadable: bool
