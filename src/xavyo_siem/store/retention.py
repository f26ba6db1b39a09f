"""Retention: how long events are kept, and removing the expired ones without removing what
is still needed.

A policy keeps events for a time after the store received them: the platform's (tenant
NULL) and a tenant's own, which overrides it; none kept forever. An expired event is still
*held*, and stays, while a destination of its tenant (enabled or not) has not delivered it
(it lies after the destination's cursor), while a dead letter of it waits (not yet replayed
or purged), or while an export of its tenant runs that may read it (received from the
export's start less the clock-skew allowance on). `force` removes held events too, and
counts them (`removed_undelivered`).

On PostgreSQL a partition whose events have all expired and none is held is removed whole,
in steps (`store/partitions.py`): it is detached from `audit_events` (a catalog change, the
same brief moment whatever its size; its events are gone when it commits), then, once every
such partition is detached, each detached table is dropped in a transaction of its own
that locks no other table (the file system returns its disk space, seconds for a large
one), and its events' keys are removed in chunks. A run stopped between two steps is
finished by the next. In any other partition, and on SQLite, each tenant's expired, unheld
events are deleted in bounded chunks, one transaction each, in the tenant's own scope. So
one tenant's stuck destination keeps that tenant's events and never the others'. What held
anything back is written to `retention_holds` (which destination, how many events, since
when), for health to show.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    cast,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from xavyo_siem.model import JobStatus, from_epoch_us, to_epoch_us
from xavyo_siem.store.engine import large_page_cache, writing
from xavyo_siem.store.events import START, EventCursor, after_position
from xavyo_siem.store.partitions import (
    CLOSE_ALLOWANCE_US,
    EXPORT_SKEW_US,
    Detached,
    Partition,
    detach_partition,
    drop_detached,
    forget_detached,
    list_detached,
    list_partitions,
    partition_tenants,
)
from xavyo_siem.store.scope import platform_wide, scope_to_platform, scope_to_tenant, scoped
from xavyo_siem.store.tables import (
    audit_event_keys,
    audit_events,
    dead_letters,
    destination_state,
    destinations,
    export_jobs,
    retention_holds,
    retention_policies,
)

log = logging.getLogger("xavyo_siem.store")
_LOCK_NOT_AVAILABLE: Final = "55P03"  # PostgreSQL's lock_not_available (a lock timeout)

__all__ = [
    "RetentionHold",
    "RetentionPolicies",
    "RetentionReport",
    "apply_retention",
    "list_retention_holds",
    "read_retention",
    "set_retention",
]

_T = audit_events.c
_UUID: Final = PG_UUID(as_uuid=False)
_RP = retention_policies.c
_RH = retention_holds.c
_LIVE_JOBS: Final = (JobStatus.PENDING.value, JobStatus.RUNNING.value)


@dataclass(frozen=True, slots=True)
class RetentionPolicies:
    """How long events are kept (seconds): the platform's policy and each tenant's own."""

    keep_s: int | None = None
    overrides: dict[UUID, int] = field(default_factory=dict)

    def keep_for(self, tenant_id: UUID) -> int | None:
        """The tenant's keep time: its own, else the platform's (None: forever)."""
        return self.overrides.get(tenant_id, self.keep_s)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of `xavyo-siem retention show --json`."""
        return {
            "keep_s": self.keep_s,
            "tenants": {str(t): keep for t, keep in sorted(self.overrides.items(), key=str)},
        }


