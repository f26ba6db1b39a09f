"""The platform's view of every destination's health on PostgreSQL.

The API's role (`xavyo_siem_service`) reads one tenant at a time under row-level security.
`xavyo_siem_fleet_health(tenant, lag_cap)` gives it every tenant's destinations' health
columns and nothing else (no endpoint, option, filter or credential, no event), with its
owner's rights; only the service role may execute it. The owner is bound by the policies
too, so `destinations`, `destination_state` and `dead_letters` gain a `fleet_health`
policy that lets the owner read them while the function runs (`store/fleet.py`). SQLite
has no row-level security and needs nothing.

Revision ID: 0013_fleet_health
Revises: 0012_partitions
"""

from alembic import op

from xavyo_siem.store.fleet import create_fleet_function, drop_fleet_function

revision = "0013_fleet_health"
down_revision = "0012_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        create_fleet_function(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        drop_fleet_function(bind)
