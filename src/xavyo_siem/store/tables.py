"""The store's tables, as SQLAlchemy Core metadata (the migrations create them).

`audit_events` holds one column per field of `AuditEvent`, made from the model's field
declaration (`EVENT_FIELDS`): its type follows the field's kind, and `EVENT_COLUMN_NAMES`
lists the columns in the declaration's order, which is the order the store reads and writes
them in. A new event field needs a migration that adds its column; nothing here changes.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from xavyo_siem.model import EVENT_FIELDS, EventField, FieldKind

__all__ = [
    "EVENT_COLUMN_NAMES",
    "api_tokens",
    "audit_event_keys",
    "audit_events",
    "audit_partitions",
    "dead_letters",
    "destination_state",
    "destinations",
    "detached_partitions",
    "export_jobs",
    "leases",
    "metadata",
    "quarantine",
    "retention_holds",
    "retention_policies",
    "sources",
    "workers",
]

metadata = MetaData()

# How each kind of event field is stored (metadata: a JSON object, NULL when empty).
_EVENT_COLUMN_TYPES: Final[dict[FieldKind, type[TypeEngine[Any]] | TypeEngine[Any]]] = {
    FieldKind.UUID: String(36),
    FieldKind.TENANT: String(36),
    FieldKind.TIMESTAMP: BigInteger,  # microseconds since the Unix epoch
    FieldKind.TEXT: Text,
    FieldKind.CATEGORY: String(32),
    FieldKind.SEVERITY: SmallInteger,
    FieldKind.OUTCOME: String(16),
    FieldKind.IP: Text,
    FieldKind.METADATA: Text,
    FieldKind.NAMES: Text,  # the names joined by ",", NULL when none (migration 0010)
}
# Where a column's name is not the field's.
_RENAMED: Final = {"timestamp": "ts_us"}

EVENT_COLUMN_NAMES: Final[tuple[str, ...]] = tuple(
    _RENAMED.get(f.name, f.name) for f in EVENT_FIELDS
)
"""The columns of `audit_events` that hold the event's fields, in `EVENT_FIELDS` order."""


def _event_column(field: EventField) -> Column[Any]:
    nullable = field.nullable or field.kind in (FieldKind.METADATA, FieldKind.NAMES)
    name = _RENAMED.get(field.name, field.name)
    return Column(name, _EVENT_COLUMN_TYPES[field.kind], nullable=nullable)


# `seq` is BIGINT on PostgreSQL; on SQLite it must be INTEGER to alias the rowid.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    # The inserting transaction (PostgreSQL: pg_current_xact_id(); SQLite: always 0, since
    # its single writer commits in seq order). Reads go in (txid, seq) order: see events.py.
    Column("txid", BigInteger, nullable=False),
    # When the store received the event (microseconds since the epoch, the database's clock
    # on PostgreSQL): the partition key there (migration 0012, see store/partitions.py).
    Column("received_us", BigInteger, nullable=False),
    *(_event_column(f) for f in EVENT_FIELDS),
    # SQLite's, unique: reads by id and ingest's idempotence. PostgreSQL keeps no index by
    # event id on the events (migration 0015): a partitioned table's unique keys must hold
    # the partition key, so there `audit_event_keys` holds each (tenant_id, event_id) once
    # and says where its event is.
    UniqueConstraint("tenant_id", "event_id", name="uq_audit_events_tenant_event").ddl_if(
        dialect="sqlite"
    ),
    Index("ix_audit_events_tenant_order", "tenant_id", "txid", "seq"),
    Index("ix_audit_events_tenant_time", "tenant_id", "ts_us", "seq"),
    sqlite_autoincrement=True,
)

