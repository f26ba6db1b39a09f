"""The store's tables, as SQLAlchemy Core metadata (the migrations create them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["audit_events", "metadata"]

metadata = MetaData()

# `seq` is BIGINT on PostgreSQL; on SQLite it must be INTEGER to alias the rowid.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    # The inserting transaction (PostgreSQL: pg_current_xact_id(); SQLite: always 0, since
    # its single writer commits in seq order). Reads go in (txid, seq) order: see events.py.
    Column("txid", BigInteger, nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("category", String(32), nullable=False),
    Column("severity", SmallInteger, nullable=False),
    Column("event_name", Text),
    Column("action", Text),
    Column("outcome", String(16)),
    Column("actor_id", Text),
    Column("actor_email", Text),
    Column("source_ip", Text),
    Column("user_agent", Text),
    Column("target_user", Text),
    Column("target_resource", Text),
    Column("reason", Text),
    Column("session_id", Text),
    Column("request_id", Text),
    Column("metadata", Text),
    UniqueConstraint("tenant_id", "event_id", name="uq_audit_events_tenant_event"),
    Index("ix_audit_events_tenant_order", "tenant_id", "txid", "seq"),
    Index("ix_audit_events_tenant_time", "tenant_id", "ts_us", "seq"),
    sqlite_autoincrement=True,
)
