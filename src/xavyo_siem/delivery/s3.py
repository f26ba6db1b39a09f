"""S3 transport: each batch written whole as gzip objects into an S3 bucket (AWS S3 or an
S3-compatible server), named after the batch.

Its config and credential are in s3_config.py. A batch becomes one object per UTC hour of
its events (s3_objects.py has the key layout, the bodies and the answers' classification;
s3_parquet.py the Parquet objects of an Amazon Security Lake custom source), each sent with
one signed PUT (AWS Signature Version 4, s3_signing.py): S3 stores an object only whole,
never a part of one, so there is no multipart upload to abandon half way. `Delivered`
means every object of the batch was answered 2xx, i.e. it exists, whole; only then does the
pipeline move the cursor. A batch that fails part way is sent again whole, and the objects
already written are overwritten with the same bytes.

Integrity: every PUT carries `Content-MD5` and the signed `x-amz-content-sha256` of the
body (S3 refuses a body that does not match either), and, with `checksum=sha256` (the
default), `x-amz-checksum-sha256`, which S3 keeps with the object. Each object written is
logged with its key, size and SHA-256, counted in the metrics, and named in the result's
detail (shown by `destination test`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from uuid import UUID

import aiohttp
from prometheus_client import Counter
from yarl import URL

from xavyo_siem.delivery.base import Delivered, DeliveryResult, Record, Rejected, Transport
from xavyo_siem.delivery.http import (
    PeerFailure,
    classify_as_peer_failure,
    close_session,
    describe_peer,
    open_session,
    read_bounded,
    refuse_plain_http,
)
from xavyo_siem.delivery.option_values import option_field
from xavyo_siem.delivery.s3_config import S3_OPTIONS, S3Config, S3Credentials
from xavyo_siem.delivery.s3_objects import (
    S3Object,
    classify_s3_probe,
    classify_s3_put,
    plan_objects,
)
from xavyo_siem.delivery.s3_parquet import (
    PARQUET_MEDIA_TYPE,
    parquet_available,
    plan_parquet_objects,
)
from xavyo_siem.delivery.s3_signing import amz_date, authorization, uri_encode
from xavyo_siem.delivery.scrub import scrub_result
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination

__all__ = ["S3_OPTIONS", "S3Config", "S3Credentials", "S3Transport"]

_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

log = logging.getLogger("xavyo_siem.delivery")

OBJECTS_WRITTEN: Final = Counter(
    "xavyo_siem_s3_objects_written", "Objects an S3 destination wrote (each PUT answered 2xx).",
    ("bucket",),
)  # fmt: skip
BYTES_WRITTEN: Final = Counter(
    "xavyo_siem_s3_bytes_written", "Bytes of the objects an S3 destination wrote (gzip).",
    ("bucket",),
)  # fmt: skip


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
        if config.layout == "security_lake":
            if not parquet_available():
                raise InvalidDestination(
                    option_field("layout"),
                    "security_lake writes Parquet, which needs pyarrow:"
                    " pip install 'xavyo-siem[parquet]'",
                )
            self._content_type = PARQUET_MEDIA_TYPE
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
        objects, refused = await asyncio.to_thread(self._plan, records, name)
        try:
            for obj in objects:
                result = await self._put(obj)
                if not isinstance(result, Delivered):
                    return scrub_result(result, self._secrets)
                self._written(obj)
        except PeerFailure as failure:
            return scrub_result(failure.result, self._secrets)
        self.last_objects = [(obj.key, obj.sha256_hex) for obj in objects]
        if refused:
            return scrub_result(Rejected(refused), self._secrets)
        first = objects[0]
        more = f" and {len(objects) - 1} more" if len(objects) > 1 else ""
        return Delivered(
            f"wrote s3://{self._config.bucket}/{first.key} ({first.records} records,"
            f" {len(first.body)} bytes, sha256 {first.sha256_hex}){more}"
        )

    def _plan(
        self, records: Sequence[Record], name: str | None
    ) -> tuple[list[S3Object], dict[int, str]]:
        """The batch's objects (gzip lines, or Parquet for Security Lake) and the records
        refused; run in a worker thread (compression and digests)."""
        config = self._config
        if config.layout == "security_lake":
            assert config.account_id is not None
            return plan_parquet_objects(
                records,
                prefix=config.prefix,
                region=config.region,
                account_id=config.account_id,
                tenant=self._tenant,
                name=name,
            )
        objects = plan_objects(
            records,
            prefix=config.prefix,
            tenant=self._tenant,
            name=name,
            extension=self._extension,
            max_bytes=config.batch_max_bytes,
        )
        return objects, {}

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
