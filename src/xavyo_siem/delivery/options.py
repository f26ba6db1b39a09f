"""Validation of a destination's endpoint and options into a frozen transport config.

`validate_destination(delivery_type, endpoint, options, development=...)` is pure (no I/O,
no clock, no environment): it either returns one of the config dataclasses below or raises
`InvalidDestination` naming the field and the rule. Transports are built from these configs
only, so a transport never sees an unchecked option ("validate, then open").

Option values may arrive typed (JSON from the API) or as strings (`--option KEY=VALUE` on
the command line): integers accept `int` or a decimal string, numbers accept `int`, `float`
or a decimal string, booleans accept `bool` or `true`/`false`/`yes`/`no`/`on`/`off`/`1`/`0`.
An unknown option, or an option of another delivery type, is refused with a message naming
every such option and the options that type accepts.

Options every delivery type accepts (the pipeline sizes its batches with them):

* `batch_max_events`: int 1..100000, events per batch (HTTP: also per request); default
  syslog 1000, webhook 100, HEC 500, file 1000.
* `batch_max_bytes`: int 1024..67108864, encoded bytes per batch (HTTP: uncompressed bytes
  per request); default syslog 1 MiB, webhook 256 KiB, HEC 1 MiB, file 4 MiB.
* `start`: `now` (default), `beginning` or an ISO 8601 time with a UTC offset, where a new
  destination's cursor starts.

Per type, defaults in parentheses (types, ranges and meanings in docs/delivery.md):

* syslog TCP: `framing` (`octet`), `timeout_s` (10).
* syslog TLS: `framing` (`octet`, the only value allowed), `timeout_s` (10), and the TLS
  options `ca_file`, `cert_file`, `key_file`, `fingerprint`, `server_name`, `tls_verify` (true).
* syslog UDP: `max_datagram_bytes` (2048), `timeout_s` (10).
* webhook: `body` (`json_array`), `gzip` (false), `timeout_s` (30), and the TLS options.
* Splunk HEC: `gzip` (true), `ack` (false), `index`, `source`, `sourcetype`, `host` (unset),
  `timeout_s` (30), `ack_timeout_s` (120), `ack_poll_interval_s` (1), `ack_max_pending`
  (16), `max_requests_in_flight` (3), and the TLS options.
* file: none beyond the common ones.

Over HTTPS (webhook, HEC) a `fingerprint` replaces the chain check and cannot be combined
with `ca_file` or `cert_file`; `key_file` needs `cert_file` for every type.

`tls_verify=false` turns certificate verification off. It is refused unless the process
runs in development mode, and logs a warning on the `xavyo_siem.delivery` logger when it
is allowed.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = [
    "FileConfig",
    "Fingerprint",
    "HecConfig",
    "SyslogConfig",
    "TlsClientConfig",
    "TransportConfig",
    "WebhookConfig",
    "allowed_options",
    "validate_destination",
]

log = logging.getLogger("xavyo_siem.delivery")

_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)

Framing = Literal["octet", "lf"]
WebhookBody = Literal["json_array", "ndjson"]
SyslogProtocol = Literal["tcp", "tls", "udp"]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A pinned certificate fingerprint: hash algorithm (`sha256`, ...) and its digest."""

    algorithm: str
    digest: bytes

    def __str__(self) -> str:
        return f"{self.algorithm.upper()}:" + ":".join(f"{b:02X}" for b in self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsClientConfig:
    """How a client verifies its TLS peer and, for mutual TLS, presents itself.

    `verify=False` (development only) turns chain and host-name checks off. With a
    `fingerprint` and no `ca_file`, the pinned certificate is the only trust anchor (RFC 5425
    §5.2, for self-signed receivers): chain and host name are not checked, the fingerprint
    is. With both, the chain, the host name and the fingerprint are all checked.
    `server_name` is the name sent as SNI and verified (default: the endpoint's host).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    fingerprint: Fingerprint | None = None
    server_name: str | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogConfig:
    """A syslog destination: RFC 6587 TCP, RFC 5425 TLS or RFC 5426 UDP."""

    delivery_type: DeliveryType
    protocol: SyslogProtocol
    host: str
    port: int
    framing: Framing = "octet"
    timeout_s: float = 10.0
    max_datagram_bytes: int = 2048
    tls: TlsClientConfig | None = None
    batch_max_events: int = 1000
    batch_max_bytes: int = 1 << 20
    start: str = "now"

    @property
    def endpoint(self) -> str:
        """The endpoint URL, normalised (`tls://[::1]:6514`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """An HTTP webhook destination (Standard Webhooks; the secret signs, it is not here)."""

    delivery_type: DeliveryType = DeliveryType.WEBHOOK
    url: str
    body: WebhookBody = "json_array"
    gzip: bool = False
    timeout_s: float = 30.0
    ca_file: str | None = None
    tls_verify: bool = True
    batch_max_events: int = 100
    batch_max_bytes: int = 256 << 10
    start: str = "now"
    # HTTPS client settings (delivery/http.py): mutual TLS, certificate pin, SNI name.
    cert_file: str | None = None
    key_file: str | None = None
    fingerprint: Fingerprint | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HecConfig:
    """A Splunk HTTP Event Collector destination (the token is the secret, not here)."""

    delivery_type: DeliveryType = DeliveryType.SPLUNK_HEC
    url: str
    gzip: bool = True
    ack: bool = False
    index: str | None = None
    source: str | None = None
    sourcetype: str | None = None
    host: str | None = None
    timeout_s: float = 30.0
    ca_file: str | None = None
    tls_verify: bool = True
    batch_max_events: int = 500
    batch_max_bytes: int = 1 << 20
    start: str = "now"
    # Indexer acknowledgement (delivery/splunk_hec.py): how long a batch may stay
    # unacknowledged, how often /ack is polled, how many requests may await their ack.
    ack_timeout_s: float = 120.0
    ack_poll_interval_s: float = 1.0
    ack_max_pending: int = 16
    # Requests of one batch in flight at once (1 keeps strict arrival order).
    max_requests_in_flight: int = 3
    # HTTPS client settings (delivery/http.py): mutual TLS, certificate pin, SNI name.
    cert_file: str | None = None
    key_file: str | None = None
    fingerprint: Fingerprint | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FileConfig:
    """A local file that batches are appended to (batch export, demo)."""

    delivery_type: DeliveryType = DeliveryType.FILE
    path: str
    batch_max_events: int = 1000
    batch_max_bytes: int = 4 << 20
    start: str = "now"


TransportConfig = SyslogConfig | WebhookConfig | HecConfig | FileConfig

_COMMON: Final = ("batch_max_events", "batch_max_bytes", "start")
_TLS: Final = ("ca_file", "cert_file", "key_file", "fingerprint", "server_name", "tls_verify")
_ALLOWED: Final[dict[DeliveryType, frozenset[str]]] = {
    DeliveryType.SYSLOG_TCP: frozenset((*_COMMON, "framing", "timeout_s")),
    DeliveryType.SYSLOG_TLS: frozenset((*_COMMON, *_TLS, "framing", "timeout_s")),
    DeliveryType.SYSLOG_UDP: frozenset((*_COMMON, "max_datagram_bytes", "timeout_s")),
    DeliveryType.WEBHOOK: frozenset((*_COMMON, *_TLS, "body", "gzip", "timeout_s")),
    DeliveryType.SPLUNK_HEC: frozenset(
        (
            *_COMMON,
            "gzip",
            "ack",
            "index",
            "source",
            "sourcetype",
            "host",
            *_TLS,
            "timeout_s",
            "ack_timeout_s",
            "ack_poll_interval_s",
            "ack_max_pending",
            "max_requests_in_flight",
        )
    ),
    DeliveryType.FILE: frozenset(_COMMON),
}

_SYSLOG_SCHEMES: Final[dict[DeliveryType, tuple[SyslogProtocol, int]]] = {
    DeliveryType.SYSLOG_TCP: ("tcp", 514),
    DeliveryType.SYSLOG_TLS: ("tls", 6514),
    DeliveryType.SYSLOG_UDP: ("udp", 514),
}

_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_FINGERPRINT_ALGORITHMS: Final = {"sha256": 32, "sha384": 48, "sha512": 64}
_TRUE: Final = frozenset(("true", "yes", "on", "1"))
_FALSE: Final = frozenset(("false", "no", "off", "0"))
_MAX_UDP_V4: Final = 65507
_MAX_UDP_V6: Final = 65527


def allowed_options(delivery_type: DeliveryType) -> frozenset[str]:
    """The option names a destination of `delivery_type` accepts."""
    return _ALLOWED[DeliveryType(delivery_type)]


# -- value parsers: each returns the typed value or raises InvalidDestination ---------------


def _field(name: str) -> str:
    return f"options.{name}"


def _show(value: object) -> str:
    return repr(value)[:60]


def _int(name: str, value: object, low: int, high: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,12}\s*", value):
        number = int(value)
    if number is None or not low <= number <= high:
        raise InvalidDestination(
            _field(name), f"must be an integer from {low} to {high}, got {_show(value)}"
        )
    return number


def _seconds(name: str, value: object, low: float, high: float) -> float:
    number: float | None = None
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric or (
        isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,9}(\.[0-9]{1,6})?\s*", value)
    ):
        number = float(value)  # type: ignore[arg-type]
    if number is None or not math.isfinite(number) or not low <= number <= high:
        raise InvalidDestination(
            _field(name),
            f"must be a number of seconds from {low:g} to {high:g}, got {_show(value)}",
        )
    return number


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidDestination(_field(name), f"must be true or false, got {_show(value)}")


def _choice(name: str, value: object, choices: tuple[_S, ...]) -> _S:
    for choice in choices:
        if value == choice:
            return choice
    raise InvalidDestination(
        _field(name), f"must be one of {', '.join(choices)}; got {_show(value)}"
    )


def _framing(name: str, value: object) -> Framing:
    return _choice(name, value, ("octet", "lf"))


def _body(name: str, value: object) -> WebhookBody:
    return _choice(name, value, ("json_array", "ndjson"))


def _text(name: str, value: object, max_len: int = 1024) -> str:
    if not isinstance(value, str):
        raise InvalidDestination(_field(name), f"must be a string, got {type(value).__name__}")
    if not value or len(value) > max_len:
        raise InvalidDestination(_field(name), f"must be 1 to {max_len} characters long")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidDestination(_field(name), "must not contain control characters")
    return value


def _path(name: str, value: object) -> str:
    text = _text(name, value, 4096)
    if not text.startswith("/"):
        raise InvalidDestination(_field(name), f"must be an absolute path, got {_show(value)}")
    return text


def _server_name(name: str, value: object) -> str:
    text = _text(name, value, 253)
    if not _is_ip(text) and not _is_hostname(text):
        raise InvalidDestination(
            _field(name), f"must be a DNS name or IP address, got {_show(value)}"
        )
    return text


def _fingerprint(name: str, value: object) -> Fingerprint:
    text = _text(name, value, 300).strip()
    algorithm, sep, hex_part = text.partition(":")
    algorithm = algorithm.lower().replace("-", "")
    if not sep or algorithm not in _FINGERPRINT_ALGORITHMS:
        if algorithm in ("sha1", "md5"):
            reason = f"{algorithm.upper()} fingerprints are refused (collisions are practical);"
        else:
            reason = "must be"
        raise InvalidDestination(
            _field(name),
            f"{reason} a hash name (SHA256, SHA384 or SHA512), a colon and the hex digest,"
            " e.g. SHA256:AB:CD:...",
        )
    hex_digits = hex_part.replace(":", "").replace(" ", "")
    try:
        digest = bytes.fromhex(hex_digits)
    except ValueError:
        raise InvalidDestination(_field(name), "the digest must be hexadecimal") from None
    if len(digest) != _FINGERPRINT_ALGORITHMS[algorithm]:
        raise InvalidDestination(
            _field(name),
            f"a {algorithm.upper()} digest has {_FINGERPRINT_ALGORITHMS[algorithm]} bytes,"
            f" got {len(digest)}",
        )
    return Fingerprint(algorithm, digest)


def _start(name: str, value: object) -> str:
    text = _text(name, value, 64).strip()
    if text in ("now", "beginning"):
        return text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidDestination(
            _field(name),
            f"must be now, beginning or an ISO 8601 time with a UTC offset, got {_show(value)}",
        )
    return text


# -- endpoint parsing -----------------------------------------------------------------------


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_hostname(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _split_url(endpoint: object) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, rest) of an endpoint URL, or InvalidDestination naming it."""
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidDestination("endpoint", "must be a non-empty URL string")
    if len(endpoint) > 2048 or any(ord(c) < 33 or ord(c) == 127 for c in endpoint):
        raise InvalidDestination("endpoint", "must be at most 2048 characters, without spaces")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise InvalidDestination("endpoint", f"is not a valid URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        raise InvalidDestination(
            "endpoint", "must not carry credentials; put them in the destination's secret"
        )
    host = parts.hostname or ""
    if port == 0:
        raise InvalidDestination("endpoint", "port must be from 1 to 65535")
    rest = endpoint[len(parts.scheme) + 3 + len(parts.netloc) :] if "://" in endpoint else ""
    return parts.scheme.lower(), host, port, rest


def _check_host(host: str, endpoint: str) -> str:
    if not host:
        raise InvalidDestination(
            "endpoint", f"needs a host, e.g. tcp://siem.example.com:514; got {endpoint[:60]!r}"
        )
    if "%" in host:
        raise InvalidDestination("endpoint", "IPv6 zone indexes (fe80::1%eth0) are not supported")
    if not _is_ip(host) and not _is_hostname(host):
        raise InvalidDestination("endpoint", f"host {host[:60]!r} is not a DNS name or IP address")
    return host


def _syslog_endpoint(delivery_type: DeliveryType, endpoint: str) -> tuple[SyslogProtocol, str, int]:
    protocol, default_port = _SYSLOG_SCHEMES[delivery_type]
    scheme, host, port, rest = _split_url(endpoint)
    if scheme != protocol:
        raise InvalidDestination(
            "endpoint",
            f"a {delivery_type.value} destination needs a {protocol}://host:port URL,"
            f" got scheme {scheme[:20]!r}",
        )
    if rest not in ("", "/"):
        raise InvalidDestination(
            "endpoint", f"a {protocol}:// URL has no path, query or fragment; got {rest[:60]!r}"
        )
    return protocol, _check_host(host, endpoint), default_port if port is None else port


def _http_endpoint(delivery_type: DeliveryType, endpoint: str, development: bool) -> str:
    scheme, host, _port, _rest = _split_url(endpoint)
    if scheme not in ("https", "http"):
        raise InvalidDestination(
            "endpoint", f"a {delivery_type.value} destination needs an https:// URL"
        )
    if scheme == "http" and not development:
        raise InvalidDestination(
            "endpoint",
            "must use https://; plain http is allowed only when XAVYO_SIEM_ENV=development",
        )
    if "#" in endpoint:
        raise InvalidDestination("endpoint", "must not contain a fragment (#...)")
    _check_host(host, endpoint)
    return endpoint


def _file_endpoint(endpoint: str) -> str:
    scheme, host, port, rest = _split_url(endpoint)
    if scheme != "file":
        raise InvalidDestination("endpoint", "a file destination needs a file:///absolute/path URL")
    if host not in ("", "localhost") or port is not None:
        raise InvalidDestination("endpoint", "a file:// URL names a local path: file:///path")
    if "?" in rest or "#" in rest:
        raise InvalidDestination("endpoint", "a file:// URL has no query or fragment")
    path = unquote(rest)
    if not path.startswith("/") or path.endswith("/") or len(path) < 2:
        raise InvalidDestination(
            "endpoint", f"must name a file by absolute path, got {path[:60]!r}"
        )
    if "\x00" in path or "/../" in path + "/" or any(ord(c) < 32 for c in path):
        raise InvalidDestination("endpoint", "the path must not contain '..' or control characters")
    return path


# -- the entry point ------------------------------------------------------------------------


def _check_names(delivery_type: DeliveryType, options: Mapping[str, object]) -> None:
    if not isinstance(options, Mapping):
        raise InvalidDestination("options", f"must be an object, got {type(options).__name__}")
    allowed = _ALLOWED[delivery_type]
    unknown = sorted(str(name)[:40] for name in options if name not in allowed)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        field = f"options.{unknown[0]}" if len(unknown) == 1 else "options"
        raise InvalidDestination(
            field,
            f"unknown option{'s' if len(unknown) > 1 else ''} {names} for a"
            f" {delivery_type.value} destination; allowed: {', '.join(sorted(allowed))}",
        )


class _Reader:
    """Reads typed options out of a checked mapping, each with its default."""

    def __init__(self, options: Mapping[str, object]) -> None:
        self._options = options

    def get(self, name: str, parse: Callable[[str, object], _T], default: _T) -> _T:
        if name not in self._options or self._options[name] is None:
            return default
        return parse(name, self._options[name])


def _tls_verify(
    delivery_type: DeliveryType, endpoint: str, verify: bool, development: bool
) -> bool:
    if verify:
        return True
    if not development:
        raise InvalidDestination(
            _field("tls_verify"),
            "false is refused: TLS verification may only be turned off when"
            " XAVYO_SIEM_ENV=development",
        )
    log.warning(
        "TLS verification is OFF for %s destination %s (development mode only)",
        delivery_type.value,
        endpoint[:200],
    )
    return False


def validate_destination(
    delivery_type: DeliveryType | str,
    endpoint: str,
    options: Mapping[str, object],
    *,
    development: bool,
) -> TransportConfig:
    """Check a destination's endpoint and options and return its transport config.

    Raises `InvalidDestination` naming the field (`endpoint`, `options`, or
    `options.<name>`) and the rule. Pure: no file is opened and no name is resolved.
    """
    try:
        kind = DeliveryType(delivery_type)
    except ValueError:
        allowed = ", ".join(t.value for t in DeliveryType)
        raise InvalidDestination(
            "delivery_type", f"must be one of {allowed}; got {str(delivery_type)[:40]!r}"
        ) from None
    _check_names(kind, options)
    opt = _Reader(options)

    def batch_events(name: str, value: object) -> int:
        return _int(name, value, 1, 100_000)

    def batch_bytes(name: str, value: object) -> int:
        return _int(name, value, 1024, 64 << 20)

    start = opt.get("start", _start, "now")

    if kind in _SYSLOG_SCHEMES:
        protocol, host, port = _syslog_endpoint(kind, endpoint)
        defaults = SyslogConfig(delivery_type=kind, protocol=protocol, host=host, port=port)
        framing: Framing = opt.get("framing", _framing, "octet")
        if protocol == "tls" and framing != "octet":
            raise InvalidDestination(
                _field("framing"), "must be octet over TLS (RFC 5425 mandates octet counting)"
            )
        udp_max = _MAX_UDP_V6 if ":" in host else _MAX_UDP_V4
        tls = None
        if protocol == "tls":
            key_file = opt.get("key_file", _path, None)
            cert_file = opt.get("cert_file", _path, None)
            if key_file and not cert_file:
                raise InvalidDestination(_field("key_file"), "needs cert_file as well")
            verify = _tls_verify(kind, endpoint, opt.get("tls_verify", _bool, True), development)
            tls = TlsClientConfig(
                ca_file=opt.get("ca_file", _path, None),
                cert_file=cert_file,
                key_file=key_file,
                fingerprint=opt.get("fingerprint", _fingerprint, None),
                server_name=opt.get("server_name", _server_name, None),
                verify=verify,
            )
        return SyslogConfig(
            delivery_type=kind,
            protocol=protocol,
            host=host,
            port=port,
            framing=framing,
            timeout_s=opt.get("timeout_s", lambda n, v: _seconds(n, v, 0.1, 300), 10.0),
            max_datagram_bytes=opt.get(
                "max_datagram_bytes", lambda n, v: _int(n, v, 480, udp_max), 2048
            ),
            tls=tls,
            batch_max_events=opt.get("batch_max_events", batch_events, defaults.batch_max_events),
            batch_max_bytes=opt.get("batch_max_bytes", batch_bytes, defaults.batch_max_bytes),
            start=start,
        )

    def http_tls() -> tuple[str | None, str | None, Fingerprint | None, str | None]:
        """(cert_file, key_file, fingerprint, server_name) of a webhook or HEC destination."""
        cert_file = opt.get("cert_file", _path, None)
        key_file = opt.get("key_file", _path, None)
        fingerprint = opt.get("fingerprint", _fingerprint, None)
        if key_file and not cert_file:
            raise InvalidDestination(_field("key_file"), "needs cert_file as well")
        if fingerprint is not None and (cert_file or opt.get("ca_file", _path, None)):
            raise InvalidDestination(
                _field("fingerprint"),
                "over HTTPS a pinned certificate replaces the chain check: it cannot be"
                " combined with ca_file or cert_file",
            )
        return cert_file, key_file, fingerprint, opt.get("server_name", _server_name, None)

    if kind is DeliveryType.WEBHOOK:
        url = _http_endpoint(kind, endpoint, development)
        cert_file, key_file, fingerprint, server_name = http_tls()
        return WebhookConfig(
            url=url,
            body=opt.get("body", _body, "json_array"),
            gzip=opt.get("gzip", _bool, False),
            timeout_s=opt.get("timeout_s", lambda n, v: _seconds(n, v, 0.1, 300), 30.0),
            ca_file=opt.get("ca_file", _path, None),
            tls_verify=_tls_verify(kind, endpoint, opt.get("tls_verify", _bool, True), development),
            batch_max_events=opt.get("batch_max_events", batch_events, 100),
            batch_max_bytes=opt.get("batch_max_bytes", batch_bytes, 256 << 10),
            start=start,
            cert_file=cert_file,
            key_file=key_file,
            fingerprint=fingerprint,
            server_name=server_name,
        )

    if kind is DeliveryType.SPLUNK_HEC:
        url = _http_endpoint(kind, endpoint, development)
        cert_file, key_file, fingerprint, server_name = http_tls()
        return HecConfig(
            url=url,
            gzip=opt.get("gzip", _bool, True),
            ack=opt.get("ack", _bool, False),
            index=opt.get("index", lambda n, v: _text(n, v, 80), None),
            source=opt.get("source", _text, None),
            sourcetype=opt.get("sourcetype", lambda n, v: _text(n, v, 256), None),
            host=opt.get("host", lambda n, v: _text(n, v, 256), None),
            timeout_s=opt.get("timeout_s", lambda n, v: _seconds(n, v, 0.1, 300), 30.0),
            ca_file=opt.get("ca_file", _path, None),
            tls_verify=_tls_verify(kind, endpoint, opt.get("tls_verify", _bool, True), development),
            batch_max_events=opt.get("batch_max_events", batch_events, 500),
            batch_max_bytes=opt.get("batch_max_bytes", batch_bytes, 1 << 20),
            start=start,
            ack_timeout_s=opt.get("ack_timeout_s", lambda n, v: _seconds(n, v, 0.01, 3600), 120.0),
            ack_poll_interval_s=opt.get(
                "ack_poll_interval_s", lambda n, v: _seconds(n, v, 0.01, 60), 1.0
            ),
            ack_max_pending=opt.get("ack_max_pending", lambda n, v: _int(n, v, 1, 1000), 16),
            max_requests_in_flight=opt.get(
                "max_requests_in_flight", lambda n, v: _int(n, v, 1, 8), 3
            ),
            cert_file=cert_file,
            key_file=key_file,
            fingerprint=fingerprint,
            server_name=server_name,
        )

    path = _file_endpoint(endpoint)
    return FileConfig(
        path=path,
        batch_max_events=opt.get("batch_max_events", batch_events, 1000),
        batch_max_bytes=opt.get("batch_max_bytes", batch_bytes, 4 << 20),
        start=start,
    )
