"""AWS Signature Version 4 for S3 requests, sans I/O: headers in, `Authorization` out.

Written here rather than taken from botocore on purpose: the transport sends its requests
with the project's one HTTP client (aiohttp, behind the SSRF guard and the shared TLS
settings), and signing one single-chunk PUT or HEAD needs about sixty lines of HMAC, while
botocore would bring a second HTTP stack's request types for it. The tests check this
against the signed examples of the Amazon S3 API reference ("Signature Calculations for the
Authorization Header: Transferring Payload in a Single Chunk") and against botocore's own
signer; the S3 server used as the tests' peer verifies every request's signature.

The steps (Amazon S3 API reference, "Authenticating Requests: AWS Signature Version 4"):

1. the canonical request: method, URI-encoded path, sorted query, the signed headers
   (lower-case names, values trimmed, one per line), their names, and the payload's SHA-256
   in hex (`x-amz-content-sha256`, always sent and signed);
2. the string to sign: `AWS4-HMAC-SHA256`, the request time, the scope
   `<yyyymmdd>/<region>/s3/aws4_request`, and the canonical request's SHA-256;
3. the signing key: HMAC-SHA256 chained over the date, region, service and `aws4_request`,
   starting from `AWS4` + the secret access key; the signature is the hex HMAC of the
   string to sign under it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Final
from urllib.parse import quote

__all__ = ["ALGORITHM", "amz_date", "authorization", "uri_encode"]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
_UNRESERVED: Final = "-._~"


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """S3's URI encoding: every byte but the unreserved characters as %XY (upper-case hex);
    `/` kept in an object key's path, encoded in a query value."""
    return quote(text, safe=_UNRESERVED + ("/" if keep_slash else ""))


def amz_date(when: datetime) -> str:
    """The request time as `x-amz-date` writes it: `20130524T000000Z` (UTC)."""
    return when.strftime("%Y%m%dT%H%M%SZ")


def _canonical_query(query: Mapping[str, str]) -> str:
    pairs = sorted(
        (uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False)) for k, v in query.items()
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def authorization(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str = "s3",
) -> str:
    """The `Authorization` header of a request whose `headers` (every one to be signed:
    `host`, `x-amz-date`, `x-amz-content-sha256`, and any other) are given as sent.

    `path` is already URI-encoded (as sent on the request line); `x-amz-date` gives the
    time and the scope's date.
    """
    signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    names = sorted(signed)
    signed_headers = ";".join(names)
    canonical = "\n".join(
        [
            method,
            path,
            _canonical_query(query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            signed_headers,
            signed["x-amz-content-sha256"],
        ]
    )
    when = signed["x-amz-date"]
    scope = f"{when[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, when, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_access_key).encode("utf-8"), when[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={access_key_id}/{scope},"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )
