"""The webhook and HEC options of the HTTP transports, and their HTTPS TLS rule."""

from __future__ import annotations

from typing import Any

import pytest

from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.splunk_hec import HecConfig
from xavyo_siem.delivery.webhook import WebhookConfig
from xavyo_siem.errors import InvalidDestination

PIN = "SHA256:" + ":".join(["AB"] * 32)


def hec(options: dict[str, Any], endpoint: str = "https://splunk.example.com:8088") -> HecConfig:
    """A validated HEC config (production mode)."""
    config = validate_destination("splunk_hec", endpoint, options, development=False)
    assert isinstance(config, HecConfig)
    return config


def webhook(options: dict[str, Any]) -> WebhookConfig:
    """A validated webhook config (production mode)."""
    config = validate_destination(
        "webhook", "https://hooks.example.com/x?a=1", options, development=False
    )
    assert isinstance(config, WebhookConfig)
    return config


def test_hec_ack_options_parse_from_strings() -> None:
    """Ack and in-flight options accept typed values and CLI strings, with their defaults."""
    defaults = hec({})
    assert (defaults.ack_timeout_s, defaults.ack_poll_interval_s) == (120.0, 1.0)
    assert (defaults.ack_max_pending, defaults.max_requests_in_flight) == (16, 3)
    custom = hec(
        {
            "ack": "true",
            "ack_timeout_s": "30",
            "ack_poll_interval_s": 0.25,
            "ack_max_pending": "4",
            "max_requests_in_flight": 1,
        }
    )
    assert custom.ack is True
    assert (custom.ack_timeout_s, custom.ack_poll_interval_s) == (30.0, 0.25)
    assert (custom.ack_max_pending, custom.max_requests_in_flight) == (4, 1)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"ack_timeout_s": 0}, "options.ack_timeout_s"),
        ({"ack_poll_interval_s": "soon"}, "options.ack_poll_interval_s"),
        ({"ack_max_pending": 0}, "options.ack_max_pending"),
        ({"max_requests_in_flight": 9}, "options.max_requests_in_flight"),
        ({"max_requests_in_flight": True}, "options.max_requests_in_flight"),
        ({"fingerprint": "MD5:00"}, "options.fingerprint"),
        ({"fingerprint": PIN, "ca_file": "/etc/ca.pem"}, "options.fingerprint"),
        ({"fingerprint": PIN, "cert_file": "/etc/c.pem"}, "options.fingerprint"),
        ({"key_file": "/etc/k.pem"}, "options.key_file"),
        ({"server_name": "not a name"}, "options.server_name"),
    ],
)
def test_hec_refuses_bad_http_options_naming_them(options: dict[str, Any], field: str) -> None:
    """Each ill-typed or conflicting HEC option is refused with its name in the error."""
    with pytest.raises(InvalidDestination) as info:
        hec(options)
    assert info.value.field == field


def test_tls_client_options_reach_both_configs() -> None:
    """`cert_file`, `key_file`, `fingerprint` and `server_name` are accepted for both types."""
    mtls = {"cert_file": "/etc/c.pem", "key_file": "/etc/k.pem", "server_name": "siem.internal"}
    for config in (hec(mtls), webhook(mtls)):
        assert (config.tls.cert_file, config.tls.key_file) == ("/etc/c.pem", "/etc/k.pem")
        assert config.tls.server_name == "siem.internal"
    pinned = webhook({"fingerprint": PIN})
    assert pinned.tls.fingerprint is not None
    assert pinned.tls.fingerprint.digest == bytes([0xAB] * 32)


def test_webhook_refuses_hec_only_options() -> None:
    """Options of another delivery type are refused, and the message names them."""
    with pytest.raises(InvalidDestination, match="ack_timeout_s"):
        webhook({"ack_timeout_s": 5})


def test_hec_compresses_by_default_and_webhooks_do_not() -> None:
    """HEC batches are gzipped unless the destination says otherwise; webhook bodies are not."""
    hec = validate_destination("splunk_hec", "https://splunk.example:8088", {}, development=False)
    webhook = validate_destination("webhook", "https://hooks.example/x", {}, development=False)
    assert hec.gzip is True  # type: ignore[union-attr]
    assert webhook.gzip is False  # type: ignore[union-attr]
