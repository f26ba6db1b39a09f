"""Transports: syslog TCP/TLS/UDP, webhook, Splunk HEC and file, behind one interface."""

from __future__ import annotations

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
    Transport,
)
from xavyo_siem.delivery.file import FileTransport
from xavyo_siem.delivery.options import (
    FileConfig,
    HecConfig,
    SyslogConfig,
    TransportConfig,
    WebhookConfig,
    allowed_options,
    validate_destination,
)
from xavyo_siem.delivery.splunk_hec import HecTransport
from xavyo_siem.delivery.syslog import SyslogTransport
from xavyo_siem.delivery.webhook import WebhookCredentials, WebhookTransport
from xavyo_siem.errors import InvalidDestination

__all__ = [
    "Delivered",
    "DeliveryResult",
    "FileTransport",
    "HecTransport",
    "Misconfigured",
    "Record",
    "Rejected",
    "RetryLater",
    "SyslogTransport",
    "Transport",
    "TransportConfig",
    "WebhookTransport",
    "allowed_options",
    "open_transport",
    "validate_destination",
]


def open_transport(
    config: TransportConfig, *, secret: str | None, event_is_json: bool, development: bool
) -> Transport:
    """The transport for a validated config; `secret` is the destination's credential.

    Splunk HEC: the token (required). Webhook: `whsec_` signing secrets, or a JSON object of
    signing secrets and auth (see `WebhookCredentials.from_secret`). Syslog TLS: the
    password of an encrypted client key, if any. `event_is_json` says the records are JSON
    objects (format `json`) rather than text lines, for the HTTP envelopes.
    """
    match config:
        case SyslogConfig():
            return SyslogTransport(config, key_password=secret)
        case HecConfig():
            if not secret:
                raise InvalidDestination("secret", "a Splunk HEC destination needs its token")
            return HecTransport(
                config, token=secret, event_is_json=event_is_json, development=development
            )
        case WebhookConfig():
            return WebhookTransport(
                config,
                event_is_json=event_is_json,
                credentials=WebhookCredentials.from_secret(secret),
                development=development,
            )
        case FileConfig():
            return FileTransport(config)
