"""Parsing a destination's endpoint URL: the checks every delivery type shares.

Each transport's config adds its own rules (scheme, default port, path) on top of
`split_url` and `check_host`. Errors name the field `endpoint`. (`egress.endpoint_host_port`
still reads an endpoint's host and port its own way, for the SSRF check.)
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from xavyo_siem.errors import InvalidDestination

__all__ = ["SplitUrl", "check_host", "is_hostname", "is_ip", "split_url"]

_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_MAX_ENDPOINT_CHARS: Final = 2048


class SplitUrl(NamedTuple):
    """An endpoint URL in parts: lower-case scheme, host, port (None if absent), and the
    rest after the authority (path, query, fragment), undecoded."""

    scheme: str
    host: str
    port: int | None
    rest: str


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


def split_url(endpoint: object) -> SplitUrl:
    """The parts of an endpoint URL, or InvalidDestination naming `endpoint`.

    Refused here for every type: a non-string or empty endpoint, one over 2048 characters
    or with spaces or controls, an unparsable URL, credentials in the URL, port 0.
    """
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidDestination("endpoint", "must be a non-empty URL string")
    if len(endpoint) > _MAX_ENDPOINT_CHARS or any(ord(c) < 33 or ord(c) == 127 for c in endpoint):
        raise InvalidDestination(
            "endpoint", f"must be at most {_MAX_ENDPOINT_CHARS} characters, without spaces"
        )
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise InvalidDestination("endpoint", f"is not a valid URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        raise InvalidDestination(
            "endpoint", "must not carry credentials; put them in the destination's secret"
        )
    if port == 0:
        raise InvalidDestination("endpoint", "port must be from 1 to 65535")
    rest = endpoint[len(parts.scheme) + 3 + len(parts.netloc) :] if "://" in endpoint else ""
    return SplitUrl(parts.scheme.lower(), parts.hostname or "", port, rest)


def check_host(host: str, endpoint: str) -> str:
    """`host` if it is a DNS name or an IP literal without a zone index."""
    if not host:
        raise InvalidDestination(
            "endpoint", f"needs a host, e.g. tcp://siem.example.com:514; got {endpoint[:60]!r}"
        )
    if "%" in host:
        raise InvalidDestination("endpoint", "IPv6 zone indexes (fe80::1%eth0) are not supported")
    if not is_ip(host) and not is_hostname(host):
        raise InvalidDestination("endpoint", f"host {host[:60]!r} is not a DNS name or IP address")
    return host