@dataclass(frozen=True, slots=True)
class RetentionHold:
    """Something that kept expired events of a tenant: a destination or an export."""

    tenant_id: UUID
    holder: str  # "destination:<id>" or "export:<id>"
    reason: str
    held_events: int
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (in the retention report and in health)."""
        return {
            "tenant_id": str(self.tenant_id),
            "holder": self.holder,
            "reason": self.reason,
            "held_events": self.held_events,
            "since": self.since.isoformat().replace("+00:00", "Z"),
        }


@dataclass(slots=True)
class RetentionReport:
    """What a retention run removed and what held it back.

    The events of `dropped_partitions` were gone once their partitions were detached
    (`detach_s`, all of them together); the disk space came back as the detached tables
    were dropped (`drop_s`, locking nothing but those tables), and their keys went last
    (`keys_s`). `finished` names the tables an earlier, interrupted run had detached and
    this one dropped or finished. `busy_partitions` are those whose detach waited its
    longest for the table's lock (a long query or a vacuum held it): kept for the next
    run, while this one went on."""

    removed: int = 0
    removed_undelivered: int = 0
    dropped_partitions: list[str] = field(default_factory=list)
    dropped_estimate: int = 0
    held: list[RetentionHold] = field(default_factory=list)
    detach_s: float = 0.0
    drop_s: float = 0.0
    keys_s: float = 0.0
    finished: list[str] = field(default_factory=list)
    busy_partitions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of `xavyo-siem retention apply --json`."""
        return {
            "removed": self.removed,
            "removed_undelivered": self.removed_undelivered,
            "dropped_partitions": self.dropped_partitions,
            "dropped_events_estimate": self.dropped_estimate,
            "detach_s": round(self.detach_s, 4),
            "drop_s": round(self.drop_s, 4),
            "keys_s": round(self.keys_s, 4),
            "finished_from_earlier_run": self.finished,
            "busy_partitions": self.busy_partitions,
            "held": [hold.to_dict() for hold in self.held],
        }


def set_retention(
    conn: Connection, *, tenant_id: UUID | None, keep_s: int | None, now: datetime
) -> None:
    """Keep events `keep_s` seconds: the platform's policy (`tenant_id` None) or a tenant's
    own; `keep_s` None removes the policy (a tenant then follows the platform's)."""
    if keep_s is not None and keep_s < 1:
        raise ValueError("keep: must be at least one second")
    if tenant_id is None:
        scope_to_platform(conn)
        match: ColumnElement[bool] = _RP.tenant_id.is_(None)
    else:
        scope_to_tenant(conn, tenant_id)
        match = _RP.tenant_id == str(tenant_id)
    conn.execute(delete(retention_policies).where(match))
    if keep_s is not None:
        conn.execute(
            retention_policies.insert().values(
                tenant_id=None if tenant_id is None else str(tenant_id),
                keep_s=keep_s,
                updated_us=to_epoch_us(now),
            )
        )


@platform_wide
def read_retention(conn: Connection) -> RetentionPolicies:
    """The platform's policy and every tenant's own."""
    keep_s: int | None = None
    overrides: dict[UUID, int] = {}
    for tenant, keep in conn.execute(select(_RP.tenant_id, _RP.keep_s)):
        if tenant is None:
            keep_s = int(keep)
        else:
            overrides[UUID(tenant)] = int(keep)
    return RetentionPolicies(keep_s, overrides)


@scoped
def list_retention_holds(conn: Connection, *, tenant_id: UUID) -> list[RetentionHold]:
    """What held back the tenant's retention at the last run."""
    rows = conn.execute(
        select(_RH.holder, _RH.reason, _RH.held_events, _RH.since_us)
        .where(_RH.tenant_id == str(tenant_id))
        .order_by(_RH.since_us, _RH.holder)
    )
    return [
        RetentionHold(tenant_id, holder, reason, int(held), from_epoch_us(since))
        for holder, reason, held, since in rows
    ]


@dataclass(frozen=True, slots=True)
class _Needs:
    """What of one tenant's events is still needed: each destination's cursor, the dead
    letters (by event id), the oldest received time a live export may read."""

    cursors: dict[str, EventCursor]
    export_from_us: int | None
    exports: tuple[str, ...]


@scoped
def _needs_of(conn: Connection, *, tenant_id: UUID) -> _Needs:
    tenant = str(tenant_id)
    state = destination_state.c
    cursors = {
        ident: START if txid is None else EventCursor(int(txid), int(seq))
        for ident, txid, seq in conn.execute(
            select(destinations.c.id, state.cursor_txid, state.cursor_seq)
            .select_from(
                destinations.outerjoin(destination_state, state.destination_id == destinations.c.id)
            )
            .where(destinations.c.tenant_id == tenant)
        )
    }
    jobs = conn.execute(
        select(export_jobs.c.id, export_jobs.c.start_us).where(
            export_jobs.c.tenant_id == tenant, export_jobs.c.status.in_(_LIVE_JOBS)
        )
    ).all()
    export_from = min((int(start) for _, start in jobs), default=None)
    return _Needs(
        cursors,
        None if export_from is None else export_from - EXPORT_SKEW_US,
        tuple(ident for ident, _ in jobs),
    )


