"""The peer of a source: the identity provider's PostgreSQL, its table, and reading it in an
order that never skips a row.

The table must carry, for every row, the id of the transaction that wrote it (an `xid8`
column whose default is `pg_current_xact_id()`) beside a sequence number. Rows are read in
`(xid, seq)` order, and only those whose transaction is below the *horizon*
`pg_snapshot_xmin(pg_current_snapshot())`: every transaction below it has ended, so no row
can appear before a position once it has been read (a sequence number is taken at insert,
not at commit; without the horizon a transaction that took number 99 and committed after
the one that took 100 would be skipped). It is the order xavyo-siem's own store is read in
(docs/store.md). A table without such columns is refused, with the statements that add
them (`check_table`).

The connection string is a secret: it is parsed here only for its host and port (the
SSRF guard checks them, and its sealed form is bound to them), and every message of the
driver is scrubbed of it (`PeerError`). The connection goes to the address the guard
checked at that moment (`hostaddr`), so a name that changes its answer is checked again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from xavyo_siem.delivery.scrub import scrub_reason
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination, InvalidSource, SiemError
from xavyo_siem.model import SourcePosition

__all__ = [
    "PeerError",
    "PeerTable",
    "PeerTarget",
    "connect_peer",
    "peer_target",
    "scrubbed",
]

CONNECT_TIMEOUT_S: Final = 10
_HORIZON: Final = sql.SQL("pg_snapshot_xmin(pg_current_snapshot())")


class PeerError(SiemError):
    """The peer could not be reached or read; the reason is scrubbed of the connection
    string and its password."""


@dataclass(frozen=True, slots=True)
class PeerTarget:
    """Where a connection string points: the host and port (not secret)."""

    host: str
    port: int

    @property
    def origin(self) -> str:
        """`postgresql://host:port`: what the sealed connection string is bound to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{host}:{self.port}"


def _secrets(dsn: str) -> list[str]:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    return [dsn, *([str(password)] if password else [])]


def scrubbed(text: str, dsn: str) -> str:
    """`text` (a driver's message) without the connection string, its password or
    anything shaped like a credential."""
    return scrub_reason(text, _secrets(dsn))


