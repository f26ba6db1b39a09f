"""The keys of the events stored before partitioning, made again where they were lost
(PostgreSQL).

Until it was mended, migration 0012 copied the keys of the events it moved into the first
partition (`audit_events_p0`) while the events' forced row-level security bound its
reader: run by an owner that is no superuser, it read no event and so made no key. Such a
store does not know those events by id: a read by id misses them, an event sent again is
stored a second time, and one sent again with other content is not kept as a conflict.

The copy either made every key or none, so one event of that partition without its key
tells such a store. There, every event of the partition gets its key, with where it is
(`txid`, `seq`, `received_us`). An event stored again since keeps the key of its second
copy, which a read by id and ingest go on using. Elsewhere (SQLite, a store migrated
whole, a first partition that retention removed already) this changes nothing, after
reading one event and one key.

Revision ID: 0016_keys_of_first_partition
Revises: 0015_compact_event_keys
"""

from alembic import op

from xavyo_siem.store.scope import MARKS_SETTING

revision = "0016_keys_of_first_partition"
down_revision = "0015_compact_event_keys"
branch_labels = None
depends_on = None

_FIRST = "audit_events_p0"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    run = bind.exec_driver_sql
    # Both tables' policies are forced; the owner's own policy (`feed_marks`) lets it read
    # them without a tenant, as migration 0015 read them.
    run(f"SELECT set_config('{MARKS_SETTING}', 'on', true)")
    lost = run(
        "SELECT NOT EXISTS (SELECT FROM audit_event_keys k"
        " WHERE k.tenant_id = e.tenant_id::uuid AND k.event_id = e.event_id::uuid)"
        f" FROM (SELECT tenant_id, event_id FROM {_FIRST} LIMIT 1) e"
        " WHERE EXISTS (SELECT FROM audit_partitions WHERE name = %s)",
        (_FIRST,),
    ).scalar()
    if lost:
        run("LOCK TABLE audit_event_keys IN ACCESS EXCLUSIVE MODE")
        run("ALTER TABLE audit_event_keys NO FORCE ROW LEVEL SECURITY")
        run(
            "INSERT INTO audit_event_keys (tenant_id, event_id, received_us, txid, seq)"
            " SELECT tenant_id::uuid, event_id::uuid, received_us, txid, seq"
            f" FROM {_FIRST} ORDER BY 1, 2"
            " ON CONFLICT (tenant_id, event_id) DO NOTHING"
        )
        run("ALTER TABLE audit_event_keys FORCE ROW LEVEL SECURITY")
        run("ANALYZE audit_event_keys")
    run(f"SELECT set_config('{MARKS_SETTING}', '', true)")


def downgrade() -> None:
    """Nothing to undo: the keys made are those the store should have had."""
