"""The fleet view on `/metrics`: every tenant's destinations from the store, for platform
tokens, in a number of statements that does not depend on how many destinations there are."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event, text
from test_auth import add_udp

from store_roles import owner_connection
from xavyo_siem.model import AuditEvent, CircuitState, EventCategory
from xavyo_siem.store import append_events, writing
from xavyo_siem.store.dead_letters import add_dead_letters
from xavyo_siem.store.events import EventCursor
from xavyo_siem.store.leases import acquire_leases, heartbeat
from xavyo_siem.store.state import Progress, record_progress

from conftest import Api

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def samples(body: str) -> Samples:
    """Each sample of an exposition by name, then by its labels (sorted)."""
    found: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def of(found: Samples, family: str, tenant: UUID, destination: UUID, **more: str) -> float | None:
    """The sample of `family` for that destination (and `more` labels), if any."""
    labels = {"tenant": str(tenant), "destination": str(destination), **more}
    return found.get(family, {}).get(tuple(sorted(labels.items())))


def append(engine: Engine, tenant: UUID, count: int) -> EventCursor:
    """Store `count` events of `tenant`; the position of the last one."""
    now = datetime.now(UTC)
    events = [
        AuditEvent(
            event_id=uuid4(),
            tenant_id=tenant,
            timestamp=now - timedelta(minutes=10),
            event_type="USER_LOGIN",
            category=EventCategory.AUTHENTICATION,
        )
        for _ in range(count)
    ]
    with writing(engine) as conn:
        append_events(conn, events)
    with owner_connection(engine) as conn:
        txid, seq = conn.execute(
            text(
                "SELECT txid, seq FROM audit_events WHERE tenant_id = :t"
                " ORDER BY txid DESC, seq DESC LIMIT 1"
            ),
            {"t": str(tenant)},
        ).one()
    return EventCursor(txid, seq)


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements `engine` sends meanwhile."""
    sent: list[str] = []

    def record(*args: object) -> None:
        sent.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_the_fleet_families_name_every_destination_of_every_tenant(api: Api) -> None:
    """A platform token's scrape shows, labelled by tenant and destination id, a delivered
    destination `ok` with its count and no lag, a failing one with its failures, open circuit,
    dead letters and the events it has yet to send, a disabled one of another tenant with its
    lag; the per-state counts and the workers alive; `?tenant=` narrows it to one tenant."""
    delivered, failing = add_udp(api.engine, api.tenant), add_udp(api.engine, api.tenant)
    paused = add_udp(api.engine, api.other)
    last = append(api.engine, api.tenant, 3)
    append(api.engine, api.other, 2)
    now = datetime.now(UTC)
    with api.engine.begin() as conn:
        epochs = acquire_leases(conn, owner="w", limit=3, ttl=timedelta(minutes=1), now=now)
        heartbeat(conn, owner="w", ttl=timedelta(minutes=1), now=now)
        record_progress(
            conn, owner="w", now=now,
            progress=[
                Progress(
                    tenant_id=api.tenant, destination_id=delivered.id,
                    epoch=epochs[delivered.id], cursor=last, delivered=3, last_success=now,
                ),
                Progress(
                    tenant_id=api.tenant, destination_id=failing.id, epoch=epochs[failing.id],
                    failures=2, consecutive_failures=2, circuit_state=CircuitState.OPEN,
                    circuit_reason="connection refused", last_failure=now,
                    last_error="connection refused",
                ),
            ],
        )  # fmt: skip
        add_dead_letters(
            conn, tenant_id=api.tenant, destination_id=failing.id,
            entries=[(uuid4(), "refused"), (uuid4(), "refused")], now=now,
        )  # fmt: skip
    disabled = await api.client.post(
        api.path(f"/destinations/{paused.id}/disable", api.other), headers=api.as_("platform")
    )
    assert disabled.status_code == 200

    scraped = await api.client.get("/metrics", headers=api.as_("platform_viewer"))
    assert scraped.status_code == 200
    found = samples(scraped.text)
    t, o = api.tenant, api.other
    for tenant, destination in ((t, delivered), (t, failing), (o, paused)):
        info = {"name": destination.name, "type": "syslog_udp"}
        assert of(found, "xavyo_siem_fleet_destination_info", tenant, destination.id, **info) == 1
    assert of(found, "xavyo_siem_fleet_destination_state", t, delivered.id, state="ok") == 1
    assert of(found, "xavyo_siem_fleet_destination_state", t, failing.id, state="failing") == 1
    assert of(found, "xavyo_siem_fleet_destination_state", o, paused.id, state="disabled") == 1
    assert of(found, "xavyo_siem_fleet_events_delivered", t, delivered.id) == 3
    assert of(found, "xavyo_siem_fleet_lag_events", t, delivered.id) == 0
    assert of(found, "xavyo_siem_fleet_lag_seconds", t, delivered.id) == 0
    stamp = of(found, "xavyo_siem_fleet_last_success_timestamp_seconds", t, delivered.id)
    assert stamp is not None
    assert abs(stamp - now.timestamp()) < 1e-3  # stored in microseconds
    assert of(found, "xavyo_siem_fleet_circuit_open", t, delivered.id) == 0
    assert of(found, "xavyo_siem_fleet_delivery_failures", t, failing.id) == 2
    assert of(found, "xavyo_siem_fleet_circuit_open", t, failing.id) == 1
    assert of(found, "xavyo_siem_fleet_dead_letters", t, failing.id) == 2
    assert of(found, "xavyo_siem_fleet_lag_events", t, failing.id) == 3
    assert (of(found, "xavyo_siem_fleet_lag_seconds", t, failing.id) or 0) >= 600
    assert of(found, "xavyo_siem_fleet_circuit_open", o, paused.id) is None  # not delivering
    # its tenant's two events, and the audit trail's record of the disabling (an event too)
    assert of(found, "xavyo_siem_fleet_lag_events", o, paused.id) == 3
    states = {dict(k)["state"]: v for k, v in found["xavyo_siem_fleet_destinations"].items()}
    assert states == {
        "ok": 1, "failing": 1, "disabled": 1, "never_delivered": 0, "switched_off": 0
    }  # fmt: skip
    assert found["xavyo_siem_fleet_workers_alive"] == {(): 1}
    assert "xavyo_siem_build_info" in found  # the process's own registry, beside the fleet's

    narrowed = await api.client.get(
        "/metrics", params={"tenant": str(o)}, headers=api.as_("platform")
    )
    assert narrowed.status_code == 200
    only = samples(narrowed.text)
    assert {dict(k)["destination"] for k in only["xavyo_siem_fleet_destination_info"]} == {
        str(paused.id)
    }
    assert "xavyo_siem_build_info" not in only


