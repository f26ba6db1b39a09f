"""Parsing a destination's endpoint URL, once, with the parser the transports connect with.

Every endpoint is parsed by yarl, the URL library of aiohttp (the HTTP transports' client),
and the host taken from it is yarl's ASCII form (`raw_host`: lower case, IDNA as punycode,
IPv6 without brackets), which is what aiohttp connects to and what the syslog transports
hand to the resolver. Validation, the SSRF guard and the transports therefore all see the
same host and port; there is no second parser to disagree with.

Refused for every type, naming the field `endpoint` and the rule: a non-string, empty or
over-long endpoint; spaces, control or other non-printing characters; backslashes; a URL
without `scheme://`; credentials (`user@`, `user:password@`); a port that is not 1 to
65535 written in digits; brackets that do not hold exactly one IPv6 address; an IPv6 zone
index; percent-encoding in the host; a host that is neither a DNS name nor an IP address,
or that looks like an IPv4 address without being a dotted quad (`127.1`, `0x7f.1`). Each
transport's config adds its own rules (scheme, default port, path) on top of `split_url`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, NamedTuple

from yarl import URL

from xavyo_siem.errors import InvalidDestination

__all__ = ["SplitUrl", "check_host", "is_hostname", "is_ip", "split_url"]

_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_NUMERIC_LABEL: Final = re.compile(r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)")
_PORT: Final = re.compile(r"[0-9]{1,5}")
_MAX_ENDPOINT_CHARS: Final = 2048


class SplitUrl(NamedTuple):
    """An endpoint URL in parts: lower-case scheme, the host the transport connects to
    (yarl's ASCII form, "" when there is none), port (None if absent), the rest after the
    authority (path, query, fragment, undecoded), and the parsed `url` itself."""

    scheme: str
    host: str
    port: int | None
    rest: str
    url: URL


def is_ip(value: str) -> bool:
    """Whether `value` is an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_hostname(value: str) -> bool:
    """Whether `value` is a DNS name (labels of letters, digits, `-` and `_`)."""
    labels = value.rstrip(".").split(".")
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _refuse(reason: str) -> InvalidDestination:
    return InvalidDestination("endpoint", reason)


def _check_characters(endpoint: str) -> None:
    """Refuse characters that parsers treat differently: controls, spaces, backslashes."""
    # Every character printable and none a space (the one printable space): nothing to find.
    if endpoint.isprintable() and " " not in endpoint and "\\" not in endpoint:
        return
    for position, char in enumerate(endpoint):
        if char.isspace() or not char.isprintable():
            raise _refuse(
                f"contains U+{ord(char):04X} at position {position}; spaces, control and"
                " other non-printing characters are not allowed"
            )
    if "\\" in endpoint:
        raise _refuse("contains a backslash; URLs separate their parts with '/'")


def _check_authority(authority: str) -> None:
    """The authority as written: no userinfo, a bracketed host only for IPv6, a numeric port."""
    if "@" in authority:
        raise _refuse("must not carry credentials; put them in the destination's secret")
    if authority.startswith("["):
        inside, _, after = authority[1:].partition("]")
        if "%" in inside:
            raise _refuse("IPv6 zone indexes (fe80::1%eth0) are not supported")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise _refuse(f"[{inside[:60]}] is not an IPv6 address") from None
        port_text = after[1:] if after.startswith(":") else None
        if after and port_text is None:
            raise _refuse("only ':port' may follow a bracketed IPv6 address")
    else:
        if "[" in authority or "]" in authority:
            raise _refuse("brackets may only enclose a whole IPv6 address: https://[2001:db8::1]/")
        host_text, colon, after = authority.partition(":")
        port_text = after if colon else None
        if "%" in host_text:
            raise _refuse("the host must not be percent-encoded")
    if port_text is not None and not (_PORT.fullmatch(port_text) and 0 < int(port_text) < 65536):
        raise _refuse(f"port must be a number from 1 to 65535, got {port_text[:10]!r}")


def _authority_of(after_scheme: str) -> str:
    """The authority: up to the first '/', '?' or '#', where yarl and RFC 3986 end it."""
    ends = [i for i in map(after_scheme.find, "/?#") if i >= 0]
    return after_scheme[: min(ends)] if ends else after_scheme


def split_url(endpoint: object) -> SplitUrl:
    """The parts of an endpoint URL as yarl parses it, or InvalidDestination naming
    `endpoint` (the rules are in the module docstring)."""
    if not isinstance(endpoint, str) or not endpoint:
        raise _refuse("must be a non-empty URL string")
    if len(endpoint) > _MAX_ENDPOINT_CHARS:
        raise _refuse(f"must be at most {_MAX_ENDPOINT_CHARS} characters")
    _check_characters(endpoint)
    scheme_text, marker, after = endpoint.partition("://")
    if not marker or not scheme_text:
        raise _refuse(f"must be a URL of the form scheme://host..., got {endpoint[:60]!r}")
    authority = _authority_of(after)
    _check_authority(authority)
    try:
        url = URL(endpoint)
        host = url.raw_host or ""
        port = url.explicit_port
    except (ValueError, TypeError, IndexError) as exc:  # IDNA: UnicodeError, a ValueError
        raise _refuse(f"is not a valid URL ({str(exc)[:100]})") from None
    if url.scheme != scheme_text.lower():
        raise _refuse(f"has an invalid scheme {scheme_text[:20]!r}")
    return SplitUrl(url.scheme, host, port, after[len(authority) :], url)


def check_host(host: str, endpoint: str) -> str:
    """`host` if it is a DNS name or an IP literal (IPv4 in dotted-quad form)."""
    if not host:
        raise _refuse(f"needs a host, e.g. tcp://siem.example.com:514; got {endpoint[:60]!r}")
    if is_ip(host):
        return host
    if not is_hostname(host):
        raise _refuse(f"host {host[:60]!r} is not a DNS name or IP address")
    if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        raise _refuse(
            f"host {host[:60]!r} is neither a DNS name (its last label is a number) nor an"
            " IPv4 address in dotted-quad form"
        )
    return host