def _dead_lettered(tenant: str) -> ColumnElement[bool]:
    d = dead_letters.c
    return exists().where(d.tenant_id == tenant, d.event_id == _T.event_id).correlate(audit_events)


def _dead_letters_in(conn: Connection, tenant: str, from_us: int, upto_us: int) -> Select[Any]:
    """(destination id, count) of the tenant's dead letters whose events were received in
    the range. On PostgreSQL the event's key holds its received time (the events keep no
    index by id there, see events.py); SQLite reads the events' own index."""
    d = dead_letters.c
    if conn.dialect.name != "postgresql":
        located = dead_letters.join(audit_events, _T.event_id == d.event_id)
        where = _in_range(tenant, from_us, upto_us)
    else:
        k = audit_event_keys.c
        located = dead_letters.join(
            audit_event_keys, and_(k.tenant_id == tenant, k.event_id == cast(d.event_id, _UUID))
        )
        where = [k.received_us >= from_us, k.received_us < upto_us]
    return (
        select(d.destination_id, func.count())
        .select_from(located)
        .where(*where, d.tenant_id == tenant)
        .group_by(d.destination_id)
    )


def _in_range(tenant: str, from_us: int, upto_us: int) -> list[ColumnElement[bool]]:
    return [_T.tenant_id == tenant, _T.received_us >= from_us, _T.received_us < upto_us]