async def test_tenant_tokens_cannot_read_the_fleet(api: Api) -> None:
    """A tenant's tokens get 403 on `/metrics`, with or without their own tenant named."""
    add_udp(api.engine, api.tenant)
    for who in ("admin", "viewer"):
        for params in ({}, {"tenant": str(api.tenant)}):
            refused = await api.client.get("/metrics", params=params, headers=api.as_(who))
            assert refused.status_code == 403, (who, params)
            assert "xavyo_siem_fleet" not in refused.text


async def test_a_scrape_costs_the_same_statements_for_10_or_200_destinations(
    make_api: Callable[..., Api],
) -> None:
    """The number of SQL statements of one fleet scrape does not grow with the number of
    destinations (counted, not timed): 10 and 200 destinations over two tenants, each
    scrape read fresh (a new service, so nothing is cached)."""
    counts, added = {}, 0
    for total in (10, 200):
        api = make_api()  # the same store, with more destinations each round
        for n in range(added, total):
            add_udp(api.engine, api.tenant if n % 2 else api.other)
        added = total
        with counting(api.engine) as sent:
            scraped = await api.client.get("/metrics", headers=api.as_("platform_viewer"))
        assert scraped.status_code == 200
        shown = samples(scraped.text)["xavyo_siem_fleet_destination_info"]
        assert len(shown) == total
        counts[total] = len(sent)
    assert counts[200] == counts[10], counts
    assert counts[10] <= 8, counts  # the token, the fleet's read, the workers
