"""AWS Signature Version 4 for S3: the signed examples of the Amazon S3 API reference, and
agreement with botocore's signer."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from xavyo_siem.delivery.s3_signing import amz_date, authorization, uri_encode

# The example key of the Amazon S3 API reference ("Signature Calculations for the
# Authorization Header: Transferring Payload in a Single Chunk").
AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "examplebucket.s3.amazonaws.com"
DATE = "20130524T000000Z"
EMPTY = hashlib.sha256(b"").hexdigest()
SCOPE = f"Credential={AKID}/20130524/us-east-1/s3/aws4_request"


def _sign(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> str:
    return authorization(
        method=method,
        path=path,
        query=query,
        headers={"Host": HOST, "x-amz-date": DATE, **headers},
        access_key_id=AKID,
        secret_access_key=SECRET,
        region="us-east-1",
    )


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "signed", "signature"),
    [
        ("GET", "/test.txt", {}, {"Range": "bytes=0-9", "x-amz-content-sha256": EMPTY},
         "host;range;x-amz-content-sha256;x-amz-date",
         "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
        ("PUT", uri_encode("/test$file.text", keep_slash=True), {},
         {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY",
          "x-amz-content-sha256": hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()},
         "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
         "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
        ("GET", "/", {"lifecycle": ""}, {"x-amz-content-sha256": EMPTY},
         "host;x-amz-content-sha256;x-amz-date",
         "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        ("GET", "/", {"max-keys": "2", "prefix": "J"}, {"x-amz-content-sha256": EMPTY},
         "host;x-amz-content-sha256;x-amz-date",
         "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ],
)  # fmt: skip
def test_the_s3_reference_examples_sign_as_published(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    signed: str,
    signature: str,
) -> None:
    """GET object, PUT object, GET lifecycle and list objects give the published headers."""
    expected = f"AWS4-HMAC-SHA256 {SCOPE},SignedHeaders={signed},Signature={signature}"
    assert _sign(method, path, query, headers) == expected


def test_the_put_example_path_is_encoded_as_published() -> None:
    """`$` in a key is sent as %24, `/` kept; `=` (Hive partitions) as %3D."""
    assert uri_encode("/test$file.text", keep_slash=True) == "/test%24file.text"
    assert uri_encode("a/year=2026/ü x", keep_slash=True) == "a/year%3D2026/%C3%BC%20x"
    assert uri_encode("a/b", keep_slash=False) == "a%2Fb"


_KEY_TEXT = st.text(
    alphabet=st.sampled_from("abcXYZ019-_.~=/!*'() ü€"), min_size=1, max_size=40
).filter(lambda key: "//" not in key and not key.startswith("/"))


@settings(max_examples=60, deadline=None)
@given(key=_KEY_TEXT, body=st.binary(max_size=64), token=st.none() | st.just("FwoGZX-token"))
def test_a_put_signs_as_botocore_signs_it(key: str, body: bytes, token: str | None) -> None:
    """For any key, body and session token, the signature equals botocore's S3SigV4Auth."""
    digest = hashlib.sha256(body).hexdigest()
    path = "/bucket/" + uri_encode(key, keep_slash=True)
    headers = {
        "host": "127.0.0.1:9000",
        "x-amz-date": DATE,
        "x-amz-content-sha256": digest,
        "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
    }
    if token:
        headers["x-amz-security-token"] = token
    ours = authorization(
        method="PUT",
        path=path,
        query={},
        headers=headers,
        access_key_id=AKID,
        secret_access_key=SECRET,
        region="eu-west-1",
    )
    request = AWSRequest(method="PUT", url=f"http://127.0.0.1:9000{path}", data=body)
    for name, value in headers.items():
        if name != "host":
            request.headers[name] = value
    request.context["timestamp"] = DATE
    signer = S3SigV4Auth(Credentials(AKID, SECRET, token), "s3", "eu-west-1")
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    theirs = signer.signature(string_to_sign, request)
    assert ours.endswith(f"Signature={theirs}")


def test_amz_date_is_the_basic_iso_form_in_utc() -> None:
    """The request time is written yyyymmddThhmmssZ."""
    assert amz_date(datetime(2013, 5, 24, 0, 0, 0, tzinfo=UTC)) == DATE
