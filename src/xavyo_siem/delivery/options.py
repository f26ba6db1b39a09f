"""Validation of a destination's endpoint and options into its transport's frozen config.

`validate_destination(delivery_type, endpoint, options, development=...)` is pure (no I/O,
no clock, no environment): it either returns the config of the delivery type or raises
`InvalidDestination` naming the field (`delivery_type`, `endpoint`, `options` or
`options.<name>`) and the rule. Transports are built from these configs only, so a
transport never sees an unchecked option ("validate, then open").

Each delivery type declares its config, its option names and their defaults beside its
transport: `SyslogConfig` (syslog_config.py), `WebhookConfig` (webhook.py), `HecConfig`
(splunk_hec.py), `FileConfig` (file.py), `SentinelConfig` (sentinel.py) and `S3Config`
(s3_config.py). Every type accepts the batch options `batch_max_events`, `batch_max_bytes`
and `start`, and the delivery policy options (`DeliveryPolicy`, read by `check_destination`)
(option_values.py); the TLS options are those of `TlsConfig` (tls.py). How values are
written (types, strings from the command
line) is described in option_values.py. An unknown option, or an option of another
delivery type, is refused with a message naming every such option and the options that
type accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from xavyo_siem.delivery.elasticsearch import ELASTICSEARCH_OPTIONS, ElasticsearchConfig
from xavyo_siem.delivery.file import FILE_OPTIONS, FileConfig
from xavyo_siem.delivery.option_values import POLICY_OPTIONS
from xavyo_siem.delivery.s3_config import S3_OPTIONS, S3Config
from xavyo_siem.delivery.sentinel import SENTINEL_OPTIONS, SentinelConfig
from xavyo_siem.delivery.splunk_hec import HEC_OPTIONS, HecConfig
from xavyo_siem.delivery.syslog_config import SYSLOG_OPTIONS, SyslogConfig
from xavyo_siem.delivery.webhook import WEBHOOK_OPTIONS, WebhookConfig
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["TransportConfig", "allowed_options", "validate_destination"]

TransportConfig = (
    SyslogConfig
    | WebhookConfig
    | HecConfig
    | FileConfig
    | ElasticsearchConfig
    | SentinelConfig
    | S3Config
)

_ALLOWED: Final[Mapping[DeliveryType, frozenset[str]]] = {
    kind: names | frozenset(POLICY_OPTIONS)
    for kind, names in {
        **SYSLOG_OPTIONS,
        DeliveryType.WEBHOOK: WEBHOOK_OPTIONS,
        DeliveryType.SPLUNK_HEC: HEC_OPTIONS,
        DeliveryType.FILE: FILE_OPTIONS,
        DeliveryType.SENTINEL: SENTINEL_OPTIONS,
        DeliveryType.ELASTICSEARCH: ELASTICSEARCH_OPTIONS,
        DeliveryType.S3: S3_OPTIONS,
    }.items()
}


def allowed_options(delivery_type: DeliveryType) -> frozenset[str]:
    """The option names a destination of `delivery_type` accepts."""
    return _ALLOWED[DeliveryType(delivery_type)]


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
    `development` allows plain http:// and `tls_verify=false`.
    """
    try:
        kind = DeliveryType(delivery_type)
    except ValueError:
        allowed = ", ".join(t.value for t in DeliveryType)
        raise InvalidDestination(
            "delivery_type", f"must be one of {allowed}; got {str(delivery_type)[:40]!r}"
        ) from None
    _check_names(kind, options)
    match kind:
        case (
            DeliveryType.SYSLOG_TCP
            | DeliveryType.SYSLOG_TLS
            | DeliveryType.SYSLOG_UDP
            | DeliveryType.SYSLOG_RELP
        ):
            return SyslogConfig.from_options(kind, endpoint, options, development=development)
        case DeliveryType.WEBHOOK:
            return WebhookConfig.from_options(endpoint, options, development=development)
        case DeliveryType.SPLUNK_HEC:
            return HecConfig.from_options(endpoint, options, development=development)
        case DeliveryType.FILE:
            return FileConfig.from_options(endpoint, options, development=development)
        case DeliveryType.ELASTICSEARCH:
            return ElasticsearchConfig.from_options(endpoint, options, development=development)
        case DeliveryType.SENTINEL:
            return SentinelConfig.from_options(endpoint, options, development=development)
        case DeliveryType.S3:
            return S3Config.from_options(endpoint, options, development=development)


def _check_names(delivery_type: DeliveryType, options: Mapping[str, object]) -> None:
    """Refuse options that are not a mapping, or that name options the type does not have."""
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