@dataclass
class _Run:
    engine: Engine
    force: bool
    chunk_size: int
    report: RetentionReport = field(default_factory=RetentionReport)
    # (tenant, holder) -> (reason, held events)
    holds: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    needs: dict[str, _Needs] = field(default_factory=dict)

    def needs_of(self, tenant: str) -> _Needs:
        if tenant not in self.needs:
            with self.engine.connect() as conn:
                self.needs[tenant] = _needs_of(conn, tenant_id=UUID(tenant))
        return self.needs[tenant]

    def held_in(self, tenant: str, from_us: int, upto_us: int) -> int:
        """Count the tenant's expired events in the range that are still needed, and note
        who needs them."""
        needs = self.needs_of(tenant)
        with self.engine.connect() as conn:
            scope_to_tenant(conn, UUID(tenant))
            where = _in_range(tenant, from_us, upto_us)
            held = _count(conn, [*where, _needed(conn, tenant, needs)])
            if not held:
                return 0
            for ident, cursor in needs.cursors.items():
                count = _count(conn, [*where, *after_position(conn, cursor)])
                if count:
                    self._note(tenant, f"destination:{ident}", "not delivered yet", count)
            for ident, count in conn.execute(_dead_letters_in(conn, tenant, from_us, upto_us)):
                self._note(tenant, f"destination:{ident}", "dead letters", int(count))
            if needs.export_from_us is not None and needs.export_from_us < upto_us:
                count = _count(conn, [*where, _T.received_us >= needs.export_from_us])
                for job in needs.exports if count else ():
                    self._note(tenant, f"export:{job}", "export running", count)
        return held

    def _note(self, tenant: str, holder: str, reason: str, count: int) -> None:
        old_reason, old_count = self.holds.get((tenant, holder), (reason, 0))
        reasons = old_reason if reason in old_reason else f"{old_reason}; {reason}"
        self.holds[(tenant, holder)] = (reasons, old_count + count)

    def delete_expired(self, tenant: str, from_us: int, upto_us: int) -> None:
        """Delete the tenant's expired events in the range in chunks: those not needed, or,
        forced, all of them (counting the needed ones)."""
        needs = self.needs_of(tenant)
        while True:
            with writing(self.engine) as conn, large_page_cache(conn):  # deletes by random ids
                scope_to_tenant(conn, UUID(tenant))
                is_needed = _needed(conn, tenant, needs)
                wanted = _in_range(tenant, from_us, upto_us)
                # A row's key: (txid, seq) on PostgreSQL's index; SQLite's row id is `seq`
                # (and SQLite 3.40 answers a row value IN a limited subquery wrongly here).
                postgres = conn.dialect.name == "postgresql"
                key: list[Any] = [_T.txid, _T.seq] if postgres else [_T.seq]
                chunk = (
                    select(*key)
                    .where(*wanted, *([] if self.force else [not_(is_needed)]))
                    .order_by(_T.txid, _T.seq)
                    .limit(self.chunk_size)
                )
                rows = conn.execute(
                    delete(audit_events)
                    .where(*wanted, (tuple_(*key) if len(key) > 1 else key[0]).in_(chunk))
                    .returning(_T.event_id, _T.txid, _T.seq, _T.received_us)
                ).all()
                if self.force and rows:
                    self.report.removed_undelivered += _still_needed(conn, tenant, needs, rows)
                if rows and postgres:
                    conn.execute(
                        delete(audit_event_keys).where(
                            audit_event_keys.c.tenant_id == tenant,
                            audit_event_keys.c.event_id.in_([row[0] for row in rows]),
                        )
                    )
            self.report.removed += len(rows)
            if len(rows) < self.chunk_size:
                return

    def detach_whole(self, partition: Partition, held: int) -> None:
        """The first step: detach the partition (its events are gone once this returns)."""
        with self.engine.connect() as conn:
            estimate = conn.exec_driver_sql(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                (partition.name,),
            ).scalar()
        began = time.perf_counter()
        try:
            detached = detach_partition(self.engine, partition)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            log.warning(
                "retention: partition %s is in use (its lock was not given within the"
                " detach's wait); left for the next run",
                partition.name,
            )
            self.report.busy_partitions.append(partition.name)
            return
        finally:
            self.report.detach_s += time.perf_counter() - began
        if detached:
            self.report.dropped_partitions.append(partition.name)
            self.report.dropped_estimate += int(estimate or 0)
            self.report.removed_undelivered += held

    def finish_detached(self, earlier: set[str]) -> None:
        """The next steps, for every detached partition (this run's, and any an earlier
        run left): drop its table, remove its events' keys, forget it."""
        with self.engine.connect() as conn:
            pending = list_detached(conn)
        for detached in pending:
            if detached.name in earlier:
                self.report.finished.append(detached.name)
            if not detached.dropped:
                began = time.perf_counter()
                drop_detached(self.engine, detached)
                self.report.drop_s += time.perf_counter() - began
            began = time.perf_counter()
            self.drop_keys(detached)
            self.report.keys_s += time.perf_counter() - began
            forget_detached(self.engine, detached)

    def drop_keys(self, detached: Detached) -> None:
        """The keys of a detached partition's events, in chunks (platform scope). Its
        events were all received before it was detached; a key of its range received
        since belongs to a partition made again for those days, and stays (it is how its
        event is found by id)."""
        k = audit_event_keys.c
        upto_us = min(detached.to_us, detached.detached_us)
        while True:
            with writing(self.engine) as conn:
                scope_to_platform(conn)
                chunk = (
                    select(k.tenant_id, k.event_id)
                    .where(k.received_us >= detached.from_us, k.received_us < upto_us)
                    .limit(self.chunk_size)
                )
                removed = conn.execute(
                    delete(audit_event_keys).where(tuple_(k.tenant_id, k.event_id).in_(chunk))
                ).rowcount
            if removed < self.chunk_size:
                return


def _needed(conn: Connection, tenant: str, needs: _Needs) -> ColumnElement[bool]:
    """An event of `tenant` that is still needed: after a destination's cursor, dead
    lettered, or received where a live export may read it."""
    needed = [and_(*after_position(conn, cursor)) for cursor in needs.cursors.values()]
    needed.append(_dead_lettered(tenant))
    if needs.export_from_us is not None:
        needed.append(_T.received_us >= needs.export_from_us)
    return or_(*needed)


