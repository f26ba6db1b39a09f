"""The SSRF guard's pure parts: address classification, the allow-list, name checks."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from xavyo_siem.egress import (
    EgressDenied,
    EgressGuard,
    EgressSettingError,
    GuardedResolver,
    check_egress,
    classify_address,
)
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.settings import Settings

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "reserved"),
    ("2001:db8::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:0:a00:1", "private"),  # SIIT form of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
    ("64:ff9b:1::1", "carrier-grade NAT"),
    ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"),  # Teredo
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_internal_addresses_are_classified_with_their_kind(address: str, kind: str) -> None:
    """Every internal range, in every IPv4 and IPv6 spelling, is named for what it is."""
    reason = classify_address(address)
    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_not_refused(address: str) -> None:
    """Public IPv4, IPv6 and IPv4-mapped public addresses pass."""
    assert classify_address(address) is None
    assert EgressGuard().refusal(address) is None


def test_allow_list_opens_cidrs_and_names_but_nothing_else() -> None:
    """Allowed CIDRs (also in IPv4-mapped form) and names pass; everything else stays refused."""
    guard = EgressGuard(allow=("127.0.0.0/8", "10.20.0.0/16", "siem.corp", "*.internal.example"))
    assert guard.refusal("127.0.0.1") is None
    assert guard.refusal("::ffff:127.0.0.1") is None
    assert guard.refusal("10.20.3.4") is None
    assert guard.refusal("10.21.0.1") is not None
    assert guard.refusal("169.254.169.254") is not None
    assert guard.refusal("::1") is not None
    assert guard.host_allowed("SIEM.corp.")
    assert guard.host_allowed("a.b.internal.example")
    assert not guard.host_allowed("internal.example")
    assert not guard.host_allowed("evil-siem.corp")


def test_an_allow_list_entry_that_is_neither_cidr_nor_name_is_refused_naming_the_setting() -> None:
    """A typo in XAVYO_SIEM_EGRESS_ALLOW stops the process with the setting's name."""
    with pytest.raises(EgressSettingError, match="XAVYO_SIEM_EGRESS_ALLOW"):
        EgressGuard.from_settings(Settings(egress_allow=("10.0.0.0/8", "not a host!")))


def fake_dns(answers: dict[str, list[str]]) -> Any:
    """A getaddrinfo over a fixed table of names (for answers no real resolver here gives)."""

    def getaddrinfo(host: str, port: int, family: int = 0, type: int = 0, **_: Any) -> Any:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                type or socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in answers[host]
        ]

    return getaddrinfo


def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    """Every answer must pass: one private address refuses the whole name."""
    guard = EgressGuard(getaddrinfo=fake_dns({"mixed.example": ["8.8.8.8", "10.0.0.5"]}))
    with pytest.raises(InvalidDestination, match=r"mixed.example resolves to 10.0.0.5, a private"):
        guard.resolve("mixed.example", 443)


def test_an_unresolvable_name_is_refused_at_save_time() -> None:
    """A name with no address cannot be checked, so it is not saved."""
    guard = EgressGuard(getaddrinfo=fake_dns({}))
    with pytest.raises(InvalidDestination, match="does not resolve") as caught:
        guard.resolve("nowhere.example", 443)
    assert caught.value.field == "endpoint"


def test_localhost_resolves_for_real_to_a_refused_loopback_address() -> None:
    """The system resolver's answer for localhost is checked like any other."""
    with pytest.raises(InvalidDestination, match=r"localhost resolves to .*loopback"):
        EgressGuard().resolve("localhost", 514)
    assert EgressGuard(allow=("localhost",)).resolve("localhost", 514)


async def test_connect_time_check_raises_egress_denied_on_a_changed_answer() -> None:
    """The async check resolves afresh: a name that turned internal is denied at connect time."""
    answers = {"rebind.example": ["93.184.216.34"]}
    guard = EgressGuard(getaddrinfo=fake_dns(answers))
    assert guard.resolve("rebind.example", 443)
    answers["rebind.example"] = ["127.0.0.1"]
    with pytest.raises(EgressDenied, match=r"resolves to 127\.0\.0\.1, a loopback"):
        await check_egress("rebind.example", 443, guard)


async def test_the_aiohttp_resolver_returns_only_checked_answers() -> None:
    """GuardedResolver hands aiohttp the checked addresses, and refuses an internal one."""
    answers = {"hec.example": ["93.184.216.34"], "meta.example": ["169.254.169.254"]}
    resolver = GuardedResolver(EgressGuard(getaddrinfo=fake_dns(answers)))
    results = await resolver.resolve("hec.example", 8088)
    assert [(r["hostname"], r["host"], r["port"]) for r in results] == [
        ("hec.example", "93.184.216.34", 8088)
    ]
    with pytest.raises(EgressDenied, match="cloud metadata"):
        await resolver.resolve("meta.example", 443)
    await resolver.close()
