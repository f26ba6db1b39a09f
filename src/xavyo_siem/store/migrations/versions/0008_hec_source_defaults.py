"""Splunk HEC destinations keep the source and sourcetype they sent before defaults existed.

New HEC destinations send `source=xavyo-siem` and `sourcetype=xavyo:identity:events` unless
they set their own. Destinations stored before sent neither (the token's defaults applied);
so that their events do not silently change sourcetype in their SIEM, each of them without
its own `source` or `sourcetype` gets the option set to "" (leave it to the token), and the
upgrade says which destinations it kept that way.

Revision ID: 0008
Revises: 0005
"""

import json
import sys

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

_destinations = sa.table(
    "destinations",
    sa.column("id", sa.String),
    sa.column("name", sa.Text),
    sa.column("delivery_type", sa.String),
    sa.column("options", sa.Text),
)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_destinations.c.id, _destinations.c.name, _destinations.c.options).where(
            _destinations.c.delivery_type == "splunk_hec"
        )
    ).all()
    kept = []
    for ident, name, raw in rows:
        options = json.loads(raw)
        missing = [key for key in ("source", "sourcetype") if key not in options]
        if not missing:
            continue
        options.update(dict.fromkeys(missing, ""))
        conn.execute(
            sa.update(_destinations)
            .where(_destinations.c.id == ident)
            .values(options=json.dumps(options, separators=(",", ":")))
        )
        kept.append(f"{name} ({ident}): {', '.join(missing)}")
    if kept:
        print(
            "Splunk HEC destinations stored before the default source and sourcetype keep"
            " sending none (the token's defaults); set them with `destination update"
            " --option sourcetype=xavyo:identity:events` when your searches are ready:\n  "
            + "\n  ".join(kept),
            file=sys.stderr,
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_destinations.c.id, _destinations.c.options).where(
            _destinations.c.delivery_type == "splunk_hec"
        )
    ).all()
    for ident, raw in rows:
        options = json.loads(raw)
        for key in ("source", "sourcetype"):
            if options.get(key) == "":
                del options[key]
        conn.execute(
            sa.update(_destinations)
            .where(_destinations.c.id == ident)
            .values(options=json.dumps(options, separators=(",", ":")))
        )