def peer_target(dsn: str) -> PeerTarget:
    """The host and port of a connection string (URL or `key=value` form); `InvalidSource`
    on `dsn` when it names no single network host (the string itself is never quoted)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        raise InvalidSource("dsn", "is not a PostgreSQL connection string") from None
    host = str(params.get("host") or "")
    if not host or "," in host or host.startswith(("/", "@")):
        raise InvalidSource(
            "dsn", "must name one network host (host=… or postgresql://host/…), not a socket"
        )
    if params.get("hostaddr") or params.get("service"):
        raise InvalidSource("dsn", "hostaddr and service are not taken: name the host itself")
    port_text = str(params.get("port") or "5432")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidSource("dsn", "port must be a number from 1 to 65535")
    return PeerTarget(host, int(port_text))


def connect_peer(dsn: str, guard: EgressGuard) -> psycopg.Connection[Any]:
    """A connection to the peer (autocommit, UTC), to the address of its host the SSRF
    guard allows now; `InvalidSource` on `dsn` when the guard refuses it, `PeerError` when
    the peer cannot be reached."""
    target = peer_target(dsn)
    try:
        infos = guard.resolve(target.host, target.port)
    except InvalidDestination as exc:
        raise InvalidSource("dsn", exc.reason) from None
    try:
        conn = psycopg.connect(
            dsn,
            hostaddr=str(infos[0][4][0]),
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="xavyo-siem source",
            autocommit=True,
        )
        conn.execute("SET TIME ZONE 'UTC'")
    except psycopg.Error as exc:
        raise PeerError(f"{target.origin}: {scrubbed(str(exc), dsn)}") from None
    return conn


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    type: str
    default: str | None
    identity: str


_COLUMNS_OF: Final = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid),
       a.attidentity
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""


# Column types read as their text: what the event keeps as text anyway, whose driver
# objects cost more to make than the text (an `inet`'s ipaddress, a `jsonb` parsed by the
# standard library's json; the mapping parses a JSON text with orjson). An address is read
# in its output form (`format`): its cast to text would add `/32` to a host address.
_AS_TEXT: Final = {
    "inet": "format('%%s', {})",
    "cidr": "format('%%s', {})",
    "macaddr": "format('%%s', {})",
    "json": "{}::text",
    "jsonb": "{}::text",
}


class PeerTable:
    """One peer table, read in `(xid, seq)` order below the horizon.

    `columns` are selected after the two order columns (a row is `(xid, seq, *columns)`);
    the columns of a type in `_AS_TEXT` are read as text (`prepare`, on the first read).
    The order columns are selected under other names: `ORDER BY xact_id` would otherwise
    sort by the selected `xact_id::text::bigint` (an output column's name wins), which no
    index gives: every page would scan and sort the whole table.
    """

    def __init__(
        self, table: str, *, xid_column: str, seq_column: str, columns: Sequence[str]
    ) -> None:
        schema, _, name = table.partition(".")
        self.table = table
        self._schema, self._name = schema, name
        self.xid_column, self.seq_column = xid_column, seq_column
        self.columns = tuple(columns)
        xid, seq = sql.Identifier(xid_column), sql.Identifier(seq_column)
        qualified = sql.Identifier(schema, name)
        self._page: sql.Composed | None = None
        self._last = sql.SQL(
            "SELECT {xid}::text::bigint AS source_xid, {seq} AS source_seq FROM {table}"
            " WHERE {xid} < {horizon} ORDER BY {xid} DESC, {seq} DESC LIMIT 1"
        ).format(xid=xid, seq=seq, table=qualified, horizon=_HORIZON)

    def prepare(self, conn: psycopg.Connection[Any]) -> sql.Composed:
        """The statement that reads a page, with the columns' casts (see `_AS_TEXT`)."""
        types = self._columns_of(conn, self._oid(conn))
        selected = [
            sql.SQL(_AS_TEXT[types[column].type]).format(sql.Identifier(column))
            if column in types and types[column].type in _AS_TEXT
            else sql.Identifier(column)
            for column in self.columns
        ]
        xid, seq = sql.Identifier(self.xid_column), sql.Identifier(self.seq_column)
        return sql.SQL(
            "SELECT {xid}::text::bigint AS source_xid, {seq} AS source_seq, {columns}"
            " FROM {table}"
            " WHERE ({xid}, {seq}) > (%s::text::xid8, %s) AND {xid} < {horizon}"
            " ORDER BY {xid}, {seq} LIMIT %s"
        ).format(
            xid=xid,
            seq=seq,
            columns=sql.SQL(", ").join(selected),
            table=sql.Identifier(self._schema, self._name),
            horizon=_HORIZON,
        )

    def read_page(
        self, conn: psycopg.Connection[Any], *, after: SourcePosition, limit: int
    ) -> list[tuple[Any, ...]]:
        """Up to `limit` final rows after `after`, in order: `(xid, seq, *columns)`."""
        if self._page is None:
            self._page = self.prepare(conn)
        cursor = conn.cursor()
        cursor.execute(self._page, (str(after.xid), after.seq, limit), prepare=True)
        return cursor.fetchall()

    def last_position(self, conn: psycopg.Connection[Any]) -> SourcePosition:
        """The position of the table's last final row (the start of a source that begins
        now); the beginning when it has none."""
        row = conn.execute(self._last).fetchone()
        return SourcePosition() if row is None else SourcePosition(row[0], row[1])

    def _oid(self, conn: psycopg.Connection[Any]) -> int:
        """The table's oid; `InvalidSource` when the peer has no such table or its user may
        not read it."""
        found = conn.execute(
            "SELECT c.oid, has_table_privilege(c.oid, 'SELECT') FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            (self._schema, self._name),
        ).fetchone()
        if found is None:
            raise InvalidSource("table", f"the peer has no table {self.table}")
        if not found[1]:
            raise InvalidSource(
                "table", f"the peer's user may not read {self.table} (GRANT SELECT ON it)"
            )
        return int(found[0])

    @staticmethod
    def _columns_of(conn: psycopg.Connection[Any], oid: int) -> dict[str, _Column]:
        return {
            row[0]: _Column(row[0], row[1], row[2], row[3])
            for row in conn.execute(_COLUMNS_OF, (oid,))
        }

    def check(self, conn: psycopg.Connection[Any], *, timestamp_column: str) -> None:
        """Refuse a table that is missing, unreadable, lacks a mapped column, or cannot be
        read in a gap-free order; the message says what to add."""
        columns = self._columns_of(conn, self._oid(conn))
        missing = [column for column in self.columns if column not in columns]
        if missing:
            raise InvalidSource("map", f"{self.table} has no column {', '.join(missing)}")
        stamp = columns[timestamp_column]
        if stamp.type == "timestamp without time zone":
            raise InvalidSource(
                "map.timestamp",
                f"{self.table}.{stamp.name} is a timestamp without time zone (no event may"
                " carry a naive time): use timestamptz, e.g. ALTER TABLE"
                f" {self.table} ALTER COLUMN {stamp.name} TYPE timestamptz USING"
                f" {stamp.name} AT TIME ZONE 'UTC';",
            )
        self._check_order(columns)

    def _check_order(self, columns: dict[str, _Column]) -> None:
        problems, fixes = [], []
        xid = columns.get(self.xid_column)
        if xid is None:
            problems.append(f"no column {self.xid_column}")
            fixes.append(
                f"ALTER TABLE {self.table} ADD COLUMN {self.xid_column} xid8 NOT NULL"
                " DEFAULT pg_current_xact_id();"
            )
        elif xid.type != "xid8":
            problems.append(f"{self.xid_column} is {xid.type}, not xid8")
            fixes.append(
                f"-- name another column with --option xid_column=…, or: ALTER TABLE"
                f" {self.table} ADD COLUMN xact_id xid8 NOT NULL DEFAULT pg_current_xact_id();"
            )
        elif (xid.default or "").replace(" ", "") != "pg_current_xact_id()":
            problems.append(f"{self.xid_column} is not filled by pg_current_xact_id()")
            fixes.append(
                f"ALTER TABLE {self.table} ALTER COLUMN {self.xid_column}"
                " SET DEFAULT pg_current_xact_id();"
            )
        seq = columns.get(self.seq_column)
        if seq is None:
            problems.append(f"no column {self.seq_column}")
            fixes.append(
                f"ALTER TABLE {self.table} ADD COLUMN {self.seq_column} bigint"
                " GENERATED ALWAYS AS IDENTITY;"
            )
        elif seq.type not in ("bigint", "integer"):
            problems.append(f"{self.seq_column} is {seq.type}, not bigint")
            fixes.append("-- name another column with --option seq_column=…")
        elif not seq.identity and not (seq.default or "").startswith("nextval("):
            problems.append(f"{self.seq_column} is not filled from a sequence")
            fixes.append(
                f"ALTER TABLE {self.table} ALTER COLUMN {self.seq_column}"
                " ADD GENERATED ALWAYS AS IDENTITY;"
            )
        if not problems:
            return
        fixes.append(f"CREATE INDEX ON {self.table} ({self.xid_column}, {self.seq_column});")
        raise InvalidSource(
            "table",
            f"{self.table} cannot be read in an order that never skips a row ("
            + "; ".join(problems)
            + "): each row needs its writing transaction's id and a sequence number. Add"
            " them: " + " ".join(fixes),
        )
