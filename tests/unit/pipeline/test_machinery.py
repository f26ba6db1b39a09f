"""The pipeline's machinery on a fake clock: token bucket, backoff, circuit breaker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xavyo_siem.model import CircuitState
from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.pipeline.retry import RetryPolicy


class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@settings(max_examples=100, deadline=None)
@given(
    rate=st.floats(min_value=1, max_value=10_000),
    burst=st.integers(min_value=1, max_value=500),
    batches=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=60),
)
async def test_bucket_never_lets_more_than_burst_plus_rate_times_window(
    rate: float, burst: int, batches: list[int]
) -> None:
    """Over every window of the run, events sent <= burst + rate * window, whatever the batches."""
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    sent: list[tuple[float, int]] = []
    for size in batches:
        size = min(size, burst)
        await bucket.acquire(size)
        sent.append((clock.now, size))
    for i, (start, _) in enumerate(sent):
        total = 0
        for moment, size in sent[i:]:
            total += size
            assert total <= burst + rate * (moment - start) + 1e-6


async def test_bucket_refuses_a_batch_larger_than_its_burst() -> None:
    """A batch above the burst could never pass; it is refused instead of waiting forever."""
    clock = FakeClock()
    with pytest.raises(ValueError, match="exceeds the burst"):
        await TokenBucket(10, 5, clock=clock, sleep=clock.sleep).acquire(6)


async def test_bucket_waits_exactly_for_missing_tokens() -> None:
    """After the burst is spent, the next 10 events at 100/s wait 0.1 s of (fake) time."""
    clock = FakeClock()
    bucket = TokenBucket(100, 50, clock=clock, sleep=clock.sleep)
    await bucket.acquire(50)
    start = clock.now
    await bucket.acquire(10)
    assert clock.now - start == pytest.approx(0.1)


def test_backoff_grows_within_its_cap_and_honours_the_peer() -> None:
    """Delays stay under min(cap, base*2^n); a peer's Retry-After is a minimum."""
    policy = RetryPolicy(base_s=1, cap_s=30)
    rng = random.Random(1)
    for failures in range(1, 12):
        assert 0 <= policy.delay(failures, rng=rng) <= min(30, 2 ** (failures - 1))
    assert policy.delay(1, peer_after_s=7, rng=rng) >= 7
    assert policy.delay(1, peer_after_s=10**9, rng=rng) <= policy.peer_delay_cap_s


def test_misconfigured_destinations_use_their_own_cap() -> None:
    """A misconfigured destination is probed on a capped backoff, never faster than jitter."""
    policy = RetryPolicy(base_s=1, cap_s=5, misconfigured_cap_s=120)
    delays = [policy.delay(30, misconfigured=True, rng=random.Random(i)) for i in range(200)]
    assert max(delays) <= 120
    assert max(delays) > 5


def test_circuit_opens_after_threshold_and_closes_after_a_good_probe() -> None:
    """closed -> open after N failures -> half-open probe -> closed on success."""
    breaker = CircuitBreaker(threshold=3)
    assert breaker.record_failure("503") is CircuitState.CLOSED
    assert breaker.record_failure("503") is CircuitState.CLOSED
    assert breaker.record_failure("503") is CircuitState.OPEN
    breaker.probe()
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.record_success()
    assert (breaker.state, breaker.failures, breaker.reason) == (CircuitState.CLOSED, 0, None)


def test_failed_probe_reopens_at_once() -> None:
    """A half-open probe that fails opens the circuit again without a new count."""
    breaker = CircuitBreaker(threshold=5, failures=5, state=CircuitState.OPEN)
    breaker.probe()
    assert breaker.record_failure("still down") is CircuitState.OPEN
    assert breaker.reason == "still down"


def test_misconfiguration_opens_the_circuit_immediately() -> None:
    """A revoked token opens the circuit on the first failure, with the reason kept."""
    breaker = CircuitBreaker(threshold=5)
    assert breaker.record_failure("403 token disabled", misconfigured=True) is CircuitState.OPEN
    assert breaker.reason == "403 token disabled"
