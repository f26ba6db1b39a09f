"""Destinations stored before new delivery defaults keep behaving as they did, and are named.

Two defaults changed for new destinations:

* Splunk HEC sends `source=xavyo-siem` and `sourcetype=xavyo:identity:events` unless told
  otherwise. HEC destinations stored before sent neither (the token's defaults applied); so
  that their events do not silently change sourcetype in their SIEM, each one without its own
  `source` or `sourcetype` gets the option set to "" (leave it to the token).
* Syslog over UDP refuses a record longer than the datagram to dead letters unless
  `truncate=true`. UDP destinations stored before sent such records cut; they get
  `truncate=true`, so they keep doing so (now counted and logged).

The upgrade prints which destinations it kept that way and how to take the new default.

Revision ID: 0008
Revises: 0007
"""

import json
import sys
from collections.abc import Callable, Mapping

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_destinations = sa.table(
    "destinations",
    sa.column("id", sa.String),
    sa.column("name", sa.Text),
    sa.column("delivery_type", sa.String),
    sa.column("options", sa.Text),
)

# delivery type: the options it keeps as before, with the value that does so, and the advice
_KEPT: Mapping[str, tuple[Mapping[str, object], str]] = {
    "splunk_hec": (
        {"source": "", "sourcetype": ""},
        "Splunk HEC destinations keep sending no source and sourcetype (the token's"
        " defaults); `destination update --option sourcetype=xavyo:identity:events"
        " --option source=xavyo-siem` takes the new defaults once your searches are ready",
    ),
    "syslog_udp": (
        {"truncate": True},
        "syslog UDP destinations keep sending records longer than a datagram cut"
        " (truncate=true); `destination update --option truncate=` sends them to dead"
        " letters instead",
    ),
}


def _rewrite(
    conn: sa.Connection, kind: str, change: Callable[[dict[str, object]], list[str]]
) -> list[str]:
    """Apply `change(options) -> names changed` to every destination of `kind`."""
    rows = conn.execute(
        sa.select(_destinations.c.id, _destinations.c.name, _destinations.c.options).where(
            _destinations.c.delivery_type == kind
        )
    ).all()
    touched = []
    for ident, name, raw in rows:
        options = json.loads(raw)
        names = change(options)
        if not names:
            continue
        conn.execute(
            sa.update(_destinations)
            .where(_destinations.c.id == ident)
            .values(options=json.dumps(options, separators=(",", ":")))
        )
        touched.append(f"{name} ({ident}): {', '.join(names)}")
    return touched


def upgrade() -> None:
    conn = op.get_bind()
    for kind, (kept, advice) in _KEPT.items():

        def keep(options: dict[str, object], kept: Mapping[str, object] = kept) -> list[str]:
            missing = [key for key in kept if key not in options]
            options.update({key: kept[key] for key in missing})
            return missing

        touched = _rewrite(conn, kind, keep)
        if touched:
            print(f"{advice}:\n  " + "\n  ".join(touched), file=sys.stderr)


def downgrade() -> None:
    conn = op.get_bind()
    for kind, (kept, _) in _KEPT.items():

        def drop(options: dict[str, object], kept: Mapping[str, object] = kept) -> list[str]:
            names = [key for key, value in kept.items() if options.get(key) == value]
            for key in names:
                del options[key]
            return names

        _rewrite(conn, kind, drop)
