"""Each API token's request budget: a token bucket per token id, answered 429 when spent."""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem.api.rate_limit import RequestRateLimit
from xavyo_siem.settings import DEFAULT_API_RATE_LIMIT, Settings, parse_api_rate_limit

from conftest import LOOPBACK, Api


async def test_the_request_after_the_burst_gets_429_with_retry_after_and_others_go_on(
    make_api: Callable[..., Api],
) -> None:
    """With a burst of 5 (and a refill too slow to matter), the sixth request of a token is
    refused with 429 and a Retry-After in whole seconds; another token of the same tenant,
    and another tenant's, are unaffected."""
    api = make_api(Settings(egress_allow=LOOPBACK, api_rate_limit=(0.001, 5)))
    answers = [
        await api.client.get(api.path("/destinations"), headers=api.as_("viewer")) for _ in range(6)
    ]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    refused = answers[-1]
    assert refused.headers["Retry-After"].isdigit()
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["detail"][0]["loc"] == ["header", "Authorization"]
    assert refused.json()["detail"][0]["type"] == "too_many_requests"
    admin = await api.client.get(api.path("/destinations"), headers=api.as_("admin"))
    assert admin.status_code == 200
    other = await api.client.get(
        api.path("/destinations", api.other), headers=api.as_("other_admin")
    )
    assert other.status_code == 200


async def test_requests_without_a_valid_token_spend_no_budget(
    make_api: Callable[..., Api],
) -> None:
    """A flood of unauthenticated requests is answered 401 and leaves every token's budget
    whole: the budget is per authenticated token."""
    api = make_api(Settings(egress_allow=LOOPBACK, api_rate_limit=(0.001, 2)))
    for _ in range(5):
        bad = await api.client.get(api.path("/destinations"), headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401
    codes = [
        (await api.client.get(api.path("/destinations"), headers=api.as_("admin"))).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]


def test_a_bucket_refills_at_its_rate_on_its_own_clock() -> None:
    """On a fake clock: the burst passes, the next request waits 1/rate (rounded up to a
    whole second), and after that long one more passes; token ids have separate buckets."""
    now = [0.0]
    limit = RequestRateLimit(0.5, 2, clock=lambda: now[0])
    first, second = uuid4(), uuid4()
    assert [limit.retry_after(first) for _ in range(2)] == [None, None]
    assert limit.retry_after(first) == 2
    assert limit.retry_after(second) is None
    now[0] = 2.0
    assert limit.retry_after(first) is None
    assert limit.retry_after(first) == 2


@given(rate=st.floats(0.01, 1e6), burst=st.integers(1, 10_000))
def test_the_setting_reads_back_what_was_written(rate: float, burst: int) -> None:
    """`XAVYO_SIEM_API_RATE_LIMIT=R:B` reads as (R, B) for every positive rate and burst."""
    env = {"XAVYO_SIEM_API_RATE_LIMIT": f"{rate!r}:{burst}"}
    assert Settings.from_env(env).api_rate_limit == (rate, burst)


def test_the_setting_defaults_and_refuses_nonsense_naming_itself() -> None:
    """Unset or empty is 50:100; a rate alone bursts one second's requests; a rate that is
    not positive, a burst below 1, or text is refused with a message naming the setting."""
    assert Settings.from_env({}).api_rate_limit == DEFAULT_API_RATE_LIMIT == (50.0, 100)
    assert parse_api_rate_limit(" ") == (50.0, 100)
    assert parse_api_rate_limit("20") == (20.0, 20)
    assert parse_api_rate_limit("0.5") == (0.5, 1)
    for bad in ("0", "-1:5", "5:0", "fast", "5:x", "nan", "inf:10"):
        with pytest.raises(ValueError, match="XAVYO_SIEM_API_RATE_LIMIT"):
            parse_api_rate_limit(bad)
