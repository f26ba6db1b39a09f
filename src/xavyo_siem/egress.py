"""The SSRF guard: which network addresses a tenant's destination may reach.

A tenant sets the host of its webhook, HEC or syslog destination, so a tenant could aim the
service at the provider's own network (a database, an admin port, the cloud metadata
service). Every address a destination connects to is classified here; loopback, private,
shared (CGNAT), link-local, multicast, unspecified, reserved and cloud-metadata addresses
are refused unless the operator's allow-list (`XAVYO_SIEM_EGRESS_ALLOW`: CIDRs or host
names) opens them. IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
SIIT, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address inside.

The check runs twice: when a destination is saved (`EgressGuard.resolve` of the host and
port its transport will connect to, `delivery.connect_target`: a clear 4xx for the tenant),
and when a transport connects (`check_egress` for syslog, `GuardedResolver` for aiohttp),
against the answer of *that* resolution; the transport then connects to exactly the
addresses that passed, so a name whose answer changes after it was saved (DNS rebinding)
is refused at connect time. Both see the host of the one parse of the endpoint
(`delivery/endpoints.py`, yarl's, as aiohttp connects). Every address a name resolves to
must pass: one internal
address refuses the name.

`classify_address` is pure. `EgressGuard` holds the allow-list and the resolver function
(`socket.getaddrinfo`; tests pass another to play a name whose answer changes).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp.abc import AbstractResolver, ResolveResult

from xavyo_siem.errors import InvalidDestination, SiemError
from xavyo_siem.settings import Settings

__all__ = [
    "EgressDenied",
    "EgressGuard",
    "EgressSettingError",
    "GuardedResolver",
    "IPAddress",
    "check_egress",
    "classify_address",
    "refusal_message",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
GetAddrInfo = Callable[..., Sequence[AddrInfo]]

DEFAULT_RESOLVE_TIMEOUT_S: Final = 10.0
ALLOW_SETTING: Final = "XAVYO_SIEM_EGRESS_ALLOW"


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Checked in this order; the first match names the reason. Metadata comes first so that
# 169.254.169.254 is called what it is rather than "link-local".
_REFUSED: Final[tuple[tuple[tuple[IPNetwork, ...], str], ...]] = (
    (
        _nets("169.254.169.254/32", "169.254.170.2/32", "fd00:ec2::254/128", "100.100.100.200/32"),
        "a cloud metadata address",
    ),
    (_nets("0.0.0.0/8", "::/128"), "an unspecified address"),
    (_nets("127.0.0.0/8", "::1/128"), "a loopback address"),
    (
        _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10"),
        "a private address",
    ),
    (_nets("100.64.0.0/10", "64:ff9b:1::/48"), "a private (shared, carrier-grade NAT) address"),
    (_nets("169.254.0.0/16", "fe80::/10"), "a link-local address"),
    (_nets("224.0.0.0/4", "ff00::/8"), "a multicast address"),
    (
        _nets(
            "192.0.0.0/24",
            "192.0.2.0/24",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "240.0.0.0/4",  # includes the broadcast address 255.255.255.255
            "100::/64",
            "2001::/23",  # IETF protocol assignments, Teredo among them
            "2001:db8::/32",
            "3fff::/20",
            "5f00::/16",
            "::/96",  # IPv4-compatible (deprecated)
        ),
        "a reserved address",
    ),
)
_MAPPED: Final = ipaddress.ip_network("::ffff:0:0/96")
_SIIT: Final = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR: Final = ipaddress.ip_network("2002::/16")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, SIIT, NAT64, 6to4), if any."""
    if address in _MAPPED or address in _SIIT or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIXTOFOUR:
        return address.sixtofour
    return None


def classify_address(address: IPAddress | str) -> str | None:
    """Why `address` is internal ("a loopback address", ...), or None for a public one.

    IPv6 addresses that carry an IPv4 address are judged by the IPv4 address inside.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = classify_address(inner)
            return None if reason is None else f"{reason} (the IPv4 {inner} inside {ip})"
    for networks, reason in _REFUSED:
        if any(ip in network for network in networks):
            return reason
    return None


def _parse_allow(entries: Iterable[str]) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        name = entry[2:] if entry.startswith("*.") else entry
        labels = name.split(".")
        if not name or not all(
            label and len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label)
            for label in labels
        ):
            raise EgressSettingError(
                f"{ALLOW_SETTING}: {raw.strip()[:60]!r} is neither a CIDR nor a host name"
            )
        hosts.add(entry)
    return tuple(networks), frozenset(hosts)


class EgressSettingError(SiemError, ValueError):
    """An entry of the operator's allow-list is neither a CIDR nor a host name."""


