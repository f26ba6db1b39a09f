"""Sources: tables of the identity provider's own database that the worker tails.

`sources` holds one row per source: its name, the peer's origin and the connection string
sealed for it, the table, the column mapping and order columns, and its cursor and state.
Sources are the platform's (their rows are any tenant's events), so the table has no
row-level security, like `leases` and `workers`. On PostgreSQL only the worker's group role
may touch it: the API's role (`xavyo_siem_service`) has no business with sealed connection
strings, so the default grant it received is taken back.

Revision ID: 0011_sources
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE

revision = "0011_sources"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False, unique=True),
        sa.Column("source_type", sa.String(32), nullable=False),
        sa.Column("peer", sa.Text(), nullable=False),
        sa.Column("sealed_dsn", sa.Text(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("mapping", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("cursor_xid", sa.BigInteger(), nullable=False),
        sa.Column("cursor_seq", sa.BigInteger(), nullable=False),
        sa.Column("events_read", sa.BigInteger(), nullable=False),
        sa.Column("quarantined", sa.BigInteger(), nullable=False),
        sa.Column("synced_us", sa.BigInteger()),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_error_us", sa.BigInteger()),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"REVOKE ALL ON sources FROM {SERVICE_ROLE}")
        bind.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON sources TO {WORKER_ROLE}")


def downgrade() -> None:
    op.drop_table("sources")
