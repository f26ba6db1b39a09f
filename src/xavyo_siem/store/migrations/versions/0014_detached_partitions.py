"""Retention removes a partition in two steps (PostgreSQL).

`detached_partitions` lists the partitions retention detached from `audit_events` whose
table or events' keys are still to be removed; three functions with the owner's rights,
for `xavyo_siem_worker`, detach a partition, drop a detached table and forget it
(`store/partitions.py`). They replace `xavyo_siem_drop_partition`, which dropped a
partition in one transaction. Workers may read the list; only the functions write it.
SQLite has no partitions and needs nothing.

Revision ID: 0014_detached_partitions
Revises: 0013_fleet_health
"""

import sqlalchemy as sa
from alembic import op

from xavyo_siem.store.partitions import create_detach_functions, drop_detach_functions
from xavyo_siem.store.scope import SERVICE_ROLE, WORKER_ROLE

revision = "0014_detached_partitions"
down_revision = "0013_fleet_health"
branch_labels = None
depends_on = None

# The function migration 0012 made in a store migrated before this revision (the downgrade
# puts it back).
_DROP_PARTITION = (
    "CREATE OR REPLACE FUNCTION xavyo_siem_drop_partition(part text) RETURNS boolean"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$\n"
    "BEGIN\n"
    "  PERFORM pg_advisory_xact_lock(hashtext('xavyo_siem.partitions'));\n"
    "  IF NOT EXISTS (SELECT FROM audit_partitions WHERE name = part) THEN\n"
    "    RETURN false;\n"
    "  END IF;\n"
    "  SET LOCAL lock_timeout = '2s';\n"
    "  EXECUTE format('DROP TABLE %%I', part);\n"
    "  DELETE FROM audit_partitions WHERE name = part;\n"
    "  RETURN true;\n"
    "END $$"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.create_table(
        "detached_partitions",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("from_us", sa.BigInteger(), nullable=False),
        sa.Column("to_us", sa.BigInteger(), nullable=False),
        sa.Column("detached_us", sa.BigInteger(), nullable=False),
        sa.Column("dropped_us", sa.BigInteger()),
    )
    # The schema's default privileges (migration 0007) granted both roles every write.
    bind.exec_driver_sql(f"REVOKE ALL ON detached_partitions FROM {SERVICE_ROLE}, {WORKER_ROLE}")
    bind.exec_driver_sql(f"GRANT SELECT ON detached_partitions TO {WORKER_ROLE}")
    create_detach_functions(bind)
    # Made by migration 0012 in a store migrated before this revision existed.
    bind.exec_driver_sql("DROP FUNCTION IF EXISTS xavyo_siem_drop_partition(text)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # A table detached and not dropped yet would be left behind: drop it now.
    for (name,) in bind.exec_driver_sql(
        "SELECT name FROM detached_partitions WHERE dropped_us IS NULL"
    ).all():
        bind.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
    drop_detach_functions(bind)
    op.drop_table("detached_partitions")
    bind.exec_driver_sql(_DROP_PARTITION)
    bind.exec_driver_sql("REVOKE ALL ON FUNCTION xavyo_siem_drop_partition(text) FROM PUBLIC")
    bind.exec_driver_sql(
        f"GRANT EXECUTE ON FUNCTION xavyo_siem_drop_partition(text) TO {WORKER_ROLE}"
    )
