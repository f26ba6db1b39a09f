"""The config of an S3 destination (`S3Config`, `S3_OPTIONS`) and its credential
(`S3Credentials`), read from the endpoint `s3://bucket/prefix`, the options and the secret.

The server is Amazon S3 in `region` unless `endpoint_url` names another (MinIO, Ceph, a
test server); `addressing` puts the bucket in the path or in the host name. Validation is
pure, like every config's (options.py): errors name the field and the rule.

The credential is the destination's secret, a JSON object
`{"access_key_id": "...", "secret_access_key": "...", "session_token": "..."}`
(`session_token` only for temporary credentials): the key id and its secret travel together,
so a change of either is a change of the secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

import orjson
from yarl import URL

from xavyo_siem.delivery.endpoints import is_ip, split_url
from xavyo_siem.delivery.http import read_http_target
from xavyo_siem.delivery.option_values import (
    BATCH_OPTIONS,
    OptionReader,
    Parser,
    choice,
    option_field,
    seconds,
    show,
)
from xavyo_siem.delivery.tls import TLS_OPTIONS, TlsConfig
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["S3_OPTIONS", "S3Config", "S3Credentials"]

S3_OPTIONS: Final = frozenset(
    (
        *BATCH_OPTIONS,
        *TLS_OPTIONS,
        "endpoint_url",
        "region",
        "addressing",
        "checksum",
        "object_max_age_s",
        "timeout_s",
        "layout",
        "account_id",
    )
)

_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX: Final = re.compile(r"[A-Za-z0-9!_.*'()=/-]{0,512}")
_REGION: Final = re.compile(r"[a-z0-9-]{1,32}")

Addressing = Literal["auto", "path", "virtual"]
Checksum = Literal["sha256", "md5"]
Layout = Literal["hive", "security_lake"]


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Config:
    """An S3 bucket that batches are written to as gzip objects (the credential is the
    secret, not here).

    `base_url` is the bucket's URL, made from `endpoint_url` (default: AWS S3 in `region`)
    and `addressing`: `path` puts the bucket in the path (`https://host/bucket/key`, what
    most S3-compatible servers need), `virtual` in the host name
    (`https://bucket.s3.region.amazonaws.com/key`); `auto` is `virtual` for AWS and `path`
    with an `endpoint_url`. `object_max_age_s` is how long the oldest event may wait for a
    batch of `batch_max_events` to fill before a smaller object is written (0: at once);
    `batch_max_bytes` caps an object's uncompressed size. `layout=security_lake` writes
    Parquet objects for an Amazon Security Lake custom source (s3_parquet.py): the prefix is
    the source's location (`ext/<source name>[/<version>]`) and `account_id` its
    `accountId` partition.
    """

    delivery_type: DeliveryType = DeliveryType.S3
    bucket: str
    prefix: str = ""
    base_url: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    addressing: Addressing = "auto"
    checksum: Checksum = "sha256"
    object_max_age_s: float = 60.0
    timeout_s: float = 60.0
    layout: Layout = "hive"
    account_id: str | None = None
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch_max_events: int = 10_000
    batch_max_bytes: int = 16 << 20
    start: str = "now"

    @classmethod
    def from_options(
        cls, endpoint: str, options: Mapping[str, object], *, development: bool
    ) -> S3Config:
        """The config of an S3 destination, or InvalidDestination naming the field.

        `options` holds only names of `S3_OPTIONS` (checked before). `development` allows
        an `endpoint_url` of plain http:// and `tls_verify=false`.
        """
        bucket, prefix = _bucket_and_prefix(endpoint)
        read = OptionReader(options, cls)
        region = read("region", _region)
        addressing = read("addressing", _addressing)
        endpoint_url = read.optional("endpoint_url", _url_text)
        if endpoint_url is None:
            server = f"https://s3.{region}.amazonaws.com"
            tls = TlsConfig.from_options(
                options, delivery_type=DeliveryType.S3, endpoint=server, development=development
            )
        else:
            server, tls = _server_url(endpoint_url, options, development=development)
        path_style = addressing == "path" or (addressing == "auto" and endpoint_url is not None)
        if not path_style and "." in bucket and server.startswith("https://"):
            raise InvalidDestination(
                "endpoint",
                "a bucket name with dots does not match the server's TLS certificate as a"
                " host name: set the option addressing=path",
            )
        url = URL(server)
        if path_style:
            base_url = f"{server}/{bucket}"
        else:
            base_url = str(url.with_host(f"{bucket}.{url.raw_host}")).rstrip("/")
        layout = read("layout", _layout)
        account_id = read.optional("account_id", _account_id)
        if layout == "security_lake":
            _check_security_lake(prefix, account_id)
        return cls(
            bucket=bucket,
            prefix=prefix,
            base_url=base_url,
            endpoint_url=endpoint_url,
            region=region,
            addressing=addressing,
            checksum=read("checksum", _checksum),
            object_max_age_s=read("object_max_age_s", _max_age),
            timeout_s=read("timeout_s", _timeout),
            layout=layout,
            account_id=account_id,
            tls=tls,
            **read.batch(),
        )


def _region(name: str, value: object) -> str:
    """A region name as S3 signs it (`eu-west-1`; S3-compatible servers often `us-east-1`)."""
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise InvalidDestination(
            option_field(name), f"must be an AWS region name such as eu-west-1, got {show(value)}"
        )
    return value


_addressing: Final[Parser[Addressing]] = choice(*get_args(Addressing))
_checksum: Final[Parser[Checksum]] = choice(*get_args(Checksum))
_layout: Final[Parser[Layout]] = choice(*get_args(Layout))
_ACCOUNT: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_max_age: Final = seconds(0, 86_400)


def _account_id(name: str, value: object) -> str:
    """The `accountId` partition: the source's AWS account id or its external id."""
    if not isinstance(value, str) or not _ACCOUNT.fullmatch(value):
        raise InvalidDestination(
            option_field(name),
            f"must be an AWS account id or external id (letters, digits, _.-), got {show(value)}",
        )
    return value


