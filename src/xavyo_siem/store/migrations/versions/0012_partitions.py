"""Audit events partitioned by the time the store received them; retention policies.

Every event gains `received_us`. On PostgreSQL `audit_events` becomes a table partitioned
by it (declarative partitioning, one partition per UTC day, `store/partitions.py`), made
from the populated table without copying it: the table is renamed `audit_events_p0`, its
events are given the migration's time as their received time (a constant default, which
writes nothing), and it is attached as the partition of everything received before the
migration. Its order, `(txid, seq)`, is unchanged; the sequence continues after its
largest `seq`. A partitioned table's unique keys must contain the partition key, so
`(tenant_id, event_id)` is kept unique by `audit_event_keys` (filled from the events here),
and the events keep a plain index on it for reads by id. `audit_partitions` lists the
partitions; functions with the owner's rights make them and list the tenants in them
(retention's, which detach and drop them, are migration 0014's). On SQLite `audit_events`
stays one table and gains the column. Both backends gain
`retention_policies` and `retention_holds`.

Revision ID: 0012_partitions
Revises: 0011_sources
"""

import sqlalchemy as sa
from alembic import op

from xavyo_siem.store.partitions import (
    MAKE_PARTITIONS,
    PARTITION_TENANTS,
    create_partition_functions,
)
from xavyo_siem.store.scope import create_roles, protect_table, unprotect_table

revision = "0012_partitions"
down_revision = "0011_sources"
branch_labels = None
depends_on = None

_NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
_INDEXES = (
    ("ix_audit_events_tenant_order", "(tenant_id, txid, seq)"),
    ("ix_audit_events_tenant_time", "(tenant_id, ts_us, seq)"),
    ("ix_audit_events_order", "(txid, seq) WHERE txid >= 0"),
)
_NEW_TENANT_TABLES = ("audit_event_keys", "retention_policies", "retention_holds")


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    now_us = int(bind.exec_driver_sql(f"SELECT {_NOW_US}" if postgres else "SELECT 0").scalar_one())
    if postgres:
        _partition_events(bind, now_us)
    else:
        import time

        with op.batch_alter_table("audit_events") as batch:
            batch.add_column(
                sa.Column(
                    "received_us",
                    sa.BigInteger(),
                    nullable=False,
                    server_default=str(time.time_ns() // 1000),
                )
            )
        # Empty on SQLite (`audit_events` is unique on the key itself); there so that the
        # same code counts and purges a tenant's rows on both backends.
        op.create_table(
            "audit_event_keys",
            sa.Column("tenant_id", sa.String(36), primary_key=True),
            sa.Column("event_id", sa.String(36), primary_key=True),
            sa.Column("received_us", sa.BigInteger(), nullable=False),
        )
    seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "retention_policies",
        sa.Column("id", seq, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), unique=True),  # NULL: the platform's policy
        sa.Column("keep_s", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "retention_holds",
        sa.Column("id", seq, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("held_events", sa.BigInteger(), nullable=False),
        sa.Column("since_us", sa.BigInteger(), nullable=False),
        sa.Column("checked_us", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("tenant_id", "holder", name="uq_retention_holds_holder"),
        sqlite_autoincrement=True,
    )
    if postgres:
        create_roles(bind)
        for table in _NEW_TENANT_TABLES:
            protect_table(bind, table)


def _partition_events(bind: sa.Connection, now_us: int) -> None:
    run = bind.exec_driver_sql
    run("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
    # Forced row-level security binds an owner that is no superuser too: without this, the
    # reads below would see no tenant's events (no key copied, the order started again).
    run("ALTER TABLE audit_events NO FORCE ROW LEVEL SECURITY")
    next_seq = int(run("SELECT coalesce(max(seq), 0) + 1 FROM audit_events").scalar_one())
    # The table becomes the partition of everything received before now; its policies
    # stay with it, so read directly it is as protected as the partitioned table.
    run("ALTER TABLE audit_events RENAME TO audit_events_p0")
    for name, _ in _INDEXES:
        run(f"ALTER INDEX {name} RENAME TO p0_{name}")
    run("ALTER TABLE audit_events_p0 ALTER COLUMN seq DROP IDENTITY")
    run(f"ALTER TABLE audit_events_p0 ADD COLUMN received_us bigint NOT NULL DEFAULT {now_us - 1}")
    run("ALTER TABLE audit_events_p0 ALTER COLUMN received_us DROP DEFAULT")
    run(
        "CREATE TABLE audit_events (LIKE audit_events_p0 INCLUDING DEFAULTS)"
        " PARTITION BY RANGE (received_us)"
    )
    run(
        "ALTER TABLE audit_events ALTER COLUMN seq ADD GENERATED BY DEFAULT AS IDENTITY"
        f" (START WITH {next_seq})"
    )
    run(f"ALTER TABLE audit_events ALTER COLUMN received_us SET DEFAULT {_NOW_US}")
    for name, columns in _INDEXES:
        run(f"CREATE INDEX {name} ON audit_events {columns}")
    run("CREATE INDEX ix_audit_events_tenant_event ON audit_events (tenant_id, event_id)")
    # The check proves the partition's range, so attaching it needs no second scan.
    run(f"ALTER TABLE audit_events_p0 ADD CONSTRAINT p0_received CHECK (received_us < {now_us})")
    run(
        "ALTER TABLE audit_events ATTACH PARTITION audit_events_p0"
        f" FOR VALUES FROM (MINVALUE) TO ({now_us})"
    )
    run("ALTER TABLE audit_events_p0 DROP CONSTRAINT p0_received")
    run(
        "CREATE TABLE audit_event_keys (tenant_id varchar(36) NOT NULL,"
        " event_id varchar(36) NOT NULL, received_us bigint NOT NULL)"
    )
    run(
        "INSERT INTO audit_event_keys (tenant_id, event_id, received_us)"
        " SELECT tenant_id, event_id, received_us FROM audit_events_p0"
    )
    run("ALTER TABLE audit_events_p0 FORCE ROW LEVEL SECURITY")
    run("ALTER TABLE audit_event_keys ADD PRIMARY KEY (tenant_id, event_id)")
    run("CREATE INDEX ix_audit_event_keys_received ON audit_event_keys USING brin (received_us)")
    run("ALTER TABLE audit_events_p0 DROP CONSTRAINT uq_audit_events_tenant_event")
    op.create_table(
        "audit_partitions",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("from_us", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("to_us", sa.BigInteger(), nullable=False),
        sa.Column("txid_ceiling", sa.BigInteger()),
    )
    # Nothing writes into the old table any more (it is locked until this commits), so
    # every row it holds is below this transaction's id: its ceiling.
    run(
        "INSERT INTO audit_partitions (name, from_us, to_us, txid_ceiling)"
        f" VALUES ('audit_events_p0', {-(1 << 63)}, {now_us},"
        " (pg_current_xact_id()::text)::bigint)"
    )
    protect_table(bind, "audit_events")
    create_roles(bind)
    create_partition_functions(bind)
    run(f"SELECT {MAKE_PARTITIONS}({now_us} + 172800000000)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in _NEW_TENANT_TABLES:
            unprotect_table(bind, table)
    op.drop_table("retention_holds")
    op.drop_table("retention_policies")
    if bind.dialect.name != "postgresql":
        op.drop_table("audit_event_keys")
        with op.batch_alter_table("audit_events") as batch:
            batch.drop_column("received_us")
        return
    run = bind.exec_driver_sql
    # Back to one table: the events are copied out of the partitions.
    run("ALTER TABLE audit_events RENAME TO audit_events_partitioned")
    for name, _ in _INDEXES:
        run(f"ALTER INDEX {name} RENAME TO partitioned_{name}")
    run("ALTER INDEX ix_audit_events_tenant_event RENAME TO partitioned_ix_tenant_event")
    run("CREATE TABLE audit_events (LIKE audit_events_partitioned INCLUDING DEFAULTS)")
    run("ALTER TABLE audit_events DROP COLUMN received_us")
    columns = ", ".join(
        row[0]
        for row in run(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'audit_events' AND table_schema = current_schema()"
            " ORDER BY ordinal_position"
        )
    )
    run(
        f"INSERT INTO audit_events ({columns}) SELECT {columns}"
        " FROM audit_events_partitioned ORDER BY txid, seq"
    )
    next_seq = int(run("SELECT coalesce(max(seq), 0) + 1 FROM audit_events").scalar_one())
    run(
        "ALTER TABLE audit_events ALTER COLUMN seq ADD GENERATED BY DEFAULT AS IDENTITY"
        f" (START WITH {next_seq})"
    )
    run("ALTER TABLE audit_events ADD PRIMARY KEY (seq)")
    run(
        "ALTER TABLE audit_events ADD CONSTRAINT uq_audit_events_tenant_event"
        " UNIQUE (tenant_id, event_id)"
    )
    for name, columns in _INDEXES:
        run(f"CREATE INDEX {name} ON audit_events {columns}")
    run("DROP TABLE audit_events_partitioned CASCADE")
    run("DROP TABLE audit_event_keys")
    run("DROP TABLE audit_partitions")
    for function in (
        f"{MAKE_PARTITIONS}(bigint)",
        "xavyo_siem_drop_partition(text)",  # where migration 0014's downgrade put it back
        f"{PARTITION_TENANTS}(bigint, bigint)",
    ):
        run(f"DROP FUNCTION IF EXISTS {function}")
    protect_table(bind, "audit_events")
    create_roles(bind)
