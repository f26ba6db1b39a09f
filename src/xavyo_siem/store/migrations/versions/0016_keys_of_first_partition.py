"""The keys of the events stored before partitioning, made again where they were lost
(PostgreSQL).

Until it was mended, migration 0012 copied the keys of the events it moved into the first
partition (`audit_events_p0`) while the events' forced row-level security bound its
reader: run by an owner that is no superuser, it read no event and so made no key. Such a
store does not know those events by id: a read by id misses them, an event sent again is
stored a second time, and one sent again with other content is not kept as a conflict.

Every key that copy made carries the partition's received time, which is before the end of
the partition's range; every later key, after it. So a store whose first partition holds
events and whose key table holds no key received before that end is such a store. There,
every event of the partition gets its key, with where it is (`txid`, `seq`,
`received_us`); an event stored again since keeps the key of its second copy, which a read
by id and ingest go on using. Elsewhere (SQLite, a store whose keys are whole, a first
partition that retention removed already) this changes nothing. The key table is locked
while it is looked at, as migration 0015 locked it, and the repair is logged.

Revision ID: 0016_keys_of_first_partition
Revises: 0015_compact_event_keys
"""

import logging

from alembic import op

from xavyo_siem.store.scope import MARKS_SETTING

revision = "0016_keys_of_first_partition"
down_revision = "0015_compact_event_keys"
branch_labels = None
depends_on = None

log = logging.getLogger("xavyo_siem.store.migrations")

_FIRST = "audit_events_p0"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    run = bind.exec_driver_sql
    first_ends = run(
        "SELECT to_us FROM audit_partitions WHERE name = %s AND to_regclass(%s) IS NOT NULL",
        (_FIRST, _FIRST),
    ).scalar()
    if first_ends is None:  # retention removed it, keys and all
        return
    # Both tables' policies are forced, and would hide every row from an owner that is no
    # superuser: the key table is unforced while it is locked, the partition is read with
    # the owner's own policy (`feed_marks`, see store/scope.py).
    run("LOCK TABLE audit_event_keys IN ACCESS EXCLUSIVE MODE")
    run("ALTER TABLE audit_event_keys NO FORCE ROW LEVEL SECURITY")
    run(f"SELECT set_config('{MARKS_SETTING}', 'on', true)")
    lost = run(
        f"SELECT EXISTS (SELECT FROM {_FIRST})"
        " AND NOT EXISTS (SELECT FROM audit_event_keys WHERE received_us < %s)",
        (first_ends,),
    ).scalar()
    if lost:
        made = run(
            "INSERT INTO audit_event_keys (tenant_id, event_id, received_us, txid, seq)"
            " SELECT tenant_id::uuid, event_id::uuid, received_us, txid, seq"
            f" FROM {_FIRST} ORDER BY 1, 2"
            " ON CONFLICT (tenant_id, event_id) DO NOTHING"
        ).rowcount
        log.warning("the first partition's events had no keys: made %d", made)
        run("ANALYZE audit_event_keys")
    run(f"SELECT set_config('{MARKS_SETTING}', '', true)")
    run("ALTER TABLE audit_event_keys FORCE ROW LEVEL SECURITY")


def downgrade() -> None:
    """Nothing to undo: the keys made are those the store should have had."""
