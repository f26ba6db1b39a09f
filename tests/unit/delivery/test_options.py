"""Destination validation: endpoints and options become frozen configs or a named error."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from xavyo_siem.delivery.elasticsearch import ElasticsearchConfig
from xavyo_siem.delivery.file import FileConfig
from xavyo_siem.delivery.option_values import (
    POLICY_OPTIONS,
    DeliveryPolicy,
    OptionReader,
    integer,
    text,
)
from xavyo_siem.delivery.options import allowed_options, validate_destination
from xavyo_siem.delivery.s3_config import S3Config
from xavyo_siem.delivery.sentinel import SentinelConfig
from xavyo_siem.delivery.splunk_hec import HecConfig
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.tls import Fingerprint, TlsConfig
from xavyo_siem.delivery.webhook import WebhookConfig
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

SHA256 = "SHA256:" + ":".join(["AB"] * 32)


def invalid(
    kind: str, endpoint: str, options: dict[str, object] | None = None, *, development: bool = False
) -> InvalidDestination:
    with pytest.raises(InvalidDestination) as info:
        validate_destination(kind, endpoint, options or {}, development=development)
    return info.value


def test_syslog_tcp_defaults() -> None:
    """A bare tcp:// endpoint gets port 514, octet counting and the default batch sizes."""
    config = validate_destination("syslog_tcp", "tcp://siem.example.com", {}, development=False)
    assert config == SyslogConfig(
        delivery_type=DeliveryType.SYSLOG_TCP, protocol="tcp", host="siem.example.com", port=514
    )
    assert config.framing == "octet"
    assert config.endpoint == "tcp://siem.example.com:514"


def test_syslog_tls_all_options() -> None:
    """Every TLS option is parsed into TlsConfig, the fingerprint into bytes."""
    config = validate_destination(
        DeliveryType.SYSLOG_TLS,
        "tls://[2001:db8::1]",
        {
            "ca_file": "/etc/ca.pem",
            "cert_file": "/etc/client.pem",
            "key_file": "/etc/client.key",
            "fingerprint": SHA256.lower(),
            "server_name": "siem.example.com",
            "timeout_s": "2.5",
            "batch_max_events": "200",
        },
        development=False,
    )
    assert isinstance(config, SyslogConfig)
    assert (config.host, config.port, config.timeout_s, config.batch_max_events) == (
        "2001:db8::1",
        6514,
        2.5,
        200,
    )
    assert config.endpoint == "tls://[2001:db8::1]:6514"
    assert config.tls == TlsConfig(
        ca_file="/etc/ca.pem",
        cert_file="/etc/client.pem",
        key_file="/etc/client.key",
        fingerprint=Fingerprint("sha256", bytes([0xAB] * 32)),
        server_name="siem.example.com",
        verify=True,
    )
    assert str(config.tls.fingerprint) == SHA256


def test_syslog_udp_ipv6_and_datagram_size() -> None:
    """udp://[::1] parses as IPv6, and max_datagram_bytes may reach the IPv6 maximum."""
    config = validate_destination(
        "syslog_udp", "udp://[::1]:5514", {"max_datagram_bytes": 65527}, development=False
    )
    assert isinstance(config, SyslogConfig)
    assert (config.host, config.port, config.max_datagram_bytes) == ("::1", 5514, 65527)
    assert (
        validate_destination("syslog_udp", "udp://h", {}, development=False).max_datagram_bytes
        == 2048
    )  # type: ignore[union-attr]


def test_syslog_relp_defaults() -> None:
    """A bare relp:// endpoint gets port 2514, a window of 128, rsyslog's 8096-byte message
    limit, and no TLS."""
    config = validate_destination("syslog_relp", "relp://siem.example.com", {}, development=False)
    assert config == SyslogConfig(
        delivery_type=DeliveryType.SYSLOG_RELP,
        protocol="relp",
        host="siem.example.com",
        port=2514,
    )
    assert isinstance(config, SyslogConfig)
    assert (config.window, config.max_message_bytes, config.tls) == (128, 8096, None)
    assert config.endpoint == "relp://siem.example.com:2514"


def test_syslog_relp_over_tls_takes_the_tls_options() -> None:
    """`tls=true` turns RELP over TLS on, with the TLS options; the endpoint stays relp://."""
    config = validate_destination(
        "syslog_relp",
        "relp://[2001:db8::1]:20514",
        {
            "tls": "true",
            "ca_file": "/etc/ca.pem",
            "cert_file": "/etc/client.pem",
            "fingerprint": SHA256,
            "window": "16",
            "max_message_bytes": 65536,
        },
        development=False,
    )
    assert isinstance(config, SyslogConfig)
    assert config.tls == TlsConfig(
        ca_file="/etc/ca.pem",
        cert_file="/etc/client.pem",
        fingerprint=Fingerprint("sha256", bytes([0xAB] * 32)),
    )
    assert (config.window, config.max_message_bytes) == (16, 65536)
    assert config.endpoint == "relp://[2001:db8::1]:20514"
    plain = validate_destination("syslog_relp", "relp://h", {"tls": False}, development=False)
    assert isinstance(plain, SyslogConfig)
    assert plain.tls is None


