"""Managing sources: check one against its peer, seal its connection string, store it;
list, find and remove them.

`add_source` checks everything before it writes anything: the settings (`SourceSpec`), the
SSRF guard for the peer's host (a source's peer is usually on a private network: the
operator allows it with `XAVYO_SIEM_EGRESS_ALLOW`), and the peer table itself (it exists,
is readable, has the mapped columns and the order columns, `PeerTable.check`). The
connection string is then sealed like a destination's credential (AES-256-GCM, `v2`),
bound to the source and the peer's origin, and never shown again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import psycopg
from sqlalchemy import Engine

from xavyo_siem.crypto import CryptoError, KeyRing
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidSource
from xavyo_siem.model import SourcePosition, SourceState, TableSource
from xavyo_siem.sources.mapping import check_identifier, parse_mapping
from xavyo_siem.sources.peer import (
    PeerError,
    PeerTable,
    connect_peer,
    peer_target,
    scrubbed,
)
from xavyo_siem.store import sources as rows
from xavyo_siem.store import writing

__all__ = [
    "SOURCE_OPTIONS",
    "SOURCE_TENANT",
    "SOURCE_TYPES",
    "SourceSpec",
    "add_source",
    "dsn_binding",
    "find_source",
    "list_sources",
    "open_dsn",
    "peer_table_of",
    "remove_source",
]

SOURCE_TYPES: Final = ("postgres_table",)
# Options and their defaults: the order columns, the rows read per page, where to start.
SOURCE_OPTIONS: Final[Mapping[str, str]] = {
    "xid_column": "xact_id",
    "seq_column": "seq",
    "batch_rows": "5000",
    "start": "beginning",
}
# Sources are the platform's, not a tenant's: the nil UUID stands for the tenant in the
# authenticated data of a sealed connection string (a destination's never is nil).
SOURCE_TENANT: Final = UUID(int=0)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What `source add` was given, before it is checked."""

    name: str
    source_type: str
    table: str
    mapping: list[str]
    options: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True


def _options(options: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(options) - set(SOURCE_OPTIONS))
    if unknown:
        raise InvalidSource(
            f"options.{unknown[0]}", f"is not an option; known: {', '.join(SOURCE_OPTIONS)}"
        )
    merged = {**SOURCE_OPTIONS, **options}
    for name in ("xid_column", "seq_column"):
        check_identifier(f"options.{name}", merged[name])
    rows_text = merged["batch_rows"]
    if not rows_text.isdigit() or not 1 <= int(rows_text) <= 50_000:
        raise InvalidSource("options.batch_rows", "must be a whole number from 1 to 50000")
    if merged["start"] not in ("beginning", "now"):
        raise InvalidSource("options.start", "must be beginning or now")
    return merged


def _table(table: str) -> str:
    schema, dot, name = table.partition(".")
    if not dot:
        raise InvalidSource("table", f"{table[:70]!r} must be SCHEMA.TABLE (e.g. audit.events)")
    return f"{check_identifier('table', schema)}.{check_identifier('table', name)}"


def dsn_binding(source: TableSource) -> tuple[str, ...]:
    """What a source's sealed connection string is bound to: its type and peer origin."""
    return (source.source_type, source.peer)


def peer_table_of(source: TableSource, columns: tuple[str, ...]) -> PeerTable:
    """The peer table of `source`, selecting `columns` after the order columns."""
    return PeerTable(
        source.table, xid_column=source.xid_column, seq_column=source.seq_column, columns=columns
    )


def add_source(
    engine: Engine,
    *,
    spec: SourceSpec,
    dsn: str,
    keyring: KeyRing | None,
    egress: EgressGuard | None = None,
) -> TableSource:
    """Check a new source against its peer, seal its connection string, and store it.

    `InvalidSource` names what is wrong (never the connection string); a peer that cannot be
    reached is an error too (`PeerError`, scrubbed): a source is only added once its table
    was seen.
    """
    if not spec.name.strip() or len(spec.name) > 200:
        raise InvalidSource("name", "must be 1 to 200 characters")
    if spec.source_type not in SOURCE_TYPES:
        raise InvalidSource("type", f"must be one of {', '.join(SOURCE_TYPES)}")
    table = _table(spec.table)
    mapping = parse_mapping(spec.mapping)
    options = _options(spec.options)
    target = peer_target(dsn)
    if keyring is None:
        raise CryptoError("a connection string can only be stored encrypted, and no key is set")
    source = TableSource(
        id=uuid.uuid4(),
        name=spec.name,
        source_type=spec.source_type,
        peer=target.origin,
        table=table,
        mapping=mapping,
        xid_column=options["xid_column"],
        seq_column=options["seq_column"],
        batch_rows=int(options["batch_rows"]),
        enabled=spec.enabled,
        created_at=datetime.now(UTC),
    )
    peer = peer_table_of(source, tuple(dict.fromkeys(mapping.values())))
    with connect_peer(dsn, egress or EgressGuard()) as conn:
        try:
            peer.check(conn, timestamp_column=mapping["timestamp"])
            start = peer.last_position(conn) if options["start"] == "now" else SourcePosition()
        except psycopg.Error as exc:
            raise PeerError(f"{target.origin}: {scrubbed(str(exc), dsn)}") from None
    source = replace(source, state=SourceState(position=start))
    sealed = keyring.seal(
        dsn, tenant_id=SOURCE_TENANT, destination_id=source.id, binding=dsn_binding(source)
    )
    with writing(engine) as store:
        if rows.find_source(store, name_or_id=spec.name) is not None:
            raise InvalidSource("name", f"there already is a source {spec.name!r}")
        return rows.insert_source(store, source=source, sealed=sealed)


def open_dsn(engine: Engine, source: TableSource, keyring: KeyRing) -> str:
    """The connection string of `source`, opened for its binding; `CryptoError` when it
    does not open (another source's, another peer's, a key no longer in the ring) and
    `InvalidSource` when the source is gone."""
    with engine.connect() as conn:
        sealed = rows.sealed_dsn(conn, source_id=source.id)
    if sealed is None:
        raise InvalidSource("source", f"source {source.name!r} was removed")
    dsn = keyring.open(
        sealed, tenant_id=SOURCE_TENANT, destination_id=source.id, binding=dsn_binding(source)
    )
    if peer_target(dsn).origin != source.peer:
        raise CryptoError("sealed connection string: does not point at the source's peer")
    return dsn


def list_sources(engine: Engine) -> list[TableSource]:
    """Every source, by name, with its cursor and state."""
    with engine.connect() as conn:
        return rows.list_sources(conn)


def find_source(engine: Engine, *, name_or_id: str) -> TableSource:
    """The source named `name_or_id` (or with that id); `InvalidSource` names it if none."""
    with engine.connect() as conn:
        found = rows.find_source(conn, name_or_id=name_or_id)
    if found is None:
        raise InvalidSource("source", f"there is no source {name_or_id[:100]!r}")
    return found


def remove_source(engine: Engine, *, name_or_id: str) -> TableSource:
    """Remove a source (the events it stored stay); the source removed."""
    with writing(engine) as conn:
        found = rows.find_source(conn, name_or_id=name_or_id)
        if found is None:
            raise InvalidSource("source", f"there is no source {name_or_id[:100]!r}")
        rows.remove_source(conn, source_id=found.id)
        return found
