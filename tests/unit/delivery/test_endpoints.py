"""The one endpoint parser: what it refuses (naming `endpoint` and the rule) and the host and
port each delivery type then connects to."""

from __future__ import annotations

import pytest

from xavyo_siem.delivery import connect_target, validate_destination
from xavyo_siem.errors import InvalidDestination

REFUSED = [
    ("webhook", "https://a[2606:4700::1111]/x", "brackets may only enclose a whole IPv6"),
    ("webhook", "https://[2606:4700::1111]x/", "only ':port' may follow"),
    ("webhook", "https://[v1.x]/", "is not an IPv6 address"),
    ("webhook", "https://[127.0.0.1]/", "is not an IPv6 address"),
    ("webhook", "https://a\\b.example/x", "backslash"),
    ("webhook", "https:\\\\siem.example\\x", "backslash"),
    ("webhook", "https://siem.example/x\\y", "backslash"),
    ("webhook", "https://user@siem.example/", "must not carry credentials"),
    ("webhook", "https://user:pw@siem.example/", "must not carry credentials"),
    ("webhook", "https://@siem.example/", "must not carry credentials"),
    ("webhook", "https://siem%2eexample/", "must not be percent-encoded"),
    ("webhook", "https://[fe80::1%25eth0]/", "zone indexes"),
    ("syslog_tcp", "tcp://[fe80::1%eth0]:514", "zone indexes"),
    ("webhook", "https://siem.example:0/", "port must be a number from 1 to 65535"),
    ("webhook", "https://siem.example:65536/", "port must be a number from 1 to 65535"),
    ("webhook", "https://siem.example:+443/", "port must be a number from 1 to 65535"),
    ("webhook", "https://siem.example:/", "port must be a number from 1 to 65535"),
    ("syslog_tcp", "tcp://siem.example:514:515", "port must be a number from 1 to 65535"),
    ("webhook", "https://siem.example /", "U+0020 at position 20"),
    ("webhook", "https://siem.example/\r\nX: 1", "U+000D"),
    ("webhook", "https://siem\u200b.example/", "U+200B"),
    ("webhook", "\u202ehttps://siem.example/", "U+202E"),
    ("webhook", "https:///x", "needs a host"),
    ("webhook", "https://", "needs a host"),
    ("syslog_tcp", "tcp:siem.example:514", "scheme://host"),
    ("file", "file:/var/log/x", "scheme://host"),
    ("webhook", "https://127.1/", "dotted-quad"),
    ("webhook", "https://0x7f.1/", "dotted-quad"),
    ("syslog_udp", "udp://2130706433", "dotted-quad"),
    ("webhook", "https://a..b/", "is not a DNS name"),
    ("webhook", "https://-a.example/", "is not a DNS name"),
    ("webhook", "h t t p s://x/", "U+0020"),
    ("webhook", "", "non-empty URL string"),
    ("webhook", "https://" + "a" * 2048, "at most 2048 characters"),
]


@pytest.mark.parametrize(("kind", "endpoint", "why"), REFUSED, ids=[e[:40] for _, e, _ in REFUSED])
def test_hostile_endpoints_are_refused_naming_the_rule(kind: str, endpoint: str, why: str) -> None:
    """Each endpoint two URL parsers could read differently is refused on `endpoint`, and
    the message says which rule it broke."""
    with pytest.raises(InvalidDestination) as refused:
        validate_destination(kind, endpoint, {}, development=True)
    assert refused.value.field == "endpoint"
    assert why in refused.value.reason


@pytest.mark.parametrize(
    ("kind", "endpoint", "expected"),
    [
        ("webhook", "https://siem.example/hook?x=1", ("siem.example", 443)),
        ("webhook", "HTTPS://SIEM.Example./hook", ("siem.example.", 443)),
        ("splunk_hec", "http://siem.example:8088", ("siem.example", 8088)),
        ("webhook", "https://bücher.example/x", ("xn--bcher-kva.example", 443)),
        ("webhook", "https://faß.example/", ("xn--fa-hia.example", 443)),
        ("webhook", "https://[::ffff:127.0.0.1]:8443/", ("::ffff:7f00:1", 8443)),
        ("syslog_tcp", "tcp://[::1]:5514", ("::1", 5514)),
        ("syslog_udp", "udp://10.0.0.1", ("10.0.0.1", 514)),
        ("syslog_tls", "TLS://Collector", ("collector", 6514)),
        ("syslog_tls", "tls://bücher.example", ("xn--bcher-kva.example", 6514)),
        ("file", "file:///var/log/x", None),
    ],
)
def test_the_host_and_port_connected_to(
    kind: str, endpoint: str, expected: tuple[str, int] | None
) -> None:
    """The host and port a destination connects to are yarl's ASCII host (lower case,
    punycode, IPv6 without brackets) and the port, or its scheme's default."""
    config = validate_destination(kind, endpoint, {}, development=True)
    assert connect_target(config) == expected
