"""Batch export jobs: a tenant's time range to a file or a destination, resumable.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),  # file | destination
        sa.Column("target", sa.Text(), nullable=False),  # an absolute path, or a destination id
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),  # JSON object (format options)
        sa.Column("start_us", sa.BigInteger(), nullable=False),  # [start, end) on the event time
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),  # JSON object (EventFilter.to_dict)
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exported", sa.BigInteger(), nullable=False),
        sa.Column("estimated_total", sa.BigInteger()),
        sa.Column("dead_lettered", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text()),
        # The events of the job are those stored before it started: txid < snapshot_txid and
        # seq <= snapshot_seq (set when it first starts, kept across resumes).
        sa.Column("snapshot_txid", sa.BigInteger()),
        sa.Column("snapshot_seq", sa.BigInteger()),
        # Checkpoint: the last exported (ts_us, seq), and the bytes of the partial file then.
        sa.Column("checkpoint_ts_us", sa.BigInteger()),
        sa.Column("checkpoint_seq", sa.BigInteger()),
        sa.Column("checkpoint_bytes", sa.BigInteger()),
        sa.Column("first_event_id", sa.String(36)),
        sa.Column("last_event_id", sa.String(36)),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        # Which process runs the job until when (a queued job is picked up by `run`); every
        # write of a running job is fenced by its owner.
        sa.Column("owner", sa.Text()),
        sa.Column("lease_expires_us", sa.BigInteger()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("started_us", sa.BigInteger()),
        sa.Column("finished_us", sa.BigInteger()),
    )
    op.create_index("ix_export_jobs_tenant", "export_jobs", ["tenant_id", "created_us"])
    op.create_index("ix_export_jobs_status", "export_jobs", ["status", "created_us"])


def downgrade() -> None:
    op.drop_table("export_jobs")
