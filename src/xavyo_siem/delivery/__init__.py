"""Transports: syslog TCP/TLS/UDP/RELP, webhook, Splunk HEC, Elasticsearch, Microsoft
Sentinel, file and S3, behind one interface."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple
from uuid import UUID

from yarl import URL

from xavyo_siem.delivery.base import (
    Delivered,
    DeliveryResult,
    Misconfigured,
    Record,
    Rejected,
    RetryLater,
    Transport,
)
from xavyo_siem.delivery.elasticsearch import (
    ELASTICSEARCH_FORMATS,
    ElasticsearchConfig,
    ElasticsearchTransport,
)
from xavyo_siem.delivery.elasticsearch_auth import elasticsearch_authorization
from xavyo_siem.delivery.file import FileConfig, FileTransport
from xavyo_siem.delivery.options import TransportConfig, allowed_options, validate_destination
from xavyo_siem.delivery.relp import RelpTransport
from xavyo_siem.delivery.s3 import S3Config, S3Credentials, S3Transport
from xavyo_siem.delivery.sentinel import (
    SENTINEL_FORMATS,
    SentinelConfig,
    SentinelTransport,
    check_client_secret,
)
from xavyo_siem.delivery.splunk_hec import HecConfig, HecTransport, check_hec_token
from xavyo_siem.delivery.syslog import SyslogTransport
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.targets import (
    credential_binding,
    credential_required,
    credential_targets,
)
from xavyo_siem.delivery.tls import TlsConfig
from xavyo_siem.delivery.webhook import WebhookConfig, WebhookTransport
from xavyo_siem.delivery.webhook_auth import WebhookCredentials
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination

__all__ = [
    "ELASTICSEARCH_FORMATS",
    "SENTINEL_FORMATS",
    "ConnectTarget",
    "Delivered",
    "DeliveryResult",
    "ElasticsearchConfig",
    "ElasticsearchTransport",
    "FileConfig",
    "FileTransport",
    "HecConfig",
    "HecTransport",
    "Misconfigured",
    "Record",
    "Rejected",
    "RelpTransport",
    "RetryLater",
    "S3Config",
    "S3Credentials",
    "S3Transport",
    "SentinelConfig",
    "SentinelTransport",
    "SyslogConfig",
    "SyslogTransport",
    "TlsConfig",
    "Transport",
    "TransportConfig",
    "WebhookConfig",
    "WebhookCredentials",
    "WebhookTransport",
    "allowed_options",
    "check_client_secret",
    "check_hec_token",
    "connect_target",
    "connect_targets",
    "credential_binding",
    "credential_required",
    "credential_targets",
    "elasticsearch_authorization",
    "open_transport",
    "validate_destination",
]


def open_transport(
    config: TransportConfig,
    *,
    secret: str | None,
    event_is_json: bool,
    development: bool,
    egress: EgressGuard | None,
    file_header: str | None = None,
    tenant_id: UUID | None = None,
) -> Transport:
    """The transport for a validated config; `secret` is the destination's credential.

    `egress` is the SSRF guard: the transport connects only to addresses it allows, checked
    on every connect against a fresh resolution (an IP-literal host is checked here, once).
    None turns the guard off; only tests and benchmarks that talk to loopback peers pass
    None.

    Splunk HEC: the token (required). Webhook: `whsec_` signing secrets, or a JSON object of
    signing secrets and auth (see `WebhookCredentials.from_secret`). Syslog TLS and RELP
    over TLS: the password of an encrypted client key, if any. Sentinel: the client secret
    of the app registration (required), sent to the token endpoint only. Elasticsearch: an
    API key,
    user and password, or a bearer token (see `elasticsearch_authorization`), or none.
    `event_is_json` says the records are JSON objects (format `json`) rather than text
    lines, for the HTTP envelopes. `file_header` is the header row a file destination
    starts with (CSV; its lines then end in CRLF). S3: the access key, a JSON object (see
    `S3Credentials.from_secret`); `tenant_id` names the tenant's partition of the keys.
    """
    if egress is not None:
        _check_literal_host(config, egress)
    match config:
        case SyslogConfig() if config.protocol == "relp":
            return RelpTransport(config, key_password=secret, egress=egress)
        case SyslogConfig():
            return SyslogTransport(config, key_password=secret, egress=egress)
        case HecConfig():
            if not secret:
                raise InvalidDestination("secret", "a Splunk HEC destination needs its token")
            return HecTransport(
                config,
                token=secret,
                event_is_json=event_is_json,
                development=development,
                egress=egress,
            )
        case WebhookConfig():
            return WebhookTransport(
                config,
                event_is_json=event_is_json,
                credentials=WebhookCredentials.from_secret(secret),
                development=development,
                egress=egress,
            )
        case FileConfig():
            return FileTransport(config, header=file_header)
        case ElasticsearchConfig():
            return ElasticsearchTransport(
                config, secret=secret, development=development, egress=egress
            )
        case SentinelConfig():
            if not secret:
                raise InvalidDestination("secret", "a sentinel destination needs its client secret")
            return SentinelTransport(
                config, client_secret=secret, development=development, egress=egress
            )
        case S3Config():
            if tenant_id is None:
                raise InvalidDestination("tenant_id", "an s3 destination writes under its tenant")
            return S3Transport(
                config,
                credentials=S3Credentials.from_secret(secret),
                tenant_id=tenant_id,
                event_is_json=event_is_json,
                development=development,
                egress=egress,
            )


def connect_target(config: TransportConfig) -> tuple[str, int] | None:
    """The host and port a transport of `config` connects to; None for a file.

    For HTTP it is what aiohttp connects to: the host and port of yarl's parse of the URL
    (`raw_host`, the ASCII form), the one parse that validation made too
    (`endpoints.split_url`). The SSRF guard checks this pair at save and at test time.
    """
    match config:
        case SyslogConfig():
            return config.host, config.port
        case WebhookConfig() | HecConfig() | ElasticsearchConfig() | SentinelConfig():
            url = URL(config.url)
            return url.raw_host or "", url.port or 0
        case S3Config():
            url = URL(config.base_url)
            return url.raw_host or "", url.port or 0
        case FileConfig():
            return None


class ConnectTarget(NamedTuple):
    """A host and port a transport connects to, and the setting that names it."""

    host: str
    port: int
    field: str


def connect_targets(config: TransportConfig) -> tuple[ConnectTarget, ...]:
    """Every host and port a transport of `config` connects to: `connect_target`
    (`endpoint`), and for a sentinel destination also its token endpoint
    (`options.authority_host`). The SSRF guard checks each of them at save and test time."""
    first = connect_target(config)
    targets: tuple[ConnectTarget, ...] = (
        () if first is None else (ConnectTarget(*first, "endpoint"),)
    )
    if isinstance(config, SentinelConfig):
        authority = URL(config.authority_host)
        host, port = authority.raw_host or "", authority.port or 0
        targets += (ConnectTarget(host, port, "options.authority_host"),)
    return targets


def _check_literal_host(config: TransportConfig, egress: EgressGuard) -> None:
    """Refuse an IP-literal host the guard forbids (names are checked at connect time)."""
    for host, _port, _field in connect_targets(config):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        egress.check_addresses(host, [host])
