"""Destinations, their delivery state (cursor, circuit, health), dead letters and leases.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "destinations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("delivery_type", sa.String(16), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("rate_events_per_s", sa.Float()),
        sa.Column("rate_burst", sa.Integer()),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("secret", sa.Text()),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_destinations_tenant_name"),
    )
    op.create_table(
        "destination_state",
        sa.Column(
            "destination_id",
            sa.String(36),
            sa.ForeignKey("destinations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("cursor_txid", sa.BigInteger(), nullable=False),
        sa.Column("cursor_seq", sa.BigInteger(), nullable=False),
        sa.Column("circuit_state", sa.String(16), nullable=False),
        sa.Column("circuit_reason", sa.Text()),
        sa.Column("successes", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_success_us", sa.BigInteger()),
        sa.Column("last_failure_us", sa.BigInteger()),
        sa.Column("last_error", sa.Text()),
        sa.Column("throughput_eps", sa.Float(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger() if postgres else sa.Integer(),
            *([sa.Identity()] if postgres else []),
            primary_key=True,
        ),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column(
            "destination_id",
            sa.String(36),
            sa.ForeignKey("destinations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("replay", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_dead_letters_destination", "dead_letters", ["tenant_id", "destination_id", "id"]
    )
    op.create_table(
        "leases",
        sa.Column(
            "destination_id",
            sa.String(36),
            sa.ForeignKey("destinations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("dead_letters")
    op.drop_table("destination_state")
    op.drop_table("destinations")
