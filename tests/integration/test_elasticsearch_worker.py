"""An Elasticsearch destination through the worker and the management functions, on both
store backends: nothing lost when documents fail, bad documents dead-lettered with the
cluster's reason, the credential bound to the endpoint's origin, the SSRF guard, the
format check and `destination test`."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from bulk_records import API_KEY, KEY, KEY_ID, STREAM
from integration.test_pipeline_peers import (
    DEV,
    KEYS,
    add,
    drain,
    finish,
    lane_of,
    serve,
    stored,
    until,
)
from xavyo_siem import destinations as manage
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import (
    CircuitState,
    DeliveryHealth,
    DeliveryType,
    ExportFormat,
    SiemDestination,
)
from xavyo_siem.runtime import components
from xavyo_siem.store.dead_letters import list_dead_letters
from xavyo_siem.store.state import read_health, read_state

from peers.elasticsearch_peer import ElasticsearchPeer


def add_elasticsearch(
    engine: Engine, tenant: object, url: str, *, secret: str | None = API_KEY, **options: object
) -> SiemDestination:
    """An elasticsearch destination of `tenant` to `url`, reading from the beginning."""
    return add(
        engine,
        tenant,  # type: ignore[arg-type]
        delivery_type=DeliveryType.ELASTICSEARCH,
        endpoint=url,
        secret=secret,
        options={"start": "beginning", **options},
    )


async def test_mixed_document_failures_lose_nothing_and_dead_letter_the_bad_one(
    engine: Engine,
) -> None:
    """A document refused twice with 429, one refused with 400 and one answered 409: every
    event is stored once, the 400 one alone is a dead letter with the cluster's reason, and
    the cursor reaches the end."""
    events = stored(engine, 300, seed=40)
    busy, bad, dup = (str(events[i].event_id) for i in (17, 120, 250))
    async with ElasticsearchPeer(api_keys={KEY_ID: KEY}) as peer:
        peer.faults.item_faults = {busy: [429, 429], bad: [400] * 50, dup: [409]}
        destination = add_elasticsearch(engine, events[0].tenant_id, peer.url, batch_max_events=100)
        await drain(engine, 60)
    stored_ids = set(peer.documents(STREAM))
    assert stored_ids == {str(e.event_id) for e in events} - {bad, dup}
    assert peer.document_count == len(stored_ids)  # none written twice
    with engine.connect() as conn:
        letters = list_dead_letters(
            conn, tenant_id=destination.tenant_id, destination_id=destination.id
        )
        state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
    assert [str(letter.event_id) for letter in letters] == [bad]
    assert "mapper_parsing_exception" in letters[0].reason
    assert state is not None
    assert state.cursor.seq > 0
    # the batch with the 429 document went twice more, with that document alone
    assert [r.documents for r in peer.requests if r.documents < 100] == [1, 1]


async def test_a_cluster_busy_then_back_delivers_every_event_in_order(engine: Engine) -> None:
    """While the cluster answers 503 the batch waits; then every event is stored in order."""
    events = stored(engine, 250, seed=41)
    async with ElasticsearchPeer(api_keys={KEY_ID: KEY}) as peer:
        peer.faults.status = [503] * 4
        peer.faults.retry_after = "0"
        add_elasticsearch(engine, events[0].tenant_id, peer.url, batch_max_events=50)
        running, task = serve(engine)
        await until(lambda: len(peer.documents(STREAM)) >= len(events), 60, "all documents")
        await finish(running, task)
    assert list(peer.documents(STREAM)) == [str(e.event_id) for e in events]


async def test_a_refused_credential_stops_delivery_and_resumes_when_the_key_is_valid(
    engine: Engine,
) -> None:
    """401: the destination is stuck with the reason, its cursor unmoved; once the cluster
    knows the key, everything is delivered."""
    events = stored(engine, 120, seed=42)
    async with ElasticsearchPeer(api_keys={"other": "x"}) as peer:
        destination = add_elasticsearch(engine, events[0].tenant_id, peer.url)
        running, task = serve(engine)

        def stuck() -> bool:
            lane = lane_of(running, destination)
            return lane is not None and lane.stuck_reason is not None

        def health() -> DeliveryHealth | None:
            with engine.connect() as conn:
                return read_health(
                    conn, tenant_id=destination.tenant_id, destination_id=destination.id
                )

        def recorded_open() -> bool:
            found = health()
            return found is not None and found.circuit_state is CircuitState.OPEN

        await until(stuck, 30, "the destination to be stuck")
        await until(recorded_open, 30, "the open circuit in its health")
        failing = health()
        with engine.connect() as conn:
            state = read_state(conn, tenant_id=destination.tenant_id, destination_id=destination.id)
        peer.api_keys[KEY_ID] = KEY
        await until(lambda: len(peer.documents(STREAM)) >= len(events), 60, "delivery after fix")
        await finish(running, task)
    assert failing is not None
    assert "HTTP 401" in (failing.circuit_reason or "")
    assert state is not None
    assert state.cursor.seq == 0
    assert list(peer.documents(STREAM)) == [str(e.event_id) for e in events]


async def test_destination_test_walks_every_step(engine: Engine) -> None:
    """`destination test`: configuration, resolve, connect, authenticate and deliver pass
    with a valid key; with a wrong one, authenticate fails and nothing is delivered."""
    tenant = stored(engine, 1, seed=43)[0].tenant_id
    async with ElasticsearchPeer(api_keys={KEY_ID: KEY}) as peer:
        good = add_elasticsearch(engine, tenant, peer.url)
        steps = await components.test_destination(engine, good, settings=DEV, keyring=KEYS)
        assert [(s.step, s.ok) for s in steps] == [
            ("configuration", True),
            ("resolve", True),
            ("connect", True),
            ("authenticate", True),
            ("deliver", True),
        ]
        assert len(peer.documents(STREAM)) == 1
        peer.api_keys[KEY_ID] = "rotated"
        steps = await components.test_destination(engine, good, settings=DEV, keyring=KEYS)
    assert [(s.step, s.ok) for s in steps][-1] == ("authenticate", False)
    assert "HTTP 401" in steps[-1].detail
    assert len(peer.documents(STREAM)) == 1


async def test_moving_the_endpoint_to_another_origin_needs_the_secret_again(
    engine: Engine,
) -> None:
    """A new host or port is refused without the secret; a new index or path is not; with
    the secret the move is accepted and the credential opens there."""
    tenant = stored(engine, 1, seed=44)[0].tenant_id
    destination = add_elasticsearch(engine, tenant, "http://127.0.0.1:9200")
    guard = EgressGuard.from_settings(DEV)

    def update(secret: str | None = None, **changes: object) -> SiemDestination:
        return manage.update_destination(
            engine,
            tenant_id=tenant,
            destination_id=destination.id,
            changes=changes,
            secret=secret,
            keyring=KEYS,
            development=True,
            egress=guard,
        )

    for endpoint in ("http://127.0.0.2:9200", "http://127.0.0.1:9201", "https://127.0.0.1:9200"):
        with pytest.raises(InvalidDestination) as raised:
            update(endpoint=endpoint)
        assert raised.value.field == "endpoint"
        assert "secret" in raised.value.reason
    update(endpoint="http://127.0.0.1:9200/proxy", options={"index": "audit"})
    moved = update(endpoint="http://127.0.0.2:9200", secret=API_KEY)
    assert moved.endpoint == "http://127.0.0.2:9200"


def test_the_ssrf_guard_refuses_internal_clusters(engine: Engine) -> None:
    """Loopback, link-local metadata and private addresses are refused at save unless the
    operator allowed them."""
    tenant = stored(engine, 1, seed=45)[0].tenant_id
    for endpoint in (
        "https://127.0.0.1:9200",
        "https://169.254.169.254",
        "https://10.0.0.8:9200",
        "https://[::1]:9200",
    ):
        with pytest.raises(InvalidDestination) as raised:
            manage.add_destination(
                engine,
                tenant_id=tenant,
                spec=manage.DestinationSpec(
                    name="es",
                    delivery_type=DeliveryType.ELASTICSEARCH,
                    format=ExportFormat.JSON,
                    endpoint=endpoint,
                    options={},
                ),
                secret=API_KEY,
                keyring=KEYS,
                development=False,
                egress=EgressGuard(),
            )
        assert raised.value.field == "endpoint"


@pytest.mark.parametrize("text_format", [ExportFormat.CEF, ExportFormat.SYSLOG])
def test_text_formats_are_refused_naming_format(text_format: ExportFormat) -> None:
    """An elasticsearch destination stores JSON documents: a text format is refused on
    `format`, naming the formats it takes."""
    with pytest.raises(InvalidDestination) as raised:
        manage.check_destination(
            manage.DestinationSpec(
                name="es",
                delivery_type=DeliveryType.ELASTICSEARCH,
                format=text_format,
                endpoint="https://es.example:9200",
                options={},
            ),
            development=False,
        )
    assert raised.value.field == "format"
    assert "json" in raised.value.reason


def test_a_malformed_secret_is_refused_when_saved(engine: Engine) -> None:
    """A secret of no known form is refused on `secret` before anything is stored."""
    tenant = stored(engine, 1, seed=46)[0].tenant_id
    with pytest.raises(InvalidDestination) as raised:
        add_elasticsearch(engine, tenant, "http://127.0.0.1:9200", secret="user:password")
    assert raised.value.field == "secret"
