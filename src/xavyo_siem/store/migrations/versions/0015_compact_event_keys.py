"""The event keys say where each event is; the events lose their index by id (PostgreSQL).

Ingest wrote two index entries per event at a random place (event ids are random): the
key in `audit_event_keys` (what keeps ingest idempotent across the partitions) and the
event's entry in `ix_audit_events_tenant_event`, which served reads by id. Every other
index of `audit_events` grows at a few places (each tenant's newest end). Once the two
outgrew the database's cache, nearly every insert read a page of each from disk and
evicted a dirty one: on a 2-core machine with 128 MB of shared buffers, ingest fell from
28,646 to 18,331 events/s over 10 million events. Measured at 4 million events, the
events' index by id was most of that cost (without it, and with the keys inserted in
key order, the last million ran at 0.81-0.83 of the first's speed, against 0.76).

So on PostgreSQL:

* `audit_event_keys` holds `tenant_id` and `event_id` as `uuid` (16 bytes each instead of
  36 characters of text), and where the event is: its `txid` and `seq`, beside the
  `received_us` it had (the partition). A read by id finds the key, then the event through
  the partitions' `(tenant_id, txid, seq)` index, in the one partition of its received
  time. A key whose event is gone already (retention removed the partition, not yet its
  keys) gets the position (0, 0), where no event is.
* `ix_audit_events_tenant_event` is dropped.

The key table is rebuilt, ingest waiting on its lock meanwhile (the feed and deliveries
do not, but for the moment between the index's drop and the commit). The key table's
tenant policy compares with the tenant setting, so it is made
again with the setting cast to `uuid`. The downgrade restores the text ids and the index.
SQLite keeps its unique `(tenant_id, event_id)` on the events (its key table stays empty)
and needs nothing.

Revision ID: 0015_compact_event_keys
Revises: 0014_detached_partitions
"""

from alembic import op
from sqlalchemy import Connection

from xavyo_siem.store.scope import MARKS_SETTING, TENANT_SETTING

revision = "0015_compact_event_keys"
down_revision = "0014_detached_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    run = bind.exec_driver_sql
    run("LOCK TABLE audit_event_keys IN ACCESS EXCLUSIVE MODE")
    # The policies are forced: with no scope set here they would hide every row from an
    # owner that is not a superuser, and the keys, read as none, would be lost. The key
    # table is locked anyway: unforced until it is refilled. The events are read with the
    # owner's own policy (`feed_marks`, see store/scope.py), which locks nothing more.
    run("ALTER TABLE audit_event_keys NO FORCE ROW LEVEL SECURITY")
    run(f"SELECT set_config('{MARKS_SETTING}', 'on', true)")
    # The keys with their events' positions, read while the index by id is still there.
    run(
        "CREATE TEMP TABLE xavyo_event_keys ON COMMIT DROP AS"
        " SELECT k.tenant_id::uuid AS tenant_id, k.event_id::uuid AS event_id, k.received_us,"
        " coalesce(e.txid, 0) AS txid, coalesce(e.seq, 0) AS seq"
        " FROM audit_event_keys k LEFT JOIN audit_events e ON e.tenant_id = k.tenant_id"
        " AND e.event_id = k.event_id AND e.received_us = k.received_us"
    )
    run("TRUNCATE audit_event_keys")
    run("DROP POLICY tenant_scope ON audit_event_keys")
    run(
        "ALTER TABLE audit_event_keys"
        " ALTER COLUMN tenant_id TYPE uuid USING tenant_id::uuid,"
        " ALTER COLUMN event_id TYPE uuid USING event_id::uuid,"
        " ADD COLUMN txid bigint NOT NULL, ADD COLUMN seq bigint NOT NULL"
    )
    run(
        "INSERT INTO audit_event_keys (tenant_id, event_id, received_us, txid, seq)"
        " SELECT tenant_id, event_id, received_us, txid, seq FROM xavyo_event_keys"
        " ORDER BY tenant_id, event_id"
    )
    run(f"SELECT set_config('{MARKS_SETTING}', '', true)")
    _tenant_scope(bind, "::uuid")
    run("ALTER TABLE audit_event_keys FORCE ROW LEVEL SECURITY")
    run("ANALYZE audit_event_keys")
    run("DROP INDEX ix_audit_events_tenant_event")  # locks the events until the commit


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    run = bind.exec_driver_sql
    run("CREATE INDEX ix_audit_events_tenant_event ON audit_events (tenant_id, event_id)")
    run("DROP POLICY tenant_scope ON audit_event_keys")
    run(
        "ALTER TABLE audit_event_keys DROP COLUMN txid, DROP COLUMN seq,"
        " ALTER COLUMN tenant_id TYPE varchar(36) USING tenant_id::text,"
        " ALTER COLUMN event_id TYPE varchar(36) USING event_id::text"
    )
    _tenant_scope(bind, "")


def _tenant_scope(bind: Connection, cast: str) -> None:
    """The key table's tenant policy (as `store.scope` makes it), the setting cast to the
    type of the table's `tenant_id`."""
    tenant = f"(SELECT NULLIF(current_setting('{TENANT_SETTING}', true), ''){cast})"
    bind.exec_driver_sql(
        f"CREATE POLICY tenant_scope ON audit_event_keys USING (tenant_id = {tenant})"
        f" WITH CHECK (tenant_id = {tenant})"
    )
