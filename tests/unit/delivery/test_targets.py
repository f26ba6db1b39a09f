"""Where a credential goes: the origins of each delivery type, what moves them and what not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import pytest

from xavyo_siem.delivery import credential_binding, credential_required, credential_targets
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType


class Target(NamedTuple):
    delivery_type: DeliveryType
    endpoint: str
    options: Mapping[str, Any] = {}


HEC, HOOK = DeliveryType.SPLUNK_HEC, DeliveryType.WEBHOOK


@pytest.mark.parametrize(
    ("target", "origins"),
    [
        (Target(HEC, "https://HEC.example.com/services/collector/event"),
         ("https://hec.example.com:443",)),
        (Target(HEC, "https://hec.example.com:8088"), ("https://hec.example.com:8088",)),
        (Target(HOOK, "https://hooks.example.com/a?b=c"), ("https://hooks.example.com:443",)),
        (Target(HOOK, "http://[::1]:8080/x"), ("http://[::1]:8080",)),
        (Target(DeliveryType.SYSLOG_TLS, "tls://siem.example.com"),
         ("tls://siem.example.com:6514",)),
        (Target(DeliveryType.SYSLOG_TCP, "tcp://10.0.0.1:1514"), ("tcp://10.0.0.1:1514",)),
        (Target(DeliveryType.SYSLOG_UDP, "udp://siem.example.com"),
         ("udp://siem.example.com:514",)),
        (Target(DeliveryType.SYSLOG_RELP, "relp://siem.example.com"),
         ("relp://siem.example.com:2514",)),
        (Target(DeliveryType.FILE, "file:///var/log/siem.jsonl"), ()),
        (Target(DeliveryType.ELASTICSEARCH, "https://ES.example.com:9200/proxy",
                {"index": "audit", "pipeline": "p"}), ("https://es.example.com:9200",)),
        (Target(DeliveryType.S3, "s3://audit-archive/xavyo", {"region": "eu-west-1"}),
         ("https://audit-archive.s3.eu-west-1.amazonaws.com:443", "s3://audit-archive")),
        (Target(DeliveryType.S3, "s3://audit-archive", {"endpoint_url": "https://MinIO:9000"}),
         ("https://minio:9000", "s3://audit-archive")),
    ],
)  # fmt: skip
def test_each_type_names_the_origins_its_transport_sends_to(
    target: Target, origins: tuple[str, ...]
) -> None:
    """An origin is the lower-case scheme, host and port (the default port filled in)."""
    assert credential_targets(target) == origins
    assert credential_binding(target) == (target.delivery_type.value, *origins)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("https://hec.example.com/services/collector", "https://hec.example.com/other/path"),
        ("https://hec.example.com", "https://hec.example.com:443/"),
        ("https://hec.example.com/?a=1", "https://HEC.example.com/?a=2"),
    ],
)
def test_a_path_query_or_spelling_keeps_the_binding(before: str, after: str) -> None:
    """Changes that send the credential to the same origin keep the same binding."""
    assert credential_binding(Target(HEC, before)) == credential_binding(Target(HEC, after))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("https://hec.example.com", "https://attacker.example"),
        ("https://hec.example.com", "https://hec.example.com:8443"),
        ("https://hec.example.com", "http://hec.example.com:443"),
        ("https://hec.example.com", "https://hec.example.com.attacker.example"),
    ],
)
def test_another_scheme_host_or_port_moves_the_binding(before: str, after: str) -> None:
    """Any change of scheme, host or port gives another binding."""
    assert credential_binding(Target(HEC, before)) != credential_binding(Target(HEC, after))


def test_options_that_are_no_target_do_not_move_the_binding() -> None:
    """Format options, batch and TLS options change nothing about where the credential goes."""
    plain = Target(HOOK, "https://hooks.example.com/")
    tuned = Target(HOOK, plain.endpoint, {"gzip": False, "batch_max_events": 5, "cef_x": "y"})
    assert credential_binding(plain) == credential_binding(tuned)


def test_the_delivery_type_is_part_of_the_binding() -> None:
    """The same URL as a webhook and as HEC binds differently."""
    url = "https://hooks.example.com/"
    assert credential_binding(Target(HOOK, url)) != credential_binding(Target(HEC, url))


def test_an_invalid_destination_has_no_targets() -> None:
    """A destination whose endpoint does not validate names the field instead."""
    with pytest.raises(InvalidDestination) as caught:
        credential_targets(Target(HEC, "ftp://hec.example.com"))
    assert caught.value.field == "endpoint"


def test_only_hec_sentinel_and_s3_never_send_without_a_credential() -> None:
    """HEC needs its token, Sentinel its client secret and S3 its access key; a webhook may be
    unsigned; syslog and file use none."""
    assert [t for t in DeliveryType if credential_required(t)] == [
        HEC,
        DeliveryType.SENTINEL,
        DeliveryType.S3,
    ]


SENTINEL_OPTIONS: Mapping[str, Any] = {
    "dcr_immutable_id": "dcr-" + "ab" * 16,
    "stream": "Custom-XavyoAudit_CL",
    "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "client_id": "00000000-0000-4000-8000-000000000002",
}


def test_a_sentinel_secret_is_bound_to_the_token_endpoint_and_the_ingestion_endpoint() -> None:
    """A sentinel credential goes to two origins, the authority (the client secret) and the
    data collection endpoint (the token): both are in its binding."""
    target = Target(
        DeliveryType.SENTINEL,
        "https://dce-1.westeurope-1.ingest.monitor.azure.com",
        SENTINEL_OPTIONS,
    )
    assert credential_binding(target) == (
        "sentinel",
        "https://dce-1.westeurope-1.ingest.monitor.azure.com:443",
        "https://login.microsoftonline.com:443",
    )


@pytest.mark.parametrize(
    ("change", "moves"),
    [
        ({"authority_host": "https://login.microsoftonline.us"}, True),
        ({"authority_host": "https://login.microsoftonline.com:8443"}, True),
        ({"authority_host": "https://LOGIN.microsoftonline.com/"}, False),
        ({"stream": "Custom-Other_CL"}, False),
        ({"dcr_immutable_id": "dcr-" + "cd" * 16}, False),
        ({"tenant": "contoso.onmicrosoft.com"}, False),
    ],
)
def test_only_moving_a_sentinel_host_moves_its_credential(
    change: Mapping[str, Any], moves: bool
) -> None:
    """Another authority host (or port) needs the secret again; another rule, stream or
    tenant on the same hosts does not."""
    endpoint = "https://dce-1.westeurope-1.ingest.monitor.azure.com"
    before = credential_binding(Target(DeliveryType.SENTINEL, endpoint, SENTINEL_OPTIONS))
    after = credential_binding(
        Target(DeliveryType.SENTINEL, endpoint, {**SENTINEL_OPTIONS, **change})
    )
    assert (before != after) is moves


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (Target(DeliveryType.S3, "s3://archive-a/x"), Target(DeliveryType.S3, "s3://archive-b/x")),
        (Target(DeliveryType.S3, "s3://archive-a", {"endpoint_url": "https://s3.example.com"}),
         Target(DeliveryType.S3, "s3://archive-b", {"endpoint_url": "https://s3.example.com"})),
        (Target(DeliveryType.S3, "s3://archive-a", {"endpoint_url": "https://s3.example.com"}),
         Target(DeliveryType.S3, "s3://archive-a", {"endpoint_url": "https://s3.example.net"})),
        (Target(DeliveryType.S3, "s3://archive-a"),
         Target(DeliveryType.S3, "s3://archive-a", {"region": "eu-west-1"})),
    ],
)  # fmt: skip
def test_another_bucket_or_server_moves_an_s3_credential(before: Target, after: Target) -> None:
    """An S3 access key is bound to its bucket and server: another bucket (with path
    addressing too, where the origin stays), server or region needs the secret again."""
    assert credential_binding(before) != credential_binding(after)


def test_another_s3_prefix_keeps_the_binding() -> None:
    """A new key prefix in the same bucket sends the access key to the same place."""
    same = credential_binding(Target(DeliveryType.S3, "s3://archive-a/old"))
    assert credential_binding(Target(DeliveryType.S3, "s3://archive-a/new/x")) == same
