"""Row-level security: every tenant table checks the tenant a second time on PostgreSQL.

Leases carry their destination's tenant: the workers' policies and the change feed read
the tenants a worker serves from `leases` alone. On PostgreSQL, the migration creates the
group roles `xavyo_siem_service` and `xavyo_siem_worker` (NOLOGIN) unless they exist,
grants them the tables, and enables and forces row-level security on each tenant table
with its policies (`store/scope.py`: `protect_table`, which a later migration that adds a
tenant table or a partition of one calls too). Tables the same owner creates later in the
schema are granted to the roles by default. SQLite has no row-level security.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from xavyo_siem.store.scope import (
    ANALYZE_LEASES,
    FEED_MARK,
    SERVICE_ROLE,
    WORKER_ROLE,
    create_functions,
    create_roles,
    protect_table,
    unprotect_table,
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The tenant tables this migration protects (later migrations protect the ones they add).
TENANT_TABLES = ("audit_events", "destinations", "destination_state", "dead_letters", "export_jobs")
_DEFAULT_GRANTS = f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {SERVICE_ROLE}, {WORKER_ROLE}"
_DEFAULT_SEQUENCES = f"GRANT USAGE, SELECT ON SEQUENCES TO {SERVICE_ROLE}, {WORKER_ROLE}"


def upgrade() -> None:
    # Leases carry their destination's tenant: the change feed and the workers' policies
    # find the tenants a worker serves in `leases` alone.
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(36), nullable=False, server_default=""))
    op.execute(
        "UPDATE leases SET tenant_id = (SELECT d.tenant_id FROM destinations d"
        " WHERE d.id = leases.destination_id)"
    )
    with op.batch_alter_table("leases") as batch:
        batch.alter_column("tenant_id", server_default=None)
        batch.create_index("ix_leases_tenant_owner", ["tenant_id", "owner"])
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    create_roles(bind)
    schema = bind.exec_driver_sql("SELECT current_schema()").scalar_one()
    for grant in (_DEFAULT_GRANTS, _DEFAULT_SEQUENCES):
        bind.exec_driver_sql(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" {grant}')
    for table in TENANT_TABLES:
        protect_table(bind, table)
    create_functions(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in TENANT_TABLES:
            unprotect_table(bind, table)
        bind.exec_driver_sql(f"DROP FUNCTION {FEED_MARK}(bigint, bigint)")
        bind.exec_driver_sql(f"DROP FUNCTION {ANALYZE_LEASES}()")
        schema = bind.exec_driver_sql("SELECT current_schema()").scalar_one()
        for grant in (_DEFAULT_GRANTS, _DEFAULT_SEQUENCES):
            revoke = grant.replace("GRANT", "REVOKE", 1).replace(" TO ", " FROM ")
            bind.exec_driver_sql(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" {revoke}')
    with op.batch_alter_table("leases") as batch:
        batch.drop_index("ix_leases_tenant_owner")
        batch.drop_column("tenant_id")
