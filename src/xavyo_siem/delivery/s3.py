"""S3 transport: each batch written whole as gzip objects into an S3 bucket (AWS S3 or an
S3-compatible server), named after the batch; and the config of an S3 destination
(`S3Config`) and its credential (`S3Credentials`).

The endpoint is `s3://bucket/prefix`; the server is AWS S3 in `region` unless
`endpoint_url` names another (MinIO, Ceph, a test server). A batch becomes one object per
UTC hour of its events (s3_objects.py has the key layout, the bodies and the answers'
classification), each sent with one signed PUT (AWS Signature Version 4, s3_signing.py):
S3 stores an object only whole, never a part of one, so there is no multipart upload to
abandon half way. `Delivered` means every object of the batch was answered 2xx, i.e. it
exists, whole; only then does the pipeline move the cursor. A batch that fails part way is
sent again whole, and the objects already written are overwritten with the same bytes.

Integrity: every PUT carries `Content-MD5` and the signed `x-amz-content-sha256` of the
body (S3 refuses a body that does not match either), and, with `checksum=sha256` (the
default), `x-amz-checksum-sha256`, which S3 keeps with the object. Each object written is
logged with its key, size and SHA-256, counted in the metrics, and named in the result's
detail (shown by `destination test`).

The credential is the destination's secret, a JSON object
`{"access_key_id": "...", "secret_access_key": "...", "session_token": "..."}`
(`session_token` only for temporary credentials): the key id and its secret travel together,
so a change of either is a change of the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal, get_args
from uuid import UUID

import aiohttp
import orjson
from prometheus_client import Counter
from yarl import URL

from xavyo_siem.delivery.base import Delivered, DeliveryResult, Record, Transport
from xavyo_siem.delivery.endpoints import is_ip, split_url
from xavyo_siem.delivery.http import (
    PeerFailure,
    classify_as_peer_failure,
    close_session,
    describe_peer,
    open_session,
    read_bounded,
    read_http_target,
    refuse_plain_http,
)
from xavyo_siem.delivery.option_values import (
    BATCH_OPTIONS,
    OptionReader,
    Parser,
    choice,
    option_field,
    seconds,
    show,
)
from xavyo_siem.delivery.s3_objects import (
    S3Object,
    classify_s3_probe,
    classify_s3_put,
    plan_objects,
)
from xavyo_siem.delivery.s3_signing import amz_date, authorization, uri_encode
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.delivery.tls import TLS_OPTIONS, TlsConfig
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["S3_OPTIONS", "S3Config", "S3Credentials", "S3Transport"]

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
    )
)

_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX: Final = re.compile(r"[A-Za-z0-9!_.*'()=/-]{0,512}")
_REGION: Final = re.compile(r"[a-z0-9-]{1,32}")
_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

log = logging.getLogger("xavyo_siem.delivery")

Addressing = Literal["auto", "path", "virtual"]
Checksum = Literal["sha256", "md5"]

OBJECTS_WRITTEN: Final = Counter(
    "xavyo_siem_s3_objects_written", "Objects an S3 destination wrote (each PUT answered 2xx).",
    ("bucket",),
)  # fmt: skip
BYTES_WRITTEN: Final = Counter(
    "xavyo_siem_s3_bytes_written", "Bytes of the objects an S3 destination wrote (gzip).",
    ("bucket",),
)  # fmt: skip


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
    `batch_max_bytes` caps an object's uncompressed size.
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
_max_age: Final = seconds(0, 86_400)
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


class S3Transport:
    """Writes batches as objects into one bucket (see the module docstring)."""

    def __init__(
        self,
        config: S3Config,
        *,
        credentials: S3Credentials,
        tenant_id: UUID,
        event_is_json: bool,
        development: bool = False,
        egress: EgressGuard | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._base = URL(config.base_url, encoded=True)
        refuse_plain_http(self._base, development=development)
        self._credentials = credentials
        self._tenant = str(tenant_id)
        self._extension = ".ndjson.gz" if event_is_json else ".log.gz"
        self._content_type = "application/gzip"
        self._egress = egress
        self._clock = clock
        self._peer = describe_peer(self._base)
        self._host = self._base.raw_authority
        self._secrets = [s for s in (credentials.secret_access_key, credentials.session_token) if s]
        self._session: aiohttp.ClientSession | None = None
        self.last_objects: list[tuple[str, str]] = []  # (key, sha256) of the last batch

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(
                self._config.tls, timeout_s=self._config.timeout_s, egress=self._egress
            )
        return self._session

    def _signed_headers(
        self, method: str, path: str, query: Mapping[str, str], extra: Mapping[str, str]
    ) -> dict[str, str]:
        headers = {
            "host": self._host,
            "x-amz-date": amz_date(self._clock()),
            **extra,
        }
        headers.setdefault("x-amz-content-sha256", _EMPTY_SHA256)
        if self._credentials.session_token:
            headers["x-amz-security-token"] = self._credentials.session_token
        headers["Authorization"] = authorization(
            method=method,
            path=path,
            query=query,
            headers=headers,
            access_key_id=self._credentials.access_key_id,
            secret_access_key=self._credentials.secret_access_key,
            region=self._config.region,
        )
        return headers

    def _url(self, path: str, query: Mapping[str, str]) -> URL:
        url = self._base.with_path(path, encoded=True)
        if query:
            text = "&".join(
                f"{uri_encode(k, keep_slash=False)}={uri_encode(v, keep_slash=False)}"
                for k, v in sorted(query.items())
            )
            url = url.with_query(text)
        return url

    async def _request(
        self, method: str, path: str, query: Mapping[str, str], extra: Mapping[str, str],
        body: bytes = b"",
    ) -> tuple[int, Mapping[str, str], bytes]:  # fmt: skip
        headers = self._signed_headers(method, path, query, extra)
        with classify_as_peer_failure(self._peer):
            session = self._open()
            async with session.request(
                method,
                self._url(path, query),
                data=body if body else None,
                headers=headers,
                allow_redirects=False,
                server_hostname=self._config.tls.server_name,
            ) as response:
                answer = await read_bounded(response, 16_384)
                return response.status, response.headers, answer

    def _object_path(self, key: str) -> str:
        return f"{self._base.raw_path.rstrip('/')}/{uri_encode(key, keep_slash=True)}"

    async def _put(self, obj: S3Object) -> DeliveryResult:
        extra = {
            "content-type": self._content_type,
            "content-md5": obj.md5_b64,
            "x-amz-content-sha256": obj.sha256_hex,
        }
        if self._config.checksum == "sha256":
            extra["x-amz-checksum-sha256"] = obj.sha256_b64
            extra["x-amz-sdk-checksum-algorithm"] = "SHA256"  # as the AWS SDKs send it
        status, headers, answer = await self._request(
            "PUT", self._object_path(obj.key), {}, extra, obj.body
        )
        return classify_s3_put(status, headers, answer, secrets=self._secrets)

    # -- the Transport interface -----------------------------------------------------------

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Write `records` as objects named by their first and last event."""
        return await self.send_named(records, name=None)

    async def send_named(self, records: Sequence[Record], *, name: str | None) -> DeliveryResult:
        """Write `records` as the objects of a batch named `name` (`<after>-<through>`);
        `Delivered` once every one of them exists."""
        if not records:
            return Delivered()
        objects = await asyncio.to_thread(
            plan_objects,
            records,
            prefix=self._config.prefix,
            tenant=self._tenant,
            name=name,
            extension=self._extension,
            max_bytes=self._config.batch_max_bytes,
        )
        try:
            for obj in objects:
                result = await self._put(obj)
                if not isinstance(result, Delivered):
                    return scrub_result(result, self._secrets)
                self._written(obj)
        except PeerFailure as failure:
            return scrub_result(failure.result, self._secrets)
        self.last_objects = [(obj.key, obj.sha256_hex) for obj in objects]
        first = objects[0]
        more = f" and {len(objects) - 1} more" if len(objects) > 1 else ""
        return Delivered(
            f"wrote s3://{self._config.bucket}/{first.key} ({first.records} records,"
            f" {len(first.body)} bytes, sha256 {first.sha256_hex}){more}"
        )

    def _written(self, obj: S3Object) -> None:
        bucket = self._config.bucket
        OBJECTS_WRITTEN.labels(bucket).inc()
        BYTES_WRITTEN.labels(bucket).inc(len(obj.body))
        log.info(
            "s3 object written: s3://%s/%s (%d records, %d bytes, sha256 %s)",
            bucket, obj.key, obj.records, len(obj.body), obj.sha256_hex,
        )  # fmt: skip

    async def check(self) -> DeliveryResult:
        """List at most zero keys of the bucket: proves DNS, TCP, TLS, the signature and
        the bucket, without writing (a key that may only write passes; see
        `classify_s3_probe`)."""
        query = {"list-type": "2", "max-keys": "0"}
        path = self._base.raw_path.rstrip("/") or "/"
        try:
            status, headers, answer = await self._request("GET", path, query, {})
        except PeerFailure as failure:
            return scrub_result(failure.result, self._secrets)
        return scrub_result(classify_s3_probe(status, headers, answer), self._secrets)

    async def aclose(self) -> None:
        """Close the connection pool (every object reported written exists); never raises."""
        session, self._session = self._session, None
        await close_session(session)


if TYPE_CHECKING:

    def _implements_transport(transport: S3Transport) -> Transport:
        return transport
