"""Audit events, ordered so that a reader never skips one.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    txid_default = sa.text("(pg_current_xact_id()::text)::bigint") if postgres else sa.text("0")
    seq_column = (
        sa.Column("seq", sa.BigInteger(), sa.Identity(), primary_key=True)
        if postgres
        else sa.Column("seq", sa.Integer(), primary_key=True)
    )
    op.create_table(
        "audit_events",
        seq_column,
        sa.Column("txid", sa.BigInteger(), nullable=False, server_default=txid_default),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("severity", sa.SmallInteger(), nullable=False),
        sa.Column("event_name", sa.Text()),
        sa.Column("action", sa.Text()),
        sa.Column("outcome", sa.String(16)),
        sa.Column("actor_id", sa.Text()),
        sa.Column("actor_email", sa.Text()),
        sa.Column("source_ip", sa.Text()),
        sa.Column("user_agent", sa.Text()),
        sa.Column("target_user", sa.Text()),
        sa.Column("target_resource", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("session_id", sa.Text()),
        sa.Column("request_id", sa.Text()),
        sa.Column("metadata", sa.Text()),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_audit_events_tenant_event"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_events_tenant_order", "audit_events", ["tenant_id", "txid", "seq"])
    op.create_index("ix_audit_events_tenant_time", "audit_events", ["tenant_id", "ts_us", "seq"])


def downgrade() -> None:
    op.drop_table("audit_events")
