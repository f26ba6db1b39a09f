"""The per-destination metrics: made at scrape time from the lanes a worker serves, by
destination id, with nothing per destination held in prometheus_client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from xavyo_siem.model import (
    CircuitState,
    DeliveryType,
    ExportFormat,
    SiemDestination,
)
from xavyo_siem.pipeline.health import (
    Throughput,
    report_delivered,
    report_disabled,
    report_failure,
    report_losses,
)
from xavyo_siem.pipeline.lane import Lane, utf8_size
from xavyo_siem.pipeline.loop import DestinationComponents
from xavyo_siem.pipeline.metrics import DESTINATIONS
from xavyo_siem.sample import generate_events


async def _never_opened(destination: SiemDestination) -> DestinationComponents:
    raise AssertionError("not opened in these tests")


def lane(number: int, name: str, kind: DeliveryType = DeliveryType.FILE) -> Lane:
    destination = SiemDestination(
        id=UUID(int=number),
        tenant_id=UUID(int=1000 + number),
        name=name,
        delivery_type=kind,
        format=ExportFormat.JSON,
        endpoint=f"file:///tmp/{name}.jsonl",
    )
    return Lane(destination=destination, position=0, open_components=_never_opened)


def sample(metric: str, served: Lane, **labels: str) -> float | None:
    wanted = {"tenant": str(served.tenant_id), "destination": str(served.id), **labels}
    return REGISTRY.get_sample_value(metric, wanted)


def test_the_collector_yields_each_destinations_samples_by_its_id() -> None:
    """Each served destination's counts, circuit, switch-off, lag and name appear under its
    tenant and id at the scrape, and nothing of it once the worker no longer serves it."""
    quiet, busy, broken = lane(1, "quiet"), lane(2, "busy"), lane(3, "broken", DeliveryType.WEBHOOK)
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    report_delivered(busy.destination, busy.counts, delivered=7, dead=[], now=now)
    report_delivered(
        busy.destination, busy.counts, delivered=3, dead=[(UUID(int=9), "bad")], now=now
    )
    report_failure(
        broken.destination,
        broken.counts,
        reason="503",
        circuit_state=CircuitState.CLOSED,
        misconfigured=False,
    )
    report_failure(
        broken.destination,
        broken.counts,
        reason="401",
        circuit_state=CircuitState.OPEN,
        misconfigured=True,
    )
    report_losses(broken.counts, possibly_lost=2, truncated=1)
    report_disabled(broken.destination, broken.counts, reason="410 Gone")
    busy.join()
    old = datetime.now(UTC) - timedelta(seconds=100)
    for position, event in enumerate(generate_events(4, 1, seed=1), start=1):
        busy.offer([(position, event.__class__.from_dict({**event.to_dict(), "timestamp": old}))])
    unwatch = DESTINATIONS.watch(lambda: [quiet, busy, broken])
    try:
        assert sample("xavyo_siem_events_delivered_total", busy) == 10
        assert sample("xavyo_siem_dead_letters_total", busy) == 1
        assert sample("xavyo_siem_last_success_timestamp_seconds", busy) == now.timestamp()
        assert sample("xavyo_siem_circuit_open", busy) == 0
        assert sample("xavyo_siem_lag_events", busy) == 4
        assert (sample("xavyo_siem_lag_seconds", busy) or 0) >= 100
        assert sample("xavyo_siem_delivery_failures_total", broken, kind="retry_later") == 1
        assert sample("xavyo_siem_delivery_failures_total", broken, kind="misconfigured") == 1
        assert sample("xavyo_siem_circuit_open", broken) == 1
        assert sample("xavyo_siem_possibly_lost_total", broken) == 2
        assert sample("xavyo_siem_truncated_total", broken) == 1
        assert sample("xavyo_siem_destination_disabled", broken) == 1
        assert sample("xavyo_siem_destination_info", broken, name="broken", type="webhook") == 1
        assert sample("xavyo_siem_destination_info", quiet, name="quiet", type="file") == 1
        # Nothing happened to `quiet` and it reads no feed: no counts, no lag.
        assert sample("xavyo_siem_events_delivered_total", quiet) is None
        assert sample("xavyo_siem_circuit_open", quiet) is None
        assert sample("xavyo_siem_lag_events", quiet) is None
        assert sample("xavyo_siem_events_delivered_total", broken) is None
    finally:
        unwatch()
    assert sample("xavyo_siem_events_delivered_total", busy) is None
    assert sample("xavyo_siem_destination_info", quiet, name="quiet", type="file") is None


def test_a_destinations_counts_go_on_under_its_new_name() -> None:
    """A lane loaded again with the destination renamed, given the same counts, goes on
    counting in the same series; only the info's name changes."""
    before = lane(5, "old-name")
    report_delivered(before.destination, before.counts, delivered=4, dead=[], now=datetime.now(UTC))
    renamed = SiemDestination(**{**vars_of(before.destination), "name": "new-name"})
    after = Lane(
        destination=renamed, position=0, open_components=_never_opened, counts=before.counts
    )
    report_delivered(after.destination, after.counts, delivered=2, dead=[], now=datetime.now(UTC))
    unwatch = DESTINATIONS.watch(lambda: [after])
    try:
        assert sample("xavyo_siem_events_delivered_total", after) == 6
        assert sample("xavyo_siem_destination_info", after, name="new-name", type="file") == 1
        assert sample("xavyo_siem_destination_info", after, name="old-name", type="file") is None
    finally:
        unwatch()