destinations = Table(
    "destinations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("name", Text, nullable=False),
    Column("delivery_type", String(16), nullable=False),
    Column("format", String(8), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("options", Text, nullable=False),  # JSON object
    Column("filters", Text, nullable=False),  # JSON object (EventFilter.to_dict)
    Column("rate_events_per_s", Float),
    Column("rate_burst", Integer),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", Text),  # why the worker switched it off (endpoint gone)
    Column("secret", Text),  # sealed by xavyo_siem.crypto, never clear text
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_destinations_tenant_name"),
)

# One row per destination: its cursor and its health change together, in one UPDATE.
destination_state = Table(
    "destination_state",
    metadata,
    Column(
        "destination_id",
        String(36),
        ForeignKey("destinations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tenant_id", String(36), nullable=False),
    Column("cursor_txid", BigInteger, nullable=False),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("circuit_state", String(16), nullable=False),
    Column("circuit_reason", Text),
    Column("successes", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("consecutive_failures", Integer, nullable=False),
    Column("last_success_us", BigInteger),
    Column("last_failure_us", BigInteger),
    Column("last_error", Text),
    Column("throughput_eps", Float, nullable=False),
    Column("possibly_lost", BigInteger, nullable=False, server_default="0"),
    Column("truncated", BigInteger, nullable=False, server_default="0"),
    Column("updated_us", BigInteger, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), nullable=False),
    Column(
        "destination_id",
        String(36),
        ForeignKey("destinations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", String(36), nullable=False),
    Column("reason", Text, nullable=False),
    Column("replay", Boolean, nullable=False, default=False),  # asked to be sent again
    Column("created_us", BigInteger, nullable=False),
    Index("ix_dead_letters_destination", "tenant_id", "destination_id", "id"),
    sqlite_autoincrement=True,
)

# Which worker owns a destination (while its heartbeat in `workers` is fresh); `epoch` fences
# a worker that lost it. Migration 0005 dropped the per-lease expiry.
leases = Table(
    "leases",
    metadata,
    Column(
        "destination_id",
        String(36),
        ForeignKey("destinations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("owner", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    # The destination's tenant (migration 0007): which tenants a worker serves, read without
    # `destinations` (its row-level security would hide the rows from the planner's view).
    Column("tenant_id", String(36), nullable=False),
    Index("ix_leases_tenant_owner", "tenant_id", "owner"),
)

# Running workers (migration 0005): each counts the live ones to take its fair share.
workers = Table(
    "workers",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("started_us", BigInteger, nullable=False),
    Column("heartbeat_us", BigInteger, nullable=False),
)

# Batch export jobs (migration 0003): a tenant's time range to a file or a destination.
export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("target_kind", String(16), nullable=False),  # file | destination
    Column("target", Text, nullable=False),  # an absolute path, or a destination id
    Column("format", String(8), nullable=False),
    Column("options", Text, nullable=False),  # JSON object (format options)
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("filters", Text, nullable=False),  # JSON object (EventFilter.to_dict)
    Column("status", String(16), nullable=False),
    Column("exported", BigInteger, nullable=False),
    Column("estimated_total", BigInteger),
    Column("dead_lettered", BigInteger, nullable=False, server_default="0"),
    Column("error", Text),
    Column("snapshot_txid", BigInteger),
    Column("snapshot_seq", BigInteger),
    Column("checkpoint_ts_us", BigInteger),
    Column("checkpoint_seq", BigInteger),
    Column("checkpoint_bytes", BigInteger),
    Column("first_event_id", String(36)),
    Column("last_event_id", String(36)),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("owner", Text),
    Column("lease_expires_us", BigInteger),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_us", BigInteger, nullable=False),
    Column("started_us", BigInteger),
    Column("finished_us", BigInteger),
    Index("ix_export_jobs_tenant", "tenant_id", "created_us"),
    Index("ix_export_jobs_status", "status", "created_us"),
)

# API tokens (migration 0004): only a SHA-256 hash of each token is kept; NULL tenant_id is a
# platform token, which may act on every tenant.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36)),
    Column("role", String(16), nullable=False),  # admin | viewer
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", Text),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
)

# What ingest could not take (migration 0010): a line that is no event (verbatim, capped),
# or an event sent again under a stored id with different content (reason "conflict").
# NULL tenant_id: the line named no usable tenant, a platform-only row.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("tenant_id", String(36)),
    Column("event_id", String(36)),
    Column("reason", Text, nullable=False),
    Column("source", Text, nullable=False),  # "<file>:<line>" or "api"
    Column("raw", Text, nullable=False),  # the line as received, capped (see store/quarantine)
    Column("raw_bytes", BigInteger, nullable=False),  # the line's whole length
    Column("received_us", BigInteger, nullable=False),
    Index("ix_quarantine_tenant", "tenant_id", "id"),
    sqlite_autoincrement=True,
)

# Tables of the identity provider's database tailed into the store (migration 0011): one row
# per source, platform-wide (no tenant: its rows are any tenant's events). `sealed_dsn` is the
# connection string sealed like a destination's credential; the cursor is the last row read
# in the peer's (xid, seq) order, moved in the transaction that stores the events.
sources = Table(
    "sources",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("source_type", String(32), nullable=False),  # postgres_table
    Column("peer", Text, nullable=False),  # postgresql://host:port, what the DSN is bound to
    Column("sealed_dsn", Text, nullable=False),
    Column("table_name", Text, nullable=False),  # schema.table
    Column("mapping", Text, nullable=False),  # JSON object: field -> column
    Column("options", Text, nullable=False),  # JSON object: xid_column, seq_column, batch_rows
    Column("enabled", Boolean, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("cursor_xid", BigInteger, nullable=False),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("events_read", BigInteger, nullable=False),
    Column("quarantined", BigInteger, nullable=False),
    Column("synced_us", BigInteger),
    Column("failures", Integer, nullable=False),
    Column("last_error", Text),
    Column("last_error_us", BigInteger),
)

# A key's ids: `uuid` on PostgreSQL (16 bytes, migration 0015), text on SQLite (where the
# table stays empty). Both take and give the canonical text.
_KEY_ID = String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")

# Each stored event's (tenant_id, event_id) once, unpartitioned (PostgreSQL, migration 0012):
# what makes ingest idempotent across the partitions of `audit_events`, and where the event
# is (migration 0015): its `(txid, seq)` in the partition of its `received_us`, which is
# how PostgreSQL reads an event by id. Retention removes the keys of the events it removed.
audit_event_keys = Table(
    "audit_event_keys",
    metadata,
    Column("tenant_id", _KEY_ID, primary_key=True),
    Column("event_id", _KEY_ID, primary_key=True),
    Column("received_us", BigInteger, nullable=False),
    Column("txid", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# The partitions of `audit_events` (PostgreSQL, migration 0012): each holds the events
# received in [from_us, to_us). `txid_ceiling`, stamped once the partition is closed (no
# event can be received into it any more), is above the txid of every row it holds: the
# change feed skips a partition whose ceiling is at or below its position.
audit_partitions = Table(
    "audit_partitions",
    metadata,
    Column("name", Text, primary_key=True),
    Column("from_us", BigInteger, nullable=False, unique=True),
    Column("to_us", BigInteger, nullable=False),
    Column("txid_ceiling", BigInteger),
)

# The partitions retention detached from `audit_events` (PostgreSQL, migration 0014) whose
# table (`dropped_us` NULL) or events' keys are still to be removed: no read sees their
# events any more. Written only by the functions of `store/partitions.py`.
detached_partitions = Table(
    "detached_partitions",
    metadata,
    Column("name", Text, primary_key=True),
    Column("from_us", BigInteger, nullable=False),
    Column("to_us", BigInteger, nullable=False),
    Column("detached_us", BigInteger, nullable=False),
    Column("dropped_us", BigInteger),
)

# How long events are kept (migration 0012): one row with tenant_id NULL (the platform's
# policy) and one per tenant that overrides it.
retention_policies = Table(
    "retention_policies",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), unique=True),
    Column("keep_s", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

# What holds retention back (migration 0012), as the last retention run found it: a
# destination that has not delivered expired events (or has dead letters of them), or a
# running export; `since_us` is when it was first found holding.
retention_holds = Table(
    "retention_holds",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), nullable=False),
    Column("holder", Text, nullable=False),  # "destination:<id>" or "export:<id>"
    Column("reason", Text, nullable=False),
    Column("held_events", BigInteger, nullable=False),
    Column("since_us", BigInteger, nullable=False),
    Column("checked_us", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "holder", name="uq_retention_holds_holder"),
    sqlite_autoincrement=True,
)