@pytest.mark.parametrize("option", ["ca_file", "cert_file", "fingerprint", "server_name"])
def test_syslog_relp_refuses_tls_options_without_tls(option: str) -> None:
    """A TLS option on a RELP destination without tls=true is refused, saying to set it."""
    value = SHA256 if option == "fingerprint" else "/etc/x.pem"
    error = invalid("syslog_relp", "relp://h", {option: value})
    assert error.field == f"options.{option}"
    assert "tls=true" in str(error)


def test_configs_are_frozen() -> None:
    """A validated config cannot be changed afterwards."""
    config = validate_destination("syslog_tcp", "tcp://h", {}, development=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_webhook_and_hec_configs() -> None:
    """Webhook and HEC options are typed, with booleans and integers accepted as strings."""
    hook = validate_destination(
        "webhook",
        "https://hooks.example.com/x?a=1",
        {"body": "ndjson", "gzip": "true", "timeout_s": 5},
        development=False,
    )
    assert hook == WebhookConfig(
        url="https://hooks.example.com/x?a=1", body="ndjson", gzip=True, timeout_s=5.0
    )
    hec = validate_destination(
        "splunk_hec",
        "https://splunk.example.com:8088",
        {
            "ack": True,
            "gzip": "off",
            "index": "audit",
            "source": "xavyo",
            "sourcetype": "xavyo:audit",
            "host": "idp-1",
            "batch_max_bytes": 65536,
            "ca_file": "/etc/ca.pem",
        },
        development=False,
    )
    assert hec == HecConfig(
        url="https://splunk.example.com:8088",
        ack=True,
        gzip=False,
        index="audit",
        source="xavyo",
        sourcetype="xavyo:audit",
        host="idp-1",
        batch_max_bytes=65536,
        tls=TlsConfig(ca_file="/etc/ca.pem"),
    )


def test_file_config() -> None:
    """A file:// URL names an absolute path; percent escapes are decoded."""
    config = validate_destination("file", "file:///var/export/a%20b.jsonl", {}, development=False)
    assert config == FileConfig(path="/var/export/a b.jsonl")


def test_unknown_options_are_all_named() -> None:
    """Every unknown option is named in one message, with the options the type accepts."""
    error = invalid("syslog_tcp", "tcp://h", {"colour": "red", "index": "main"})
    assert error.field == "options"
    assert "'colour', 'index'" in error.reason
    assert "framing" in error.reason
    single = invalid("syslog_udp", "udp://h", {"framing": "lf"})
    assert single.field == "options.framing"


@pytest.mark.parametrize(
    ("kind", "options", "field"),
    [
        ("syslog_tcp", {"framing": "crlf"}, "options.framing"),
        ("syslog_tcp", {"timeout_s": "soon"}, "options.timeout_s"),
        ("syslog_tcp", {"timeout_s": float("nan")}, "options.timeout_s"),
        ("syslog_tcp", {"batch_max_events": 0}, "options.batch_max_events"),
        ("syslog_tcp", {"batch_max_events": True}, "options.batch_max_events"),
        ("syslog_tcp", {"batch_max_bytes": "1e6"}, "options.batch_max_bytes"),
        ("syslog_tcp", {"start": "yesterday"}, "options.start"),
        ("syslog_tcp", {"start": "2024-05-01T00:00:00"}, "options.start"),
        ("syslog_udp", {"max_datagram_bytes": 100}, "options.max_datagram_bytes"),
        ("syslog_udp", {"max_datagram_bytes": 65508}, "options.max_datagram_bytes"),
        ("syslog_tls", {"framing": "lf"}, "options.framing"),
        ("syslog_tls", {"ca_file": "relative/ca.pem"}, "options.ca_file"),
        ("syslog_tls", {"ca_file": 5}, "options.ca_file"),
        ("syslog_tls", {"key_file": "/k.pem"}, "options.key_file"),
        ("syslog_tls", {"fingerprint": "SHA1:" + ":".join(["AB"] * 20)}, "options.fingerprint"),
        ("syslog_tls", {"fingerprint": "SHA256:AB:CD"}, "options.fingerprint"),
        ("syslog_tls", {"fingerprint": "SHA256:zz"}, "options.fingerprint"),
        ("syslog_tls", {"server_name": "bad name"}, "options.server_name"),
        ("syslog_tls", {"tls_verify": "maybe"}, "options.tls_verify"),
        ("syslog_relp", {"window": 0}, "options.window"),
        ("syslog_relp", {"window": 1025}, "options.window"),
        ("syslog_relp", {"max_message_bytes": 100}, "options.max_message_bytes"),
        ("syslog_relp", {"max_message_bytes": "big"}, "options.max_message_bytes"),
        ("syslog_relp", {"tls": "maybe"}, "options.tls"),
        ("syslog_relp", {"tls": True, "tls_verify": False}, "options.tls_verify"),
        ("syslog_relp", {"framing": "lf"}, "options.framing"),
        ("webhook", {"body": "xml"}, "options.body"),
        ("splunk_hec", {"ack": "sometimes"}, "options.ack"),
        ("splunk_hec", {"index": ""}, "options.index"),
        ("splunk_hec", {"sourcetype": "a\nb"}, "options.sourcetype"),
    ],
)
def test_ill_typed_options_are_refused(kind: str, options: dict[str, object], field: str) -> None:
    """An option with a wrong type or out-of-range value is refused, naming that option."""
    endpoint = {
        "syslog_tcp": "tcp://h",
        "syslog_udp": "udp://h",
        "syslog_tls": "tls://h",
        "syslog_relp": "relp://h",
        "webhook": "https://h/x",
        "splunk_hec": "https://h:8088",
    }[kind]
    assert invalid(kind, endpoint, options).field == field


@pytest.mark.parametrize(
    ("kind", "endpoint"),
    [
        ("syslog_tcp", "udp://h:514"),
        ("syslog_tcp", "tcp://:514"),
        ("syslog_tcp", "tcp://h:0"),
        ("syslog_tcp", "tcp://h:70000"),
        ("syslog_tcp", "tcp://h:514/path"),
        ("syslog_tcp", "tcp://user:pw@h:514"),
        ("syslog_tcp", "tcp://bad_host!:514"),
        ("syslog_tcp", "tcp://h :514"),
        ("syslog_udp", "udp://[fe80::1%eth0]:514"),
        ("syslog_tls", "tcp://h:6514"),
        ("syslog_relp", "tcp://h:2514"),
        ("syslog_relp", "relp://h:2514/x"),
        ("syslog_tcp", "relp://h:2514"),
        ("webhook", "ftp://h/x"),
        ("webhook", "http://h/x"),
        ("webhook", "https://h/x#frag"),
        ("splunk_hec", "http://splunk:8088"),
        ("file", "file://host/path"),
        ("file", "file:///dir/"),
        ("file", "file:///a/../etc/passwd"),
        ("file", "relative/path"),
        ("syslog_tcp", ""),
    ],
)
def test_bad_endpoints_are_refused(kind: str, endpoint: str) -> None:
    """An endpoint of the wrong scheme or shape is refused with field `endpoint`."""
    assert invalid(kind, endpoint).field == "endpoint"


def test_unknown_delivery_type_is_refused() -> None:
    """A delivery type that does not exist is refused naming the allowed ones."""
    error = invalid("carrier_pigeon", "tcp://h")
    assert error.field == "delivery_type"
    assert "syslog_tls" in error.reason


def test_options_must_be_a_mapping() -> None:
    """Options given as something other than an object are refused."""
    with pytest.raises(InvalidDestination, match="options"):
        validate_destination("syslog_tcp", "tcp://h", ["framing"], development=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "endpoint"),
    [("syslog_tls", "tls://h"), ("webhook", "https://h/x"), ("splunk_hec", "https://h:8088")],
)
def test_tls_verify_off_refused_in_production(kind: str, endpoint: str) -> None:
    """Turning TLS verification off is refused outside development mode (invariant 6)."""
    error = invalid(kind, endpoint, {"tls_verify": False})
    assert error.field == "options.tls_verify"
    assert "development" in error.reason


def test_tls_verify_off_allowed_in_development_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In development mode verification may be off, and a warning is logged."""
    with caplog.at_level(logging.WARNING, logger="xavyo_siem.delivery"):
        config = validate_destination(
            "syslog_tls", "tls://h", {"tls_verify": "false"}, development=True
        )
    assert isinstance(config, SyslogConfig)
    assert config.tls is not None
    assert config.tls.verify is False
    assert any("verification is OFF" in r.message for r in caplog.records)


def test_plain_http_allowed_only_in_development() -> None:
    """http:// webhooks and HEC are for development only (TLS is always used in production)."""
    config = validate_destination("webhook", "http://127.0.0.1:8080/h", {}, development=True)
    assert isinstance(config, WebhookConfig)


def test_start_accepts_keywords_and_aware_times() -> None:
    """`start` accepts now, beginning or an ISO 8601 time with an offset."""
    for value in ("now", "beginning", "2024-05-01T00:00:00+00:00", "2024-05-01T00:00:00Z"):
        config = validate_destination("file", "file:///x", {"start": value}, development=False)
        assert config.start == value


def test_every_type_has_an_option_table() -> None:
    """Each delivery type lists its options, and all of them accept the common ones."""
    for kind in DeliveryType:
        assert {"batch_max_events", "batch_max_bytes", "start"} <= allowed_options(kind)
    assert "framing" in allowed_options(DeliveryType.SYSLOG_TCP)
    assert "max_datagram_bytes" in allowed_options(DeliveryType.SYSLOG_UDP)
    assert "fingerprint" in allowed_options(DeliveryType.SYSLOG_TLS)
    assert {"window", "max_message_bytes", "tls", "ca_file"} <= allowed_options(
        DeliveryType.SYSLOG_RELP
    )
    assert "sourcetype" in allowed_options(DeliveryType.SPLUNK_HEC)
    assert "body" in allowed_options(DeliveryType.WEBHOOK)


