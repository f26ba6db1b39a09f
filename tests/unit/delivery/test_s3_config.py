"""An S3 destination's settings: the endpoint, each option, its defaults, the credential's
form, and each refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from xavyo_siem.delivery import S3Config, S3Credentials, validate_destination
from xavyo_siem.errors import InvalidDestination


def s3(endpoint: str = "s3://audit-archive/xavyo", development: bool = False, **options: Any):
    config = validate_destination("s3", endpoint, options, development=development)
    assert isinstance(config, S3Config)
    return config


def refused(endpoint: str = "s3://audit-archive", development: bool = False, **options: Any):
    with pytest.raises(InvalidDestination) as caught:
        validate_destination("s3", endpoint, options, development=development)
    return caught.value


def test_defaults_write_to_aws_in_us_east_1_with_virtual_addressing() -> None:
    """Without options: AWS S3 in us-east-1, the bucket in the host name, SHA-256 checksums,
    objects of up to 10,000 events or 16 MiB, written at the latest a minute after the
    oldest event arrived."""
    config = s3()
    assert config.bucket == "audit-archive"
    assert config.prefix == "xavyo"
    assert config.base_url == "https://audit-archive.s3.us-east-1.amazonaws.com"
    assert (config.region, config.addressing, config.checksum) == ("us-east-1", "auto", "sha256")
    assert (config.batch_max_events, config.batch_max_bytes) == (10_000, 16 << 20)
    assert config.object_max_age_s == 60.0
    assert config.start == "now"
    assert config.tls.verify


def test_every_option_is_read() -> None:
    """Each option lands in its field."""
    config = s3(
        "s3://audit-archive/a/b/",
        region="eu-west-1",
        addressing="path",
        checksum="md5",
        object_max_age_s="300",
        timeout_s=5,
        batch_max_events="500",
        batch_max_bytes=1 << 20,
        start="beginning",
    )
    assert config.base_url == "https://s3.eu-west-1.amazonaws.com/audit-archive"
    assert config.prefix == "a/b"
    assert (config.checksum, config.object_max_age_s, config.timeout_s) == ("md5", 300.0, 5.0)
    assert (config.batch_max_events, config.batch_max_bytes) == (500, 1 << 20)
    assert config.start == "beginning"


def test_an_endpoint_url_names_an_s3_compatible_server_with_path_addressing() -> None:
    """`endpoint_url` defaults to path addressing; virtual puts the bucket into its host."""
    config = s3("s3://audit-archive", endpoint_url="https://minio.example:9000/")
    assert config.base_url == "https://minio.example:9000/audit-archive"
    assert config.prefix == ""
    virtual = s3("s3://audit-archive", endpoint_url="https://minio.example", addressing="virtual")
    assert virtual.base_url == "https://audit-archive.minio.example"


def test_plain_http_is_for_development_only() -> None:
    """http:// as `endpoint_url` is refused in production, naming the option."""
    error = refused(endpoint_url="http://127.0.0.1:9000")
    assert error.field == "options.endpoint_url"
    assert "development" in error.reason
    assert s3(endpoint_url="http://127.0.0.1:9000", development=True).base_url.startswith("http:")


@pytest.mark.parametrize(
    "url", ["ftp://minio:21", "https://user:pw@minio", "https://minio/path", "https://minio/?a=1"]
)
def test_an_endpoint_url_that_is_no_server_origin_is_refused(url: str) -> None:
    """A scheme other than https, credentials, a path or a query are refused by name."""
    assert refused(endpoint_url=url).field == "options.endpoint_url"


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://audit-archive/x",
        "s3://Audit-Archive/x",
        "s3://ab/x",
        "s3://" + "a" * 64,
        "s3://-archive",
        "s3://archive-",
        "s3://127.0.0.1/x",
        "s3://audit..archive",
        "s3://audit-archive:9000/x",
        "s3://audit-archive/x?y",
        "s3://audit-archive/a//b",
        "s3://audit-archive/a/../b",
        "s3://audit-archive/a b",
        "s3://audit-archive/ü",
        "s3://user@audit-archive/x",
    ],
)
def test_a_bad_bucket_or_prefix_is_refused_naming_the_endpoint(endpoint: str) -> None:
    """Bucket names follow S3's rules; prefixes hold safe key characters only."""
    error = refused(endpoint)
    assert error.field == "endpoint"


def test_a_dotted_bucket_over_https_needs_path_addressing() -> None:
    """`a.b` as a host name would not match S3's certificate: path addressing is asked for."""
    error = refused("s3://audit.archive")
    assert error.field == "endpoint"
    assert "addressing=path" in error.reason
    assert s3("s3://audit.archive", addressing="path").base_url.endswith("/audit.archive")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("region", "EU West"),
        ("region", ""),
        ("addressing", "host"),
        ("checksum", "crc32"),
        ("object_max_age_s", -1),
        ("object_max_age_s", 86_401),
        ("timeout_s", 0),
        ("batch_max_events", 0),
        ("batch_max_bytes", 100),
        ("tls_verify", False),
        ("bucket", "other"),
    ],
)
def test_a_bad_option_is_refused_naming_it(option: str, value: object) -> None:
    """Each option's rule, and an unknown option, name `options.<name>`."""
    assert refused(**{option: value}).field == f"options.{option}"


def test_the_credential_is_a_json_access_key() -> None:
    """The secret holds the key id, its secret and, for temporary credentials, a token."""
    key = S3Credentials.from_secret('{"access_key_id": "AKIA1", "secret_access_key": "s3cr3t"}')
    assert key == S3Credentials("AKIA1", "s3cr3t", None)
    temporary = S3Credentials.from_secret(
        '{"access_key_id": "ASIA1", "secret_access_key": "s3cr3t", "session_token": "tok-1"}'
    )
    assert temporary.session_token == "tok-1"


@pytest.mark.parametrize(
    "secret",
    [
        None,
        "",
        "AKIA1:s3cr3t-value",
        "[]",
        '{"access_key_id": "AKIA1"}',
        '{"access_key_id": "AKIA1", "secret_access_key": "s3cr3t value"}',
        '{"access_key_id": "AKIA1", "secret_access_key": "s3cr3t-value", "extra": 1}',
        '{"access_key_id": 5, "secret_access_key": "s3cr3t-value"}',
    ],
)
def test_a_malformed_credential_is_refused_without_quoting_it(secret: str | None) -> None:
    """A secret of another form names `secret` and never repeats the secret's text."""
    with pytest.raises(InvalidDestination) as caught:
        S3Credentials.from_secret(secret)
    assert caught.value.field == "secret"
    assert "s3cr3t" not in str(caught.value)
