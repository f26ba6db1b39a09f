"""What a destination's transport could not vouch for, and why the worker switched it off.

`destination_state.possibly_lost` counts records a syslog receiver's TCP acknowledged that
could neither be confirmed read nor sent again; `truncated` counts UDP messages sent cut
(the destination chose `truncate`). `destinations.disabled_reason` says why the worker
switched a destination off (its endpoint answered that it is gone: a webhook's 410, a
disabled HEC token); enabling it again clears it. Existing rows start at 0 and no reason.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("destination_state") as batch:
        batch.add_column(
            sa.Column("possibly_lost", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("truncated", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("destinations") as batch:
        batch.add_column(sa.Column("disabled_reason", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.drop_column("disabled_reason")
    with op.batch_alter_table("destination_state") as batch:
        batch.drop_column("truncated")
        batch.drop_column("possibly_lost")