def test_every_option_names_a_config_field() -> None:
    """Each option a type accepts is a field of its config (TLS options: of TlsConfig; the
    delivery policy's: of DeliveryPolicy)."""
    configs = {
        DeliveryType.SYSLOG_TCP: SyslogConfig,
        DeliveryType.SYSLOG_TLS: SyslogConfig,
        DeliveryType.SYSLOG_UDP: SyslogConfig,
        DeliveryType.SYSLOG_RELP: SyslogConfig,
        DeliveryType.WEBHOOK: WebhookConfig,
        DeliveryType.SPLUNK_HEC: HecConfig,
        DeliveryType.FILE: FileConfig,
        DeliveryType.ELASTICSEARCH: ElasticsearchConfig,
        DeliveryType.SENTINEL: SentinelConfig,
        DeliveryType.S3: S3Config,
    }
    tls_fields = {f.name for f in dataclasses.fields(TlsConfig)} | {"tls_verify"}
    tls_fields |= {f.name for f in dataclasses.fields(DeliveryPolicy)}
    for kind, config_type in configs.items():
        names = {f.name for f in dataclasses.fields(config_type)}
        for option in allowed_options(kind):
            assert option in names or option in tls_fields, (kind, option)


def test_an_absent_option_reads_the_default_of_its_field() -> None:
    """The reader takes an absent (or None) option's default from the dataclass field."""

    @dataclasses.dataclass(frozen=True)
    class Demo:
        limit: int = 7
        label: str | None = None

    read = OptionReader({"label": None}, Demo)
    assert read("limit", integer(1, 9)) == 7
    assert read.optional("label", text()) is None
    assert OptionReader({"limit": "3"}, Demo)("limit", integer(1, 9)) == 3


def test_defaults_of_unset_options_are_the_config_defaults() -> None:
    """A destination without options gets exactly the field defaults of its config."""
    hec = validate_destination("splunk_hec", "https://h:8088", {}, development=False)
    assert hec == HecConfig(url="https://h:8088")
    hook = validate_destination("webhook", "https://h/x", {}, development=False)
    assert hook == WebhookConfig(url="https://h/x")
    tls = validate_destination("syslog_tls", "tls://h", {}, development=False)
    assert isinstance(tls, SyslogConfig)
    assert tls.tls == TlsConfig()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_attempts": 0}, "options.max_attempts"),
        ({"max_attempts": "many"}, "options.max_attempts"),
        ({"max_age_s": 0.5}, "options.max_age_s"),
        ({"breaker_threshold": 0}, "options.breaker_threshold"),
        ({"breaker_cooldown_s": "later"}, "options.breaker_cooldown_s"),
    ],
)
def test_a_bad_delivery_policy_is_refused_naming_the_option(
    options: dict[str, object], field: str
) -> None:
    """A delivery policy option out of range or of the wrong type is refused, naming it."""
    with pytest.raises(InvalidDestination) as raised:
        DeliveryPolicy.from_options(options)
    assert raised.value.field == field


@pytest.mark.parametrize("kind", [t.value for t in DeliveryType])
def test_every_delivery_type_accepts_the_delivery_policy(kind: str) -> None:
    """The delivery policy options are accepted by every delivery type; unset, a batch is
    retried without end."""
    assert set(POLICY_OPTIONS) <= allowed_options(DeliveryType(kind))
    policy = DeliveryPolicy.from_options({"max_attempts": "7", "max_age_s": "3600"})
    assert (policy.max_attempts, policy.max_age_s) == (7, 3600.0)
    assert policy.gives_up(attempts=7, failing_for_s=1)
    assert policy.gives_up(attempts=1, failing_for_s=3600)
    assert not DeliveryPolicy().gives_up(attempts=10**9, failing_for_s=1e12)
