"""Credentials bound to where they go: re-seal each credential under its binding.

Until now a sealed credential (`v1.…`) was authenticated with its tenant and destination
only. From here on (`v2.…`) it is also bound to the destination's delivery type and the
origins it is sent to (`delivery.credential_binding`), and the worker refuses a `v1`
credential. Re-sealing needs the key ring, which a migration does not hold: `db upgrade`
hands one in (`bind_credential`, a `credentials.CredentialBinder`) when the key ring is
configured, and each `v1` row is re-sealed here under the binding its destination has now.
Without it (no key configured; the SQLite store migrating itself on first use) the rows
stay `v1`, marked by that prefix: the worker and `destination test` refuse them, `keys
status` names them, and `keys rotate` binds them. Nothing ever opens a `v1` credential for
sending, so none can be redirected by changing its endpoint.

The schema does not change. Downgrading leaves the `v2` rows as they are (an older version
cannot open them: give those secrets again after a downgrade).

Revision ID: 0006
Revises: 0005
"""

import logging
from uuid import UUID

import orjson
import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("xavyo_siem.store.migrations")


def upgrade() -> None:
    conn = op.get_bind()
    unbound = conn.execute(
        sa.text(
            "SELECT tenant_id, id, delivery_type, endpoint, options, secret"
            " FROM destinations WHERE secret LIKE 'v1.%' ORDER BY tenant_id, id"
        )
    ).all()
    bind = context.config.attributes.get("bind_credential")
    if bind is None:
        if unbound:
            log.warning(
                "%d credential(s) are not yet bound to their endpoint; the worker refuses"
                " them until `xavyo-siem keys rotate` binds them",
                len(unbound),
            )
        return
    for tenant_id, ident, delivery_type, endpoint, options, sealed in unbound:
        fresh = bind(
            UUID(str(tenant_id)),
            UUID(str(ident)),
            delivery_type,
            endpoint,
            orjson.loads(options),
            sealed,
        )
        if fresh is not None:
            conn.execute(
                sa.text("UPDATE destinations SET secret = :fresh WHERE id = :id AND secret = :old"),
                {"fresh": fresh, "id": ident, "old": sealed},
            )


def downgrade() -> None:
    pass
