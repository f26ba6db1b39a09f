"""The one TLS client config of syslog over TLS and of HTTPS (webhook, Splunk HEC): its
options, parsed once into `TlsConfig`, and the `ssl.SSLContext` built from it.

The options (defaults: the fields of `TlsConfig`):

* `ca_file`: a PEM bundle that replaces the system trust store.
* `cert_file`, `key_file`: a client certificate (mutual TLS); `key_file` needs `cert_file`
  (which may hold the key itself).
* `fingerprint`: `SHA256:AB:CD:...` (SHA-256/384/512 of the certificate's DER form; SHA-1
  and MD5 are refused) pins the peer's exact certificate.
* `server_name`: the name sent as SNI and checked against the certificate (unset: the
  endpoint's host).
* `tls_verify`: false turns chain and host-name checks off. It is refused unless the
  process runs in development mode, and logs a warning on the `xavyo_siem.delivery` logger
  when it is allowed.

With a fingerprint and no `ca_file` the pinned certificate is the only trust anchor (RFC
5425 §5.1, for self-signed receivers): chain and host name are not checked, the fingerprint
is, by the transport right after the handshake. With both, all three are checked (syslog;
over HTTPS the combination is refused, see `http.read_http_target`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from xavyo_siem.delivery.endpoints import is_hostname, is_ip
from xavyo_siem.delivery.option_values import (
    OptionReader,
    option_field,
    parse_bool,
    parse_path,
    show,
    text,
)
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = [
    "TLS_OPTIONS",
    "Fingerprint",
    "TlsConfig",
    "TlsFileError",
    "client_context",
    "parse_fingerprint",
    "parse_server_name",
]

log = logging.getLogger("xavyo_siem.delivery")

TLS_OPTIONS: Final = (
    "ca_file",
    "cert_file",
    "key_file",
    "fingerprint",
    "server_name",
    "tls_verify",
)
_FINGERPRINT_ALGORITHMS: Final = {"sha256": 32, "sha384": 48, "sha512": 64}


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A pinned certificate fingerprint: hash algorithm (`sha256`, ...) and its digest."""

    algorithm: str
    digest: bytes

    def __str__(self) -> str:
        return f"{self.algorithm.upper()}:" + ":".join(f"{b:02X}" for b in self.digest)

    def of_certificate(self, der: bytes) -> Fingerprint:
        """The fingerprint of the DER certificate `der`, by this pin's algorithm."""
        return Fingerprint(self.algorithm, hashlib.new(self.algorithm, der).digest())

    def matches(self, seen: Fingerprint) -> bool:
        """Whether `seen` is this pin (compared in constant time)."""
        return seen.algorithm == self.algorithm and hmac.compare_digest(seen.digest, self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """How a client verifies its TLS peer and, for mutual TLS, presents itself.

    `verify` is the `tls_verify` option; the rest carry their option's name. See the module
    docstring for what each one does.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    fingerprint: Fingerprint | None = None
    server_name: str | None = None
    verify: bool = True

    @property
    def pinned_only(self) -> bool:
        """Whether the fingerprint is the only trust anchor (no chain or host-name check)."""
        return self.fingerprint is not None and self.ca_file is None

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, object],
        *,
        delivery_type: DeliveryType,
        endpoint: str,
        development: bool,
    ) -> TlsConfig:
        """The TLS options of a destination (names in `TLS_OPTIONS`), checked."""
        read = OptionReader(options, cls)
        config = cls(
            ca_file=read.optional("ca_file", parse_path),
            cert_file=read.optional("cert_file", parse_path),
            key_file=read.optional("key_file", parse_path),
            fingerprint=read.optional("fingerprint", parse_fingerprint),
            server_name=read.optional("server_name", parse_server_name),
            verify=read("tls_verify", parse_bool, field="verify"),
        )
        if config.key_file and not config.cert_file:
            raise InvalidDestination(option_field("key_file"), "needs cert_file as well")
        if not config.verify:
            _allow_unverified(delivery_type, endpoint, development)
        return config


def _allow_unverified(delivery_type: DeliveryType, endpoint: str, development: bool) -> None:
    """Refuse `tls_verify=false` outside development mode; warn when it is allowed."""
    if not development:
        raise InvalidDestination(
            option_field("tls_verify"),
            "false is refused: TLS verification may only be turned off when"
            " XAVYO_SIEM_ENV=development",
        )
    log.warning(
        "TLS verification is OFF for %s destination %s (development mode only)",
        delivery_type.value,
        endpoint[:200],
    )


_server_name_text: Final = text(253)
_fingerprint_text: Final = text(300)


def parse_server_name(name: str, value: object) -> str:
    """A DNS name or IP address to send as SNI and verify."""
    server_name = _server_name_text(name, value)
    if not is_ip(server_name) and not is_hostname(server_name):
        raise InvalidDestination(
            option_field(name), f"must be a DNS name or IP address, got {show(value)}"
        )
    return server_name


def parse_fingerprint(name: str, value: object) -> Fingerprint:
    """`SHA256:AB:CD:...` (also SHA384, SHA512; colons and spaces optional, any case)."""
    algorithm, sep, hex_part = _fingerprint_text(name, value).strip().partition(":")
    algorithm = algorithm.lower().replace("-", "")
    if not sep or algorithm not in _FINGERPRINT_ALGORITHMS:
        if algorithm in ("sha1", "md5"):
            reason = f"{algorithm.upper()} fingerprints are refused (collisions are practical);"
        else:
            reason = "must be"
        raise InvalidDestination(
            option_field(name),
            f"{reason} a hash name (SHA256, SHA384 or SHA512), a colon and the hex digest,"
            " e.g. SHA256:AB:CD:...",
        )
    try:
        digest = bytes.fromhex(hex_part.replace(":", "").replace(" ", ""))
    except ValueError:
        raise InvalidDestination(option_field(name), "the digest must be hexadecimal") from None
    if len(digest) != _FINGERPRINT_ALGORITHMS[algorithm]:
        raise InvalidDestination(
            option_field(name),
            f"a {algorithm.upper()} digest has {_FINGERPRINT_ALGORITHMS[algorithm]} bytes,"
            f" got {len(digest)}",
        )
    return Fingerprint(algorithm, digest)


class TlsFileError(Exception):
    """A CA bundle, client certificate or key that cannot be loaded when a transport
    connects; the message names the option and the file (never a password)."""


def client_context(tls: TlsConfig, *, key_password: str | bytes | None = None) -> ssl.SSLContext:
    """The client `SSLContext` for `tls`: TLS 1.2 or later, the chain and host name checked
    unless `verify` is off or the fingerprint is the only trust anchor.

    A pinned fingerprint is not checked by the context: the transport compares it right
    after the handshake. `key_password` decrypts an encrypted client key; without one,
    OpenSSL's pass-phrase request is answered with nothing rather than a terminal prompt,
    so an encrypted key fails to load. Raises `TlsFileError` for a file that cannot be
    loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    checked = tls.verify and not tls.pinned_only
    context.check_hostname = checked
    context.verify_mode = ssl.CERT_REQUIRED if checked else ssl.CERT_NONE
    try:
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=tls.ca_file)
        elif checked:
            context.load_default_certs()
    except (OSError, ValueError) as exc:
        raise TlsFileError(f"ca_file: cannot load {tls.ca_file}: {_describe(exc)}") from None
    if tls.cert_file is not None:
        try:
            password = key_password if key_password is not None else b""
            context.load_cert_chain(tls.cert_file, tls.key_file, password=password)
        except (OSError, ValueError) as exc:
            raise TlsFileError(
                f"cert_file/key_file: cannot load the client certificate {tls.cert_file}:"
                f" {_describe(exc)}"
            ) from None
    return context


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