def _check_security_lake(prefix: str, account_id: str | None) -> None:
    """A Security Lake custom source: its location as prefix, and an account id."""
    parts = prefix.split("/")
    if parts[0] != "ext" or len(parts) not in (2, 3) or not parts[1]:
        raise InvalidDestination(
            "endpoint",
            "with layout=security_lake the prefix is the custom source's location,"
            " s3://<bucket>/ext/<source name>[/<source version>]",
        )
    if account_id is None:
        raise InvalidDestination(
            option_field("account_id"),
            "layout=security_lake needs the accountId partition: the source's account id",
        )


_timeout: Final = seconds(1, 600)


def _url_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidDestination(option_field(name), "must be a URL such as https://minio:9000")
    return value


def _server_url(
    endpoint_url: str, options: Mapping[str, object], *, development: bool
) -> tuple[str, TlsConfig]:
    """The S3-compatible server's URL (scheme, host, port; no path) and its TLS settings;
    errors about the URL name `options.endpoint_url`."""
    try:
        url, tls = read_http_target(DeliveryType.S3, endpoint_url, options, development=development)
        rest = split_url(url).rest
    except InvalidDestination as exc:
        if exc.field != "endpoint":
            raise
        raise InvalidDestination(option_field("endpoint_url"), exc.reason) from None
    if rest not in ("", "/"):
        raise InvalidDestination(
            option_field("endpoint_url"),
            "names the server only (scheme, host, port), without a path or query",
        )
    return url.rstrip("/"), tls


def _bucket_and_prefix(endpoint: str) -> tuple[str, str]:
    """The bucket and key prefix of `s3://bucket/prefix`, or InvalidDestination."""
    scheme, host, port, rest, _url = split_url(endpoint)
    written = endpoint.partition("://")[2].partition("/")[0]
    if scheme != "s3":
        raise InvalidDestination("endpoint", "an s3 destination needs an s3://bucket/prefix URL")
    bad = not _BUCKET.fullmatch(host) or ".." in host or is_ip(host) or host.startswith("xn--")
    if port is not None or written != host or bad:
        raise InvalidDestination(
            "endpoint",
            f"bucket {written[:70]!r}: 3 to 63 lower-case letters, digits, dots and hyphens,"
            " starting and ending with a letter or digit",
        )
    if "?" in rest or "#" in rest:
        raise InvalidDestination("endpoint", "an s3:// URL has no query or fragment")
    prefix = rest.strip("/")
    if not _PREFIX.fullmatch(prefix) or "//" in prefix or ".." in prefix.split("/"):
        raise InvalidDestination(
            "endpoint",
            "the key prefix may hold letters, digits and !_.*'()=/- (no empty or '..'"
            " segments), at most 512 characters",
        )
    return host, prefix


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """An access key: its id, its secret, and for temporary credentials the session token."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    @classmethod
    def from_secret(cls, secret: str | None) -> S3Credentials:
        """The access key held by a destination's secret (see the module docstring), or
        InvalidDestination naming `secret` (never quoting it)."""
        if not secret:
            raise InvalidDestination("secret", "an s3 destination needs its access key")
        try:
            value = orjson.loads(secret)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict) or set(value) - {
            "access_key_id", "secret_access_key", "session_token"
        }:  # fmt: skip
            raise InvalidDestination(
                "secret",
                'must be a JSON object {"access_key_id": ..., "secret_access_key": ...}'
                ' (and "session_token" for temporary credentials), nothing else',
            )
        parts: list[str | None] = []
        for name in ("access_key_id", "secret_access_key", "session_token"):
            text = value.get(name)
            if text is None and name == "session_token":
                parts.append(None)
                continue
            if not isinstance(text, str) or not 3 <= len(text) <= 2048 or _has_space(text):
                raise InvalidDestination(
                    "secret", f"{name} must be 3 to 2048 printable characters without spaces"
                )
            parts.append(text)
        return cls(str(parts[0]), str(parts[1]), parts[2])


def _has_space(text: str) -> bool:
    return any(c.isspace() or not c.isprintable() for c in text)
