"""The config of a syslog destination (TCP, TLS, UDP or RELP): its options, their defaults
(the fields of `SyslogConfig`), and the one builder that checks them.

Endpoints are `tcp://host[:port]`, `tls://host[:port]`, `udp://host[:port]` and
`relp://host[:port]`, without a path; the default ports are the registered ones
(`SYSLOG_SCHEMES`), and 2514 for RELP, which has none (rsyslog's documentation uses it).
Options beyond the batch options every type accepts:

* TCP: `framing` (`octet` or `lf`, RFC 6587), `timeout_s`, `confirm_after_s`.
* TLS: `framing` (`octet` only: RFC 5425 mandates octet counting), `timeout_s`,
  `confirm_after_s`, and the TLS options of `delivery/tls.py`.
* UDP: `max_datagram_bytes` (at least 480, RFC 5426; at most what one IPv4 or, for an IPv6
  literal host, IPv6 datagram carries), `truncate` (send a longer record cut to fit instead
  of refusing it to dead letters), `timeout_s`.
* RELP: `window` (unanswered commands, 1 to 1024), `max_message_bytes` (a longer record is
  refused to dead letters: the receiver would cut it and still acknowledge it),
  `timeout_s`, and `tls` (true: RELP over TLS, which then takes the TLS options of
  `delivery/tls.py`; the endpoint stays `relp://`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

from xavyo_siem.delivery.endpoints import check_host, split_url
from xavyo_siem.delivery.option_values import (
    BATCH_OPTIONS,
    OptionReader,
    Parser,
    choice,
    integer,
    option_field,
    parse_bool,
    seconds,
)
from xavyo_siem.delivery.tls import TLS_OPTIONS, TlsConfig
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["SYSLOG_OPTIONS", "SYSLOG_SCHEMES", "Framing", "SyslogConfig", "SyslogProtocol"]

Framing = Literal["octet", "lf"]
SyslogProtocol = Literal["tcp", "tls", "udp", "relp"]

# delivery type: (URL scheme, default port)
SYSLOG_SCHEMES: Final[Mapping[DeliveryType, tuple[SyslogProtocol, int]]] = {
    DeliveryType.SYSLOG_TCP: ("tcp", 514),
    DeliveryType.SYSLOG_TLS: ("tls", 6514),
    DeliveryType.SYSLOG_UDP: ("udp", 514),
    DeliveryType.SYSLOG_RELP: ("relp", 2514),
}
SYSLOG_OPTIONS: Final[Mapping[DeliveryType, frozenset[str]]] = {
    DeliveryType.SYSLOG_TCP: frozenset((*BATCH_OPTIONS, "framing", "timeout_s", "confirm_after_s")),
    DeliveryType.SYSLOG_TLS: frozenset(
        (*BATCH_OPTIONS, *TLS_OPTIONS, "framing", "timeout_s", "confirm_after_s")
    ),
    DeliveryType.SYSLOG_UDP: frozenset(
        (*BATCH_OPTIONS, "max_datagram_bytes", "truncate", "timeout_s")
    ),
    DeliveryType.SYSLOG_RELP: frozenset(
        (*BATCH_OPTIONS, *TLS_OPTIONS, "tls", "window", "max_message_bytes", "timeout_s")
    ),
}

_MIN_DATAGRAM_BYTES: Final = 480
_MAX_UDP_V4: Final = 65507
_MAX_UDP_V6: Final = 65527
_framing: Final[Parser[Framing]] = choice(*get_args(Framing))
_timeout: Final = seconds(0.1, 300)
_confirm_after: Final = seconds(0, 60)
_window: Final = integer(1, 1024)
# rsyslog's smallest maxMessageSize is 128; a RELP frame carries at most 999,999,999 octets.
_max_message: Final = integer(128, 64 << 20)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogConfig:
    """A syslog destination: RFC 6587 TCP, RFC 5425 TLS, RFC 5426 UDP or RELP.

    `timeout_s` bounds a connect, a TLS handshake and the wait for a batch to be
    acknowledged by the receiver's TCP. `confirm_after_s` (TCP and TLS) is how long after
    its acknowledgement a batch is kept to be sent again should the receiver close or reset
    the connection (`syslog_stream.py`); 0 keeps nothing. `tls` is set for TLS only.
    `max_datagram_bytes` and `truncate` (whether a longer record is sent cut rather than
    refused) are for UDP only. `window` and `max_message_bytes` are for RELP only; for
    RELP `timeout_s` also bounds the wait for each answer, and `tls` is set when the
    destination's `tls` option is true.
    """

    delivery_type: DeliveryType
    protocol: SyslogProtocol
    host: str
    port: int
    framing: Framing = "octet"
    timeout_s: float = 10.0
    confirm_after_s: float = 1.0
    max_datagram_bytes: int = 2048
    truncate: bool = False
    window: int = 128
    max_message_bytes: int = 8096
    tls: TlsConfig | None = None
    batch_max_events: int = 1000
    batch_max_bytes: int = 1 << 20
    start: str = "now"

    @property
    def endpoint(self) -> str:
        """The endpoint URL, normalised (`tls://[::1]:6514`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}"

    @classmethod
    def from_options(
        cls,
        delivery_type: DeliveryType,
        endpoint: str,
        options: Mapping[str, object],
        *,
        development: bool,
    ) -> SyslogConfig:
        """The config of a syslog destination of `delivery_type`, or InvalidDestination.

        `options` holds only names of `SYSLOG_OPTIONS[delivery_type]` (checked before).
        """
        protocol, host, port = _syslog_endpoint(delivery_type, endpoint)
        read = OptionReader(options, cls)
        framing = read("framing", _framing)
        if protocol == "tls" and framing != "octet":
            raise InvalidDestination(
                option_field("framing"), "must be octet over TLS (RFC 5425 mandates octet counting)"
            )
        largest = _MAX_UDP_V6 if ":" in host else _MAX_UDP_V4
        tls = None
        if protocol == "relp" and not read.optional("tls", parse_bool):
            _refuse_tls_options(options)
        elif protocol in ("tls", "relp"):
            tls = TlsConfig.from_options(
                options, delivery_type=delivery_type, endpoint=endpoint, development=development
            )
        return cls(
            delivery_type=delivery_type,
            protocol=protocol,
            host=host,
            port=port,
            framing=framing,
            timeout_s=read("timeout_s", _timeout),
            confirm_after_s=read("confirm_after_s", _confirm_after),
            max_datagram_bytes=read("max_datagram_bytes", integer(_MIN_DATAGRAM_BYTES, largest)),
            truncate=read("truncate", parse_bool),
            window=read("window", _window),
            max_message_bytes=read("max_message_bytes", _max_message),
            tls=tls,
            **read.batch(),
        )


def _refuse_tls_options(options: Mapping[str, object]) -> None:
    """Refuse TLS options on a RELP destination that does not turn TLS on."""
    for name in TLS_OPTIONS:
        if options.get(name) is not None:
            raise InvalidDestination(
                option_field(name), "is a TLS option: set tls=true to use RELP over TLS"
            )


def _syslog_endpoint(delivery_type: DeliveryType, endpoint: str) -> tuple[SyslogProtocol, str, int]:
    """(protocol, host, port) of a syslog endpoint; the port defaults by protocol."""
    protocol, default_port = SYSLOG_SCHEMES[delivery_type]
    scheme, host, port, rest, _url = split_url(endpoint)
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
    return protocol, check_host(host, endpoint), default_port if port is None else port
