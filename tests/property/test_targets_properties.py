"""Where a credential goes, over hostile endpoints and options: an origin list or an error
naming the field, never anything else; and options that are no target never move it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_strategies import endpoints, options_for
from xavyo_siem.delivery import credential_binding, credential_targets
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType, ExportFormat

_ORIGIN = re.compile(r"[a-z]+://(\[[0-9a-f:.]+\]|[^/\[\]@?#\s]+):[0-9]{1,5}|s3://[a-z0-9.-]+")
# Options that say where a credential goes: S3's server, its region and its addressing
# (which puts the bucket into the host name or not).
_TARGET_OPTIONS = {DeliveryType.S3: {"endpoint_url", "region", "addressing"}}


class Target(NamedTuple):
    delivery_type: DeliveryType
    endpoint: str
    options: Mapping[str, Any]


@st.composite
def targets(draw: st.DrawFn, *, plausible: bool) -> Target:
    kind = draw(st.sampled_from(list(DeliveryType)))
    endpoint = draw(endpoints(kind, plausible=plausible))
    options = draw(options_for(kind, ExportFormat.JSON, plausible=plausible))
    return Target(kind, endpoint.replace("{peer}", "8088").replace("{tmp}", "/tmp/x"), options)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(targets(plausible=False))
def test_hostile_settings_give_origins_or_an_error_naming_the_field(target: Target) -> None:
    """Any endpoint and options give sorted, distinct `scheme://host:port` origins, or an
    `InvalidDestination` naming `endpoint` or an option; no other exception escapes."""
    refused: str | None = None
    try:
        origins = credential_targets(target)
    except InvalidDestination as exc:
        refused, origins = exc.field, ()
    if refused is not None:
        assert refused == "endpoint" or refused.startswith("options"), refused
        return
    assert list(origins) == sorted(set(origins))
    assert all(_ORIGIN.fullmatch(origin) for origin in origins), origins
    assert (target.delivery_type is DeliveryType.FILE) == (origins == ())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(targets(plausible=True))
def test_options_never_move_a_credential_today(target: Target) -> None:
    """No option but those that name the server (S3's `endpoint_url`, `region`,
    `addressing`) moves a credential: a destination's binding with its options is its
    binding with those alone (when both validate)."""
    kept = _TARGET_OPTIONS.get(target.delivery_type, set())
    try:
        with_options = credential_binding(target)
        without = credential_binding(
            target._replace(options={k: v for k, v in target.options.items() if k in kept})
        )
    except InvalidDestination:
        return
    assert with_options == without
