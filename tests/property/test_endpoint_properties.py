"""Hostile endpoint URLs: each is refused when saved with an error naming `endpoint`, or the
host, port and scheme validation saw are exactly what the transport connects to.

The URLs are built from parts that URL parsers are known to read differently (brackets in
odd places, backslashes, userinfo, percent-encoding, Unicode and IDNA, whitespace and
control characters, out-of-range ports, empty hosts, IPv6 zone indexes, mixed-case schemes),
then spoiled further by hostile characters inserted anywhere. For an accepted one, the SSRF
guard at save time resolves the very host aiohttp's request (built from the config as the
transport builds it) connects to, and the syslog transports hand the resolver that same
ASCII name.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any, Final

import pytest
from aiohttp import ClientRequest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from xavyo_siem.delivery import (
    ElasticsearchConfig,
    ElasticsearchTransport,
    FileConfig,
    HecConfig,
    HecTransport,
    S3Config,
    S3Credentials,
    S3Transport,
    SentinelConfig,
    SentinelTransport,
    SyslogConfig,
    TransportConfig,
    WebhookConfig,
    WebhookTransport,
    connect_target,
    validate_destination,
)
from xavyo_siem.delivery.endpoints import is_ip, split_url
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

HEC_TOKEN: Final = "00000000-0000-4000-8000-000000000001"
PUBLIC: Final = "93.184.216.34"

_SCHEMES: Final = st.sampled_from(
    (
        "https",
        "HTTPS",
        "HtTpS",
        "http",
        "tcp",
        "TCP",
        "tls",
        "Tls",
        "udp",
        "relp",
        "file",
        "ftp",
        "",
    )
)
_SEPARATORS: Final = st.sampled_from(("://", "://", "://", ":/", ":", ":\\\\", ":/\\", ":///"))
_USERINFO: Final = st.sampled_from(
    ("", "", "", "", "u@", "u:p@", "@", ":@", "a%40b@", "h\\@", "siem.example@", "[::1]@")
)
_HOSTS: Final = st.one_of(
    st.sampled_from(
        (
            "siem.example",
            "SIEM.Example.",
            "93.184.216.34",
            "127.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "2130706433",
            "[2606:4700::1111]",
            "a[2606:4700::1111]",
            "[2606:4700::1111]a",
            "[2606:4700::1111",
            "2606:4700::1111]",
            "[[::1]]",
            "[::1]]",
            "[::ffff:127.0.0.1]",
            "[fe80::1%25eth0]",
            "[fe80::1%eth0]",
            "[v1.x]",
            "[127.0.0.1]",
            "::1",
            "siem%2eexample",
            "siem.example%00",
            "bücher.example",
            "faß.example",
            "İstanbul.example",
            "ΣΙΕΜ.example",
            "siem\uff0eexample",
            "siem\u200b.example",
            "xn--bcher-kva.example",
            "xn--zz.example",
            "a..b",
            "-a.example",
            "_srv.example",
            "a" * 64 + ".example",
            "",
        )
    ),
    st.text(alphabet=st.sampled_from("ab09.-_%[]:@\\üß"), max_size=20),
)
_PORTS: Final = st.sampled_from(
    ("", "", ":", ":0", ":1", ":8088", ":65535", ":65536", ":+1", ": 1", ":08088", ":1:2", ":٣")
)
_PATHS: Final = st.sampled_from(
    ("", "/", "/x", "/services/collector", "?q", "#f", "/x?a=1", "\\x", "/x\\y", "/%2e%2e/", "/ü")
)
_HOSTILE_CHARS: Final = st.sampled_from(
    (
        "\\", "\\", "\\", "[", "]", "@", "%", ":", "/", "?", "#", " ", "\t", "\n", "\r",
        "\x00", "\x7f", "\u00a0", "\u200b", "\u202e", "\u3000", "\uff0e", "\u2100", "ß", "%25",
    )
)  # fmt: skip
_KINDS: Final = st.sampled_from(list(DeliveryType))


_SCHEME_OF: Final = {
    DeliveryType.SYSLOG_TCP: "tcp",
    DeliveryType.SYSLOG_TLS: "tls",
    DeliveryType.SYSLOG_UDP: "udp",
    DeliveryType.SYSLOG_RELP: "relp",
    DeliveryType.WEBHOOK: "https",
    DeliveryType.SPLUNK_HEC: "https",
    DeliveryType.ELASTICSEARCH: "https",
    DeliveryType.SENTINEL: "https",
    DeliveryType.FILE: "file",
    DeliveryType.S3: "s3",
}
# The options a type needs besides its endpoint (a sentinel destination names its rule).
_NEEDED_OPTIONS: Final[dict[DeliveryType, dict[str, str]]] = {
    DeliveryType.SENTINEL: {
        "dcr_immutable_id": "dcr-" + "0" * 32,
        "stream": "Custom-XavyoAudit_CL",
        "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "00000000-0000-4000-8000-000000000002",
    }
}


_GOOD_HOSTS: Final = st.sampled_from(
    (
        "siem.example",
        "SIEM.Example.",
        "93.184.216.34",
        "[2606:4700::1111]",
        "[::ffff:93.184.216.34]",
        "bücher.example",
        "faß.example",
        "İstanbul.example",
        "ΣΙΕΜ.example",
        "siem\uff0eexample",
        "xn--bcher-kva.example",
        "_srv.example",
    )
)
_GOOD_PORTS: Final = st.sampled_from(("", ":1", ":514", ":8088", ":08088", ":65535"))
_GOOD_PATHS: Final = {
    "https": st.sampled_from(("", "/", "/x", "/services/collector", "/x?a=1", "/ü", "/%2e%2e/")),
    "file": st.sampled_from(("/var/log/x.log", "/tmp/%C3%BC.log")),
}


def _spoiled(draw: st.DrawFn, good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> str:
    """A good part most of the time, a hostile one otherwise."""
    return draw(bad) if draw(st.integers(min_value=0, max_value=3)) == 0 else draw(good)


@st.composite
def hostile_urls(draw: st.DrawFn, kind: DeliveryType) -> str:
    """A URL for `kind`: each part (scheme in mixed case, separator, userinfo, host, port,
    path) plausible most of the time and one parsers disagree on otherwise, with hostile
    characters inserted anywhere now and then."""
    wanted = _SCHEME_OF[kind]
    scheme = "".join(c.upper() if draw(st.booleans()) else c for c in wanted)
    scheme = _spoiled(draw, st.just(scheme), _SCHEMES)
    separator = _spoiled(draw, st.just("://"), _SEPARATORS)
    userinfo = _spoiled(draw, st.just(""), _USERINFO)
    if kind is DeliveryType.FILE:
        host = _spoiled(draw, st.sampled_from(("", "localhost")), _HOSTS)
        port = _spoiled(draw, st.just(""), _PORTS)
    else:
        host = _spoiled(draw, _GOOD_HOSTS, _HOSTS)
        port = _spoiled(draw, _GOOD_PORTS, _PORTS)
    path = _spoiled(draw, _GOOD_PATHS.get(wanted, st.sampled_from(("", "/"))), _PATHS)
    url = f"{scheme}{separator}{userinfo}{host}{port}{path}"
    for _ in range(draw(st.sampled_from((0, 0, 0, 0, 0, 1, 2, 3)))):
        at = draw(st.integers(min_value=0, max_value=len(url)))
        url = url[:at] + draw(_HOSTILE_CHARS) + url[at:]
    return url


def _validated(kind: DeliveryType, endpoint: str) -> TransportConfig | InvalidDestination:
    try:
        return validate_destination(kind, endpoint, _NEEDED_OPTIONS.get(kind, {}), development=True)
    except InvalidDestination as exc:
        return exc


def _answer_public(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port))]


def _resolved_at_save(host: str, port: int) -> str:
    """The host name the SSRF guard asks the resolver for when the destination is saved."""
    asked: list[str] = []

    def resolver(name: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(name)
        return _answer_public(name, port)

    EgressGuard(getaddrinfo=resolver).resolve(host, port)
    return asked[0] if asked else ""


def _client_request(url: URL) -> ClientRequest:
    loop = asyncio.new_event_loop()
    try:
        return ClientRequest("POST", url, loop=loop)
    finally:
        loop.close()


def _assert_http(
    config: WebhookConfig | HecConfig | ElasticsearchConfig | SentinelConfig, host: str, port: int
) -> None:
    if isinstance(config, HecConfig):
        HecTransport(config, token=HEC_TOKEN, event_is_json=True, development=True)
    elif isinstance(config, ElasticsearchConfig):
        ElasticsearchTransport(config, secret=None, development=True)
    elif isinstance(config, SentinelConfig):
        SentinelTransport(config, client_secret=HEC_TOKEN, development=True)
    else:
        WebhookTransport(config, event_is_json=True, development=True)
    request = _client_request(URL(config.url))  # the URL the transports send to
    assert (request.host, request.port) == (host, port)
    assert request.url.scheme == split_url(config.url).scheme
    assert request.is_ssl() is (request.url.scheme == "https")


def _assert_s3(config: S3Config, host: str, port: int) -> None:
    key = S3Credentials("AKIAEXAMPLE", "secret-example")
    S3Transport(config, credentials=key, tenant_id=uuid.uuid4(), event_is_json=True)
    request = _client_request(URL(config.base_url))  # the URL the transport sends to
    assert (request.host, request.port) == (host, port)
    assert request.is_ssl()


def _assert_syslog(config: SyslogConfig, host: str, port: int) -> None:
    assert (config.host, config.port) == (host, port)  # what the transport resolves
    if is_ip(host):
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    else:
        assert host.encode("idna").decode() == host  # the stdlib resolver asks for this name
    reparsed = split_url(config.endpoint)
    assert (reparsed.host, reparsed.port) == (host, port)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=_KINDS)
def test_a_hostile_endpoint_is_refused_or_connects_where_validation_looked(
    data: st.DataObject, kind: DeliveryType
) -> None:
    """Refused at save with an error naming `endpoint`, or the scheme, host and port that
    validation and the SSRF guard saw are what the transport's client connects to (and
    building the transport and its request raises nothing)."""
    accepted = assert_endpoint_is_refused_or_consistent(kind, data.draw(hostile_urls(kind)))
    event("accepted" if accepted else "refused")


@pytest.mark.parametrize(
    ("kind", "endpoint"),
    [
        (DeliveryType.WEBHOOK, "https://a[2606:4700::1111]/x"),
        (DeliveryType.SPLUNK_HEC, "https://a\\[::1]:8088/"),
        (DeliveryType.SYSLOG_TCP, "tcp://siem.example\\@127.0.0.1:514"),
        (DeliveryType.WEBHOOK, "HTTPS://bücher.example/x"),
        (DeliveryType.SYSLOG_TLS, "TlS://[::ffff:127.0.0.1]:6514"),
        (DeliveryType.SYSLOG_TCP, "tcp://[2606:4700::1111]@"),  # yarl raises IndexError
    ],
)
def test_known_disagreements_are_refused_or_consistent(kind: DeliveryType, endpoint: str) -> None:
    """The endpoints that once passed validation and then failed in aiohttp are refused or
    connect where validation looked."""
    assert_endpoint_is_refused_or_consistent(kind, endpoint)


def assert_endpoint_is_refused_or_consistent(kind: DeliveryType, endpoint: str) -> bool:
    """Refused with an error on `endpoint` (False), or consistent from validation to
    connect (True)."""
    config = _validated(kind, endpoint)
    if isinstance(config, InvalidDestination):
        assert config.field == "endpoint"
        assert config.reason.strip()
        assert len(config.reason) <= 200
        return False
    target = connect_target(config)
    if isinstance(config, FileConfig):
        assert target is None
        return True
    assert target is not None
    host, port = target
    assert host
    assert host.isascii()
    assert host == host.lower()
    assert 1 <= port <= 65535
    if isinstance(config, S3Config):  # the bucket, in AWS's host name (virtual addressing)
        assert (host, port) == (f"{URL(endpoint).raw_host}.s3.us-east-1.amazonaws.com", 443)
    else:
        assert URL(endpoint).raw_host == host
    assert _resolved_at_save(host, port) == host
    if isinstance(config, S3Config):
        _assert_s3(config, host, port)
    elif isinstance(config, SyslogConfig):
        _assert_syslog(config, host, port)
    else:
        _assert_http(config, host, port)
    return True
