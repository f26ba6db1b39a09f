"""Workers and the change feed: registered workers, and the feed's order index.

`workers` holds one row per running worker, with its heartbeat: workers count the live ones
to take about their fair share of destinations, and a lease lasts while its holder's
heartbeat is fresh, so the per-lease expiry goes (renewing thousands of leases was
thousands of rows written every few seconds). On PostgreSQL the change feed walks every
served tenant's new events in `(txid, seq)` order, across tenants, which needs an index of
its own; on SQLite `seq` (the row id) already is that order. The index is partial
(`txid >= 0`, true of every row) so that only a query that says so uses it: the feed's do;
a tenant's reads, which say nothing of it, stay on the tenant's own index, where the
planner would otherwise walk every tenant's rows looking for a quiet tenant's few.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("owner", sa.Text(), primary_key=True),
        sa.Column("started_us", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_us", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("expires_us")
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_audit_events_order",
            "audit_events",
            ["txid", "seq"],
            postgresql_where=sa.text("txid >= 0"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_audit_events_order", "audit_events")
    with op.batch_alter_table("leases") as batch:
        batch.add_column(
            sa.Column("expires_us", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.drop_table("workers")