class EgressDenied(OSError):
    """A connect-time refusal: the destination's host resolved to an address it may not reach.

    An `OSError`, so connection code that translates socket errors sees it; the transports
    report it as `Misconfigured` with `reason`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EgressGuard:
    """The operator's allow-list, and the function that resolves names.

    `allow` entries are CIDRs (`10.20.0.0/16`, `::1/128`) or host names (`siem.corp`, or
    `*.corp` for every name under it). An allowed host name is trusted whatever it resolves
    to; otherwise every address must be public or inside an allowed CIDR.
    """

    allow: tuple[str, ...] = ()
    getaddrinfo: GetAddrInfo = socket.getaddrinfo
    resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks, hosts = _parse_allow(self.allow)
        object.__setattr__(self, "_networks", networks)
        object.__setattr__(self, "_hosts", hosts)

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressGuard:
        """The guard of `settings.egress_allow`; EgressSettingError names a bad entry."""
        return cls(allow=tuple(settings.egress_allow))

    def host_allowed(self, host: str) -> bool:
        """Whether the operator allowed this host name (whatever it resolves to)."""
        name = host.lower().rstrip(".")
        if name in self._hosts:
            return True
        return any(entry.startswith("*.") and name.endswith(entry[1:]) for entry in self._hosts)

    def refusal(self, address: IPAddress | str) -> str | None:
        """Why connecting to `address` is refused, or None when it is allowed."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                candidates.append(inner)
        if any(c in net for c in candidates for net in self._networks if c.version == net.version):
            return None
        return classify_address(ip)

    def check_addresses(self, host: str, addresses: Sequence[str]) -> None:
        """Raise `InvalidDestination("endpoint", ...)` unless every address may be reached."""
        if self.host_allowed(host):
            return
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise InvalidDestination("endpoint", refusal_message(host, address, reason))

    def resolve(self, host: str, port: int, *, kind: int = socket.SOCK_STREAM) -> list[AddrInfo]:
        """Resolve `host` (blocking) and check every answer; the answers, in resolver order.

        An IP literal is checked without a lookup. A name that does not resolve raises
        `InvalidDestination("endpoint", ...)`.
        """
        try:
            infos = self.getaddrinfo(host, port, type=kind)
        except (socket.gaierror, UnicodeError) as exc:
            raise InvalidDestination(
                "endpoint", f"host {host[:60]!r} does not resolve ({_gai_detail(exc)})"
            ) from None
        return self._checked(host, infos)

    def _checked(self, host: str, infos: Sequence[AddrInfo]) -> list[AddrInfo]:
        if not infos:
            raise InvalidDestination("endpoint", f"host {host[:60]!r} has no address")
        self.check_addresses(host, [str(info[4][0]) for info in infos])
        return list(infos)


def _gai_detail(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def refusal_message(host: str, address: str, reason: str) -> str:
    """The rule a refused endpoint broke, naming the address and why it is internal."""
    what = f"{address} is" if host == address else f"{host} resolves to {address},"
    return (
        f"{what} {reason}; destinations may not reach internal networks"
        f" (an operator can allow it with {ALLOW_SETTING})"
    )


async def check_egress(
    host: str,
    port: int,
    guard: EgressGuard,
    *,
    kind: int = socket.SOCK_STREAM,
    family: int = socket.AF_UNSPEC,
) -> list[AddrInfo]:
    """Resolve `host` now (without blocking the loop) and check every answer; the answers.

    Raises `EgressDenied` when an answer may not be reached, and `socket.gaierror` (or
    `TimeoutError`) when the name does not resolve, which a transport reports as "retry
    later".
    """
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.run_in_executor(None, lambda: guard.getaddrinfo(host, port, family=family, type=kind)),
        guard.resolve_timeout_s,
    )
    try:
        return guard._checked(host, infos)
    except InvalidDestination as exc:
        raise EgressDenied(exc.reason) from None


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses names resolving to addresses the guard forbids.

    aiohttp connects to exactly the addresses returned here, and still uses the host name
    for SNI, the certificate check and the Host header. IP literals never reach a
    resolver: `open_transport` checks those itself.
    """

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await check_egress(host, port, self._guard, family=family)
        return [
            ResolveResult(
                hostname=host,
                host=str(info[4][0]),
                port=int(info[4][1]),
                family=info[0],
                proto=info[2],
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for info in infos
        ]

    async def close(self) -> None:
        return None
