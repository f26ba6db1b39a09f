"""What the S3 transport writes, sans I/O: objects made from a batch, their keys and digests,
and the classification of an S3 server's answers.

**Keys.** Every object of a batch is named after the batch, so sending the same batch again
writes the same keys with the same bytes and overwrites instead of adding a copy:

    <prefix>/tenant=<tenant uuid>/year=2026/month=01/day=05/hour=13/<name>.ndjson.gz

The partitions are Hive style (`key=value`, zero-padded), which Athena, Glue and Spark prune
on, and hold the **event time in UTC** of the records inside: a batch whose events fall in
two hours becomes two objects, each under its hour, both with the batch's name. The name is
`<after>-<through>`, the store positions the batch starts after and runs through (e.g.
`4812.0-4812.9000`, `txid.seq`), given by the pipeline; without them (a replay of dead
letters, `destination test`) it is `<first event id>-<last event id>`. An hour's records
larger than `batch_max_bytes` (uncompressed) are cut into parts `<name>-p1`, `<name>-p2`, ….
The extension is `.ndjson.gz` for the `json` format and `.log.gz` for the text formats.

**Bodies.** One record per line (LF), gzip written by ISA-L's igzip at level 1 (about four
times faster than zlib's fastest level on audit JSON, and smaller), with a fixed header
(modification time 0), so the same records always give the same bytes, the same MD5 and
the same SHA-256 (recorded for each object: `Content-MD5`, `x-amz-checksum-sha256`, and the
signed payload hash `x-amz-content-sha256`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from isal import igzip

from xavyo_siem.delivery.base import Delivered, DeliveryResult, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.framing import encode_utf8
from xavyo_siem.delivery.http import cut_spans, header, parse_retry_after, peer_text

__all__ = [
    "S3Object",
    "classify_s3_probe",
    "classify_s3_put",
    "object_key",
    "object_of",
    "plan_objects",
]

_ERROR_CODE: Final = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
_ERROR_MESSAGE: Final = re.compile(rb"<Message>([^<]{0,400})</Message>")

# S3 error codes (Amazon S3 API reference, "Error responses") that a person must fix.
_CREDENTIAL_CODES: Final = frozenset(
    ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
     "TokenRefreshRequired", "InvalidSecurity")
)  # fmt: skip
_SETTINGS_CODES: Final = frozenset(
    ("AccessDenied", "AllAccessDisabled", "NoSuchBucket", "AuthorizationHeaderMalformed",
     "PermanentRedirect", "RequestTimeTooSkewed", "AccountProblem", "InvalidBucketName",
     "InvalidObjectState", "KeyTooLongError", "EntityTooLarge", "MethodNotAllowed")
)  # fmt: skip
# Answers worth another try: the bytes were damaged on the way, or the server is busy.
_TRANSIENT_CODES: Final = frozenset(
    ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "IncompleteBody",
     "RequestTimeout", "SlowDown", "ServiceUnavailable", "InternalError",
     "OperationAborted", "TemporaryRedirect")
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class S3Object:
    """One object to PUT: its key, its gzip body, the records it holds, and its digests
    (`md5_b64` for Content-MD5, `sha256_hex` for the signed payload hash and the log)."""

    key: str
    body: bytes
    records: int
    md5_b64: str
    sha256_hex: str

    @property
    def sha256_b64(self) -> str:
        """The SHA-256 as `x-amz-checksum-sha256` writes it (base64 of the digest)."""
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode("ascii")


def object_key(*, prefix: str, tenant: str, hour: datetime, name: str, extension: str) -> str:
    """The key of an object: prefix, Hive partitions of tenant and UTC hour, the name."""
    base = f"{prefix}/" if prefix else ""
    return (
        f"{base}tenant={tenant}/year={hour.year:04d}/month={hour.month:02d}/"
        f"day={hour.day:02d}/hour={hour.hour:02d}/{name}{extension}"
    )


def _hour_of(timestamp_us: int) -> datetime:
    return datetime.fromtimestamp(timestamp_us // 3_600_000_000 * 3600, UTC)


def object_of(key: str, body: bytes, records: int) -> S3Object:
    """The object `key` with `body` (holding `records` records), its digests computed."""
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")
    return S3Object(key, body, records, md5, hashlib.sha256(body).hexdigest())


def _made(key: str, lines: Sequence[bytes]) -> S3Object:
    return object_of(key, igzip.compress(b"".join(lines), compresslevel=1, mtime=0), len(lines))


def plan_objects(
    records: Sequence[Record],
    *,
    prefix: str,
    tenant: str,
    name: str | None,
    extension: str,
    max_bytes: int,
) -> list[S3Object]:
    """The objects that hold `records` (see the module docstring), in order of their hour.

    `name` is the batch's `<after>-<through>`; None names it by its first and last event.
    """
    if not records:
        return []
    base = name or f"{records[0].event_id}-{records[-1].event_id}"
    by_hour: dict[int, list[bytes]] = {}
    for record in records:
        hour = record.timestamp_us // 3_600_000_000
        by_hour.setdefault(hour, []).append(encode_utf8(record.text) + b"\n")
    objects: list[S3Object] = []
    for hour, lines in sorted(by_hour.items()):
        when = _hour_of(hour * 3_600_000_000)
        spans = cut_spans(
            [len(line) for line in lines], 0, len(lines), max_events=len(lines), max_bytes=max_bytes
        )
        for number, (start, end) in enumerate(spans, 1):
            part = base if len(spans) == 1 else f"{base}-p{number}"
            key = object_key(
                prefix=prefix, tenant=tenant, hour=when, name=part, extension=extension
            )
            objects.append(_made(key, lines[start:end]))
    return objects


def _error_of(body: bytes) -> tuple[str, str]:
    """The `<Code>` and `<Message>` of an S3 error document ("" when absent)."""
    code = _ERROR_CODE.search(body)
    message = _ERROR_MESSAGE.search(body)
    return (
        code.group(1).decode("ascii") if code else "",
        message.group(1).decode("utf-8", "replace") if message else "",
    )


def classify_s3_put(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    now: float | None = None,
    secrets: Sequence[str] = (),
) -> DeliveryResult:
    """What an S3 server's answer to a PUT of one object means.

    | answer                                               | result                        |
    | ---------------------------------------------------- | ----------------------------- |
    | 2xx                                                  | Delivered: the object exists  |
    | 408, 429, 5xx; BadDigest, SlowDown, RequestTimeout … | RetryLater (Retry-After)      |
    | InvalidAccessKeyId, SignatureDoesNotMatch, Expired…  | Misconfigured: the credential |
    | AccessDenied, NoSuchBucket, wrong region, clock skew | Misconfigured, code + message |
    | other 3xx and 4xx                                    | Misconfigured                 |
    | anything else                                        | RetryLater                    |

    An object is all or nothing, so no record is ever `Rejected` on its own.
    """
    if 200 <= status < 300:
        return Delivered()
    code, message = _error_of(body)
    said = peer_text(f"{code}: {message}".encode() if code else body, secrets=secrets)
    detail = f"S3 answered HTTP {status}" + (f" ({said})" if said else "")
    if code in _TRANSIENT_CODES or status in (408, 429) or 500 <= status < 600:
        return RetryLater(detail, parse_retry_after(header(headers, "Retry-After"), now=now))
    if code in _CREDENTIAL_CODES:
        return Misconfigured(f"{detail}: the access key id or secret access key is not accepted")
    if status == 403 and not code:
        return Misconfigured(f"{detail}: the credential is refused or may not write here")
    if code == "NoSuchBucket" or (status == 404 and not code):
        return Misconfigured(f"{detail}: the bucket does not exist")
    if code in _SETTINGS_CODES or 300 <= status < 500:
        return Misconfigured(detail)
    return RetryLater(detail)


def classify_s3_probe(
    status: int, headers: Mapping[str, str] | None, body: bytes
) -> DeliveryResult:
    """What the answer to the probe (a listing of at most zero keys) means.

    Like a PUT, except that `AccessDenied` passes: the server recognised the credential
    and only refused the listing, which a key that may only write objects is refused too;
    the test event's PUT then tells whether it may write.
    """
    code, _ = _error_of(body)
    if status == 403 and code == "AccessDenied":
        return Delivered()
    return classify_s3_put(status, headers, body)