def vars_of(destination: SiemDestination) -> dict[str, object]:
    return {name: getattr(destination, name) for name in destination.__dataclass_fields__}


def test_bytes_sent_and_rate_limit_waits_are_shown_by_destination_id() -> None:
    """A lane's sent bytes and rate-limit waits appear under its id once counted, and not
    before."""
    served = lane(6, "metered")
    unwatch = DESTINATIONS.watch(lambda: [served])
    try:
        assert sample("xavyo_siem_record_bytes_sent_total", served) is None
        assert sample("xavyo_siem_rate_limit_waits_total", served) is None
        served.counts.bytes_sent += 1234
        served.counts.rate_limited += 2
        assert sample("xavyo_siem_record_bytes_sent_total", served) == 1234
        assert sample("xavyo_siem_rate_limit_waits_total", served) == 2
    finally:
        unwatch()


def test_the_build_is_named_once_per_process() -> None:
    """`xavyo_siem_build_info` carries the version and which helpers run."""
    from xavyo_siem import __version__
    from xavyo_siem.speedups import COMPILED

    helpers = "c" if COMPILED else "python"
    labels = {"version": __version__, "helpers": helpers}
    assert REGISTRY.get_sample_value("xavyo_siem_build_info", labels) == 1


def test_throughput_counts_the_last_ten_seconds_of_batches() -> None:
    """The throughput is the events of the batches of the last ten seconds over the time
    they span (at least one second), however many batches came before."""
    now = [0.0]
    throughput = Throughput(lambda: now[0])
    for second in range(30):
        now[0] = float(second)
        rate = throughput.add(5)
    # The batches of 19..29 s are inside the window at 29 s; those before it are not.
    assert rate == pytest.approx(55 / 10)
    now[0] = 100.0
    assert throughput.add(3) == 3.0


@given(st.lists(st.text(alphabet=st.characters(codec=None, min_codepoint=0)), max_size=20))
def test_the_bytes_sent_are_the_utf8_bytes_of_the_texts_however_they_mix(texts: list[str]) -> None:
    """A batch's bytes are counted text by text, ASCII or not, lone surrogates as 3 bytes:
    the same number as encoding the batch's texts joined."""
    assert utf8_size(texts) == len("".join(texts).encode("utf-8", "surrogatepass"))
