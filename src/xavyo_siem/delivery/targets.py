"""Where a destination's credential goes: the origins it is sent to, and its binding.

A credential (HEC token, webhook secrets, client-key password) is sealed bound to its
destination's delivery type and to the origin (`scheme://host:port`) of every place the
transport sends it (`crypto.KeyRing.seal(..., binding=...)`). Changing any of them needs
the secret again; a path, a query or any other option may change freely.

The origins are read from the validated transport config, so they are exactly what the
transport connects to: the HTTP transports parse their URL with yarl, as here (HEC's
`/ack` and `/health` share the endpoint's origin); syslog connects to the config's host and
port (the default port filled in). A delivery type whose options name further URLs (an
endpoint override, a token authority, an ingestion endpoint) adds them in `_origins`.
S3 sends its access key to the server's origin (`endpoint_url`, or AWS in the region, the
bucket in the host name with virtual addressing) and is bound to the bucket as well
(`s3://bucket`): with path addressing the bucket is not part of the origin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from yarl import URL

from xavyo_siem.delivery.elasticsearch import ElasticsearchConfig
from xavyo_siem.delivery.file import FileConfig
from xavyo_siem.delivery.options import TransportConfig, allowed_options, validate_destination
from xavyo_siem.delivery.s3_config import S3Config
from xavyo_siem.delivery.sentinel import SentinelConfig
from xavyo_siem.delivery.splunk_hec import HecConfig
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.webhook import WebhookConfig
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["Targeted", "credential_binding", "credential_required", "credential_targets"]


class Targeted(Protocol):
    """What decides where a credential goes: a stored destination or a spec of one."""

    @property
    def delivery_type(self) -> DeliveryType: ...

    @property
    def endpoint(self) -> str: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


def credential_targets(destination: Targeted) -> tuple[str, ...]:
    """The sorted, distinct origins (`scheme://host:port`) the destination's credential is
    sent to; empty for a type that sends none anywhere (`file`).

    Raises `InvalidDestination` when the endpoint or options are not valid (then nothing
    may be sent either). Pure: nothing is resolved.
    """
    kind = DeliveryType(destination.delivery_type)
    allowed = allowed_options(kind)
    transport_options = {k: v for k, v in destination.options.items() if k in allowed}
    config = validate_destination(kind, destination.endpoint, transport_options, development=True)
    return tuple(sorted(set(_origins(config))))


def credential_binding(destination: Targeted) -> tuple[str, ...]:
    """The authenticated data a credential is sealed under, beyond tenant and destination:
    the delivery type, then `credential_targets`."""
    return (DeliveryType(destination.delivery_type).value, *credential_targets(destination))


def credential_required(delivery_type: DeliveryType) -> bool:
    """Whether a destination of this type never sends without a credential (HEC: its
    token; Sentinel: its client secret; S3: its access key). A webhook may be configured
    unsigned and without auth; syslog and file need none."""
    return DeliveryType(delivery_type) in (
        DeliveryType.SPLUNK_HEC,
        DeliveryType.SENTINEL,
        DeliveryType.S3,
    )


def _origins(config: TransportConfig) -> Iterator[str]:
    """Every origin a transport built from `config` sends its credential to."""
    match config:
        case SyslogConfig():
            yield _origin(config.protocol, config.host, config.port)
        case WebhookConfig() | HecConfig() | ElasticsearchConfig():
            yield _url_origin(config.url, "endpoint")
        case SentinelConfig():  # the secret goes to the token endpoint, the token to the DCE
            yield _url_origin(config.url, "endpoint")
            yield _url_origin(config.authority_host, "options.authority_host")
        case S3Config():
            url = URL(config.base_url)
            yield _origin(url.scheme, url.raw_host or "", url.port)
            yield f"s3://{config.bucket}"
        case FileConfig():
            return


def _url_origin(target: str, field: str) -> str:
    try:
        url = URL(target)
        return _origin(url.scheme, url.host or "", url.port)
    except ValueError:  # what the transport cannot parse, it cannot send to either
        raise InvalidDestination(field, "is not a valid URL") from None


def _origin(scheme: str, host: str, port: int | None) -> str:
    host = host.lower()
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme.lower()}://{shown}:{port if port is not None else ''}"
