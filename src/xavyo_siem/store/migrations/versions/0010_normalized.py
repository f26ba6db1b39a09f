"""What ingest normalised, what it could not take, and what came again different.

`audit_events.source_address` keeps a source that is not an IP address as text, and
`audit_events.normalized` the names of the fields ingest changed (joined by commas, NULL
when none). `quarantine` keeps, verbatim (capped), each input line that could not be an
event at all, and each event that came again under a stored id with different content
(reason `conflict`). Existing events were stored unchanged: both new columns start NULL.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from xavyo_siem.store.scope import protect_table, unprotect_table

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("source_address", sa.Text()))
        batch.add_column(sa.Column("normalized", sa.Text()))
    seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "quarantine",
        sa.Column("id", seq, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36)),  # NULL: the line named no usable tenant
        sa.Column("event_id", sa.String(36)),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("raw_bytes", sa.BigInteger(), nullable=False),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_quarantine_tenant", "quarantine", ["tenant_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        protect_table(op.get_bind(), "quarantine")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        unprotect_table(op.get_bind(), "quarantine")
    op.drop_index("ix_quarantine_tenant", table_name="quarantine")
    op.drop_table("quarantine")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("normalized")
        batch.drop_column("source_address")
