"""The one TLS config: the context built from it, the pin, and files that cannot be loaded."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import orjson
import pytest

from xavyo_siem.delivery.base import Misconfigured, Record
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.splunk_hec import HecConfig, HecTransport
from xavyo_siem.delivery.syslog import SyslogTransport
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.delivery.tls import Fingerprint, TlsConfig, TlsFileError, client_context
from xavyo_siem.delivery.webhook import WebhookConfig, WebhookTransport

from peers.hec_server import make_tls

PIN = Fingerprint("sha256", bytes([0xAB] * 32))


def test_a_verifying_context_checks_chain_and_host_name() -> None:
    """By default the context needs a certificate that chains and names the host, TLS >= 1.2."""
    context = client_context(TlsConfig())
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_pin_without_ca_file_is_the_only_trust_anchor() -> None:
    """With a fingerprint and no ca_file the context checks nothing: the pin decides."""
    context = client_context(TlsConfig(fingerprint=PIN))
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_a_pin_with_ca_file_keeps_the_chain_check(tmp_path: Path) -> None:
    """With a fingerprint and a ca_file, chain and host name are still checked."""
    files = make_tls(tmp_path)
    context = client_context(TlsConfig(ca_file=str(files.ca_file), fingerprint=PIN))
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_verification_off_checks_nothing() -> None:
    """`verify=False` (development only) turns chain and host-name checks off."""
    context = client_context(TlsConfig(verify=False))
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_a_client_certificate_is_loaded(tmp_path: Path) -> None:
    """`cert_file` and `key_file` are loaded into the context (mutual TLS)."""
    files = make_tls(tmp_path)
    tls = TlsConfig(cert_file=str(files.cert_file), key_file=str(files.key_file))
    assert client_context(tls).verify_mode == ssl.CERT_REQUIRED


def test_files_that_cannot_be_loaded_name_their_option(tmp_path: Path) -> None:
    """A missing CA bundle or client certificate raises TlsFileError naming the option."""
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(TlsFileError, match=r"^ca_file: cannot load .*missing\.pem"):
        client_context(TlsConfig(ca_file=missing))
    with pytest.raises(TlsFileError, match=r"^cert_file/key_file: cannot load"):
        client_context(TlsConfig(cert_file=missing))


def test_a_pin_matches_only_its_certificate() -> None:
    """`of_certificate` hashes with the pin's algorithm; `matches` compares whole digests."""
    der = b"certificate"
    pin = Fingerprint("sha384", hashlib.sha384(der).digest())
    assert pin.matches(pin.of_certificate(der))
    assert not pin.matches(pin.of_certificate(b"another certificate"))
    assert not pin.matches(Fingerprint("sha256", pin.digest[:32]))
    assert str(pin.of_certificate(der)).startswith("SHA384:")


def _records() -> list[Record]:
    return [Record("e1", 1_700_000_000_000_000, orjson.dumps({"n": 1}).decode())]


async def test_https_with_an_unreadable_ca_file_is_misconfigured(tmp_path: Path) -> None:
    """Over HTTPS a CA file that cannot be read at connect time is Misconfigured, not raised."""
    options = {"ca_file": str(tmp_path / "gone.pem")}
    hook = validate_destination("webhook", "https://127.0.0.1:9/h", options, development=False)
    hec = validate_destination("splunk_hec", "https://127.0.0.1:9", options, development=False)
    assert isinstance(hook, WebhookConfig)
    assert isinstance(hec, HecConfig)
    webhook_sender = WebhookTransport(hook, event_is_json=True)
    hec_sender = HecTransport(hec, token="00000000-0000-4000-8000-000000000001", event_is_json=True)
    try:
        for result in (
            await webhook_sender.send(_records()),
            await webhook_sender.check(),
            await hec_sender.send(_records()),
            await hec_sender.check(),
        ):
            assert isinstance(result, Misconfigured)
            assert result.reason.startswith("ca_file: cannot load")
    finally:
        await webhook_sender.aclose()
        await hec_sender.aclose()


async def test_syslog_tls_with_an_unreadable_ca_file_is_misconfigured(tmp_path: Path) -> None:
    """Over syslog TLS the same file gives the same Misconfigured reason."""
    options = {"ca_file": str(tmp_path / "gone.pem")}
    config = validate_destination("syslog_tls", "tls://127.0.0.1:9", options, development=False)
    assert isinstance(config, SyslogConfig)
    sender = SyslogTransport(config)
    try:
        result = await sender.check()
    finally:
        await sender.aclose()
    assert isinstance(result, Misconfigured)
    assert result.reason.startswith("ca_file: cannot load")