def _still_needed(conn: Connection, tenant: str, needs: _Needs, rows: Sequence[Any]) -> int:
    """How many of the deleted `rows` (event_id, txid, seq, received_us) were still
    needed (see `_needed`, which this decides the same way)."""
    d = dead_letters.c
    lettered = {
        row[0]
        for row in conn.execute(
            select(d.event_id).where(d.tenant_id == tenant, d.event_id.in_([r[0] for r in rows]))
        )
    }
    sqlite = conn.dialect.name != "postgresql"
    oldest = min(needs.cursors.values(), default=None)
    return sum(
        1
        for event_id, txid, seq, received_us in rows
        if event_id in lettered
        or (oldest is not None and (seq > oldest.seq if sqlite else (txid, seq) > astuple(oldest)))
        or (needs.export_from_us is not None and received_us >= needs.export_from_us)
    )


def _count(conn: Connection, where: list[ColumnElement[bool]]) -> int:
    return int(conn.execute(select(func.count()).where(*where)).scalar_one())


def apply_retention(
    engine: Engine, *, now: datetime, force: bool = False, chunk_size: int = 10_000
) -> RetentionReport:
    """Remove the events whose policy expired, keeping what is still needed unless `force`
    (see the module docstring); record what held anything back. Each step is a short
    transaction of its own, so a run can stop anywhere and the next one continues."""
    now_us = to_epoch_us(now)
    with engine.connect() as conn:
        policies = read_retention(conn)
        partitions = list_partitions(conn)
        earlier = {detached.name for detached in list_detached(conn)}
    keeps = [keep for keep in (policies.keep_s, *policies.overrides.values()) if keep is not None]
    run = _Run(engine, force, chunk_size)
    latest_cutoff = now_us - min(keeps) * 1_000_000 if keeps else None
    for partition in partitions:
        if latest_cutoff is None or partition.from_us >= latest_cutoff:
            break
        with engine.connect() as conn:
            tenants = partition_tenants(conn, partition)
        # Whole only once closed: no chunk of ingest can still be writing into it.
        whole = (
            engine.dialect.name == "postgresql" and partition.to_us + CLOSE_ALLOWANCE_US <= now_us
        )
        expired: list[tuple[str, int]] = []
        held = 0
        for tenant in tenants:
            keep = policies.keep_for(UUID(tenant))
            upto = None if keep is None else min(now_us - keep * 1_000_000, partition.to_us)
            if upto is None or upto <= partition.from_us:
                whole = False
                continue
            whole = whole and upto >= partition.to_us
            expired.append((tenant, upto))
            held_here = run.held_in(tenant, partition.from_us, upto)
            held += held_here
            if held_here and not force:
                whole = False
        if whole:
            run.detach_whole(partition, held)
            continue
        for tenant, upto in expired:
            run.delete_expired(tenant, partition.from_us, upto)
    run.report.held = _record_holds(engine, {} if force else run.holds, now_us)
    run.finish_detached(earlier)
    return run.report


def _record_holds(
    engine: Engine, holds: dict[tuple[str, str], tuple[str, int]], now_us: int
) -> list[RetentionHold]:
    """Replace the recorded holds with `holds`, keeping when each one was first found."""
    with writing(engine) as conn:
        scope_to_platform(conn)
        since: dict[tuple[str, str], int] = defaultdict(lambda: now_us)
        for tenant, holder, first in conn.execute(select(_RH.tenant_id, _RH.holder, _RH.since_us)):
            since[(tenant, holder)] = int(first)
        conn.execute(delete(retention_holds))
        found = [
            RetentionHold(UUID(t), holder, reason, count, from_epoch_us(since[(t, holder)]))
            for (t, holder), (reason, count) in sorted(holds.items())
        ]
        if found:
            conn.execute(
                retention_holds.insert(),
                [
                    {
                        "tenant_id": str(hold.tenant_id),
                        "holder": hold.holder,
                        "reason": hold.reason,
                        "held_events": hold.held_events,
                        "since_us": to_epoch_us(hold.since),
                        "checked_us": now_us,
                    }
                    for hold in found
                ],
            )
    return found
