"""The pure parts of the sentinel transport: records as array elements, the token request
and answer, the classification table, and the validated config."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest

from xavyo_siem.delivery import SentinelConfig, validate_destination
from xavyo_siem.delivery.base import Delivered, Misconfigured, RetryLater
from xavyo_siem.delivery.http import TooLarge
from xavyo_siem.delivery.sentinel_protocol import (
    BadData,
    NotAccepted,
    Token,
    array_body,
    azure_error,
    classify_ingestion,
    ingestion_item,
    read_token_reply,
    time_generated,
    token_form,
)
from xavyo_siem.delivery.tls import TlsConfig
from xavyo_siem.errors import InvalidDestination

DCE = "https://dce-1.westeurope-1.ingest.monitor.azure.com"
OPTIONS: dict[str, Any] = {
    "dcr_immutable_id": "dcr-" + "0123456789abcdef" * 2,
    "stream": "Custom-XavyoAudit_CL",
    "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "client_id": "00000000-0000-4000-8000-000000000002",
}


def config(endpoint: str = DCE, development: bool = False, **options: Any) -> SentinelConfig:
    """A validated sentinel config with the required options and `options`."""
    result = validate_destination(
        "sentinel", endpoint, {**OPTIONS, **options}, development=development
    )
    assert isinstance(result, SentinelConfig)
    return result


# --- Records -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        (1_767_619_211_123_456, "2026-01-05T13:20:11.123456Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (-62_135_596_800_000_000 + 1, "0001-01-01T00:00:00.000001Z"),
    ],
)
def test_time_generated_has_six_fraction_digits(us: int, text: str) -> None:
    """TimeGenerated is ISO 8601 UTC with exactly six fraction digits and Z, four-digit years."""
    assert time_generated(us) == text


def test_time_generated_is_put_first_in_the_object() -> None:
    """The element is the record's object with TimeGenerated first, from the event's time."""
    item = ingestion_item('{"event_id":"e1","severity":3}', 1_000_000)
    assert item == b'{"TimeGenerated":"1970-01-01T00:00:01.000000Z","event_id":"e1","severity":3}'
    assert list(orjson.loads(item)) == ["TimeGenerated", "event_id", "severity"]


def test_an_empty_object_gets_only_time_generated() -> None:
    """`{}` becomes an object with TimeGenerated alone (no stray comma)."""
    assert orjson.loads(ingestion_item("{}", 0)) == {"TimeGenerated": "1970-01-01T00:00:00.000000Z"}
    assert orjson.loads(ingestion_item("{ }", 0)) == {
        "TimeGenerated": "1970-01-01T00:00:00.000000Z"
    }


def test_a_record_with_its_own_time_generated_keeps_it() -> None:
    """A top-level TimeGenerated of the record's own is kept; one nested deeper is not it."""
    own = '{"TimeGenerated":"2020-01-01T00:00:00Z","a":1}'
    assert ingestion_item(own, 5) == own.encode()
    nested = '{"metadata":{"TimeGenerated":"x"},"note":"\\"TimeGenerated\\""}'
    value = orjson.loads(ingestion_item(nested, 0))
    assert value["TimeGenerated"] == "1970-01-01T00:00:00.000000Z"
    assert value["metadata"] == {"TimeGenerated": "x"}


@pytest.mark.parametrize(
    "text", ["CEF:0|xavyo|siem|1|login|Login|3|", "<110>1 - - - - - -", "[1,2]", '"x"', ""]
)
def test_a_text_record_is_refused(text: str) -> None:
    """Text formats (CEF, syslog) and JSON that is not an object are not array elements."""
    with pytest.raises(ValueError, match="not a JSON object"):
        ingestion_item(text, 0)


def test_a_lone_surrogate_is_refused_as_not_utf8() -> None:
    """A record that is not valid UTF-8 raises UnicodeEncodeError (rejected by the transport)."""
    with pytest.raises(UnicodeEncodeError):
        ingestion_item('{"a":"\ud800"}', 0)


def test_array_body_is_one_json_array() -> None:
    """Elements are joined into one JSON array, with nothing around them."""
    body = array_body([b'{"a":1}', b'{"b":2}'])
    assert body == b'[{"a":1},{"b":2}]'
    assert array_body([]) == b"[]"


# --- Token -------------------------------------------------------------------------------


def test_token_form_is_the_client_credentials_grant() -> None:
    """The form carries client id, secret, grant type and scope, URL-encoded (RFC 6749 §4.4)."""
    form = parse_qs(
        token_form(
            client_id="c", client_secret="s&=+ ", scope="https://monitor.azure.com/.default"
        ).decode(),
        strict_parsing=True,
    )
    assert form == {
        "client_id": ["c"],
        "client_secret": ["s&=+ "],
        "grant_type": ["client_credentials"],
        "scope": ["https://monitor.azure.com/.default"],
    }


@pytest.mark.parametrize(
    ("expires_in", "renew_at"), [(3599, 100 + 3299.0), ("3599", 100 + 3299.0), (60, 100 + 30.0)]
)
def test_a_token_is_renewed_five_minutes_before_expiry(expires_in: object, renew_at: float) -> None:
    """A token is renewed 300 s before it expires, or at half its life when shorter; a
    string `expires_in` (as Entra's v1 endpoint writes it) is read too."""
    body = orjson.dumps({"token_type": "Bearer", "expires_in": expires_in, "access_token": "t"})
    assert read_token_reply(200, body, {}, now=100.0) == Token("t", renew_at)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>sign in</html>",
        b'{"token_type":"Bearer","access_token":"t"}',
        b'{"token_type":"Bearer","expires_in":0,"access_token":"t"}',
        b'{"token_type":"Bearer","expires_in":true,"access_token":"t"}',
        b'{"token_type":"pop","expires_in":60,"access_token":"t"}',
        b'{"token_type":"Bearer","expires_in":60,"access_token":"a b"}',
        b'{"token_type":"Bearer","expires_in":60,"access_token":""}',
        b"[]",
    ],
)
def test_a_200_without_a_usable_token_is_never_a_token(body: bytes) -> None:
    """A 200 that is not a bearer token with a lifetime is RetryLater, never a token."""
    assert isinstance(read_token_reply(200, body, {}, now=0), RetryLater)


def test_refused_client_credentials_are_misconfigured_with_the_oauth_error() -> None:
    """400/401 from the token endpoint are Misconfigured, quoting `error` and its description
    but never the secret the description echoes."""
    body = orjson.dumps(
        {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided: Qx8Q~secret.",
        }
    )
    for status in (400, 401):
        result = read_token_reply(status, body, {}, now=0, secrets=("Qx8Q~secret",))
        assert isinstance(result, Misconfigured)
        assert "invalid_client: AADSTS7000215" in result.reason
        assert "Qx8Q~secret" not in result.reason


@pytest.mark.parametrize(("status", "after"), [(429, 7.0), (503, 7.0), (500, 7.0), (408, 7.0)])
def test_a_busy_token_endpoint_is_retry_later_after_retry_after(status: int, after: float) -> None:
    """429, 408 and 5xx from the token endpoint are RetryLater, honouring Retry-After."""
    result = read_token_reply(status, b"", {"Retry-After": "7"}, now=0)
    assert result == RetryLater(
        f"the token endpoint (Microsoft Entra ID) answered HTTP {status}", after
    )


# --- Ingestion answers ------------------------------------------------------------------


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (204, b"", Delivered),
        (200, b"", Delivered),
        (429, _error("TooManyRequests", "throttled"), RetryLater),
        (500, b"", RetryLater),
        (503, b"<html>busy</html>", RetryLater),
        (408, b"", RetryLater),
        (413, _error("ContentLengthLimitExceeded", "Maximum allowed: 1048576"), TooLarge),
        (401, _error("InvalidToken", "expired"), NotAccepted),
        (403, _error("OperationFailed", "does not have access"), NotAccepted),
        (400, _error("InvalidPayload", "record 3: bad value for column 'severity'"), BadData),
        (400, b"not json", BadData),
        (400, _error("InvalidStream", "Stream 'Custom-X' not found in rule"), Misconfigured),
        (400, _error("InvalidApiVersion", "unsupported api-version"), Misconfigured),
        (400, _error("InvalidContentEncoding", "gzip body could not be read"), Misconfigured),
        (
            404,
            _error("NotFound", "Data collection rule with immutable Id not found"),
            Misconfigured,
        ),
        (301, b"", Misconfigured),
        (415, b"", Misconfigured),
        (600, b"", RetryLater),
    ],
)
def test_each_ingestion_answer_is_classified(status: int, body: bytes, expected: type) -> None:
    """Each status of the Logs Ingestion API gives the result of the table in the docstring."""
    assert isinstance(classify_ingestion(status, {}, body), expected)


def test_a_throttled_answer_waits_for_retry_after() -> None:
    """429 carries Retry-After (seconds) into RetryLater.after_s, and quotes the error."""
    result = classify_ingestion(429, {"Retry-After": "12"}, _error("TooManyRequests", "slow down"))
    assert isinstance(result, RetryLater)
    assert result.after_s == 12.0
    assert "HTTP 429 (TooManyRequests: slow down)" in result.reason


def test_a_data_error_quotes_the_answer_without_secrets() -> None:
    """A 400 about the data keeps its code and message as the reason, with secrets removed."""
    result = classify_ingestion(
        400, {}, _error("InvalidPayload", "bad row near Bearer eyJabcdefghij"), secrets=("zzzz",)
    )
    assert isinstance(result, BadData)
    assert "InvalidPayload: bad row near Bearer [redacted]" in result.reason


@pytest.mark.parametrize(
    ("body", "pair"),
    [
        (_error("A", "b"), ("A", "b")),
        (b'{"error":"x"}', ("", "")),
        (b'{"error":{"code":5}}', ("", "")),
        (b"[", ("", "")),
    ],
)
def test_azure_error_reads_code_and_message(body: bytes, pair: tuple[str, str]) -> None:
    """The `{"error":{"code","message"}}` shape is read; anything else gives empty strings."""
    assert azure_error(body) == pair


# --- Config ------------------------------------------------------------------------------


def test_sentinel_defaults() -> None:
    """Without options beyond the required ones the config has its field defaults; the token
    URL, the scope and the ingestion URL are built from them."""
    got = config()
    assert got == SentinelConfig(url=DCE, **OPTIONS)
    assert (got.gzip, got.timeout_s, got.tls) == (True, 30.0, TlsConfig())
    assert got.max_requests_in_flight == 2
    assert (got.batch_max_events, got.batch_max_bytes, got.start) == (2000, 1_000_000, "now")
    assert got.token_url == (
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
    )
    assert got.scope == "https://monitor.azure.com/.default"
    assert got.ingestion_url == (
        f"{DCE}/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef"
        "/streams/Custom-XavyoAudit_CL?api-version=2023-01-01"
    )


def test_sentinel_sovereign_cloud_options() -> None:
    """A sovereign cloud sets its own authority host and audience; a trailing slash is dropped."""
    got = config(
        authority_host="https://login.microsoftonline.us/",
        audience="https://monitor.azure.us",
        tenant="contoso.onmicrosoft.us",
    )
    assert (
        got.token_url == "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/token"
    )
    assert got.scope == "https://monitor.azure.us/.default"


@pytest.mark.parametrize("name", ["dcr_immutable_id", "stream", "tenant", "client_id"])
def test_each_required_option_is_named_when_missing(name: str) -> None:
    """The rule, stream, tenant and client id are required, each refused by name."""
    options = {k: v for k, v in OPTIONS.items() if k != name}
    with pytest.raises(InvalidDestination) as caught:
        validate_destination("sentinel", DCE, options, development=False)
    assert caught.value.field == f"options.{name}"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"dcr_immutable_id": "dcr-123"}, "options.dcr_immutable_id"),
        ({"dcr_immutable_id": "my-rule"}, "options.dcr_immutable_id"),
        ({"stream": "XavyoAudit_CL"}, "options.stream"),
        ({"stream": "Custom-a/b"}, "options.stream"),
        ({"tenant": "not a tenant"}, "options.tenant"),
        ({"tenant": "../x"}, "options.tenant"),
        ({"client_id": "my-app"}, "options.client_id"),
        ({"authority_host": "http://login.microsoftonline.com"}, "options.authority_host"),
        ({"authority_host": "https://login.microsoftonline.com/tenant"}, "options.authority_host"),
        ({"authority_host": "https://user@login.example"}, "options.authority_host"),
        ({"audience": "monitor.azure.com"}, "options.audience"),
        ({"batch_max_bytes": 1_000_001}, "options.batch_max_bytes"),
        ({"gzip": "maybe"}, "options.gzip"),
        ({"timeout_s": 0}, "options.timeout_s"),
        ({"max_requests_in_flight": 9}, "options.max_requests_in_flight"),
        ({"fingerprint": "SHA256:" + "AB" * 32}, "options.fingerprint"),
        ({"server_name": "x"}, "options.server_name"),
        ({"tls_verify": False}, "options.tls_verify"),
    ],
)
def test_bad_sentinel_options_are_refused_naming_the_option(
    options: dict[str, Any], field: str
) -> None:
    """Each bad value (and each option a sentinel destination does not take) is refused,
    naming the option."""
    with pytest.raises(InvalidDestination) as caught:
        validate_destination("sentinel", DCE, {**OPTIONS, **options}, development=False)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "endpoint",
    [
        f"{DCE}/dataCollectionRules/dcr-x/streams/Custom-X",
        f"{DCE}?api-version=2023-01-01",
        "http://dce-1.westeurope-1.ingest.monitor.azure.com",
        "tcp://dce:443",
        "https://",
    ],
)
def test_an_endpoint_that_is_not_an_https_origin_is_refused(endpoint: str) -> None:
    """The endpoint is the data collection endpoint's https origin only; the rule and stream
    are options."""
    with pytest.raises(InvalidDestination) as caught:
        validate_destination("sentinel", endpoint, OPTIONS, development=False)
    assert caught.value.field == "endpoint"


def test_plain_http_and_unverified_tls_only_in_development() -> None:
    """Development mode allows http:// peers and `tls_verify=false` (local tests only)."""
    got = config(
        "http://127.0.0.1:8080",
        development=True,
        authority_host="http://127.0.0.1:8081",
        tls_verify=False,
    )
    assert got.token_url.startswith("http://127.0.0.1:8081/")
    assert got.tls.verify is False
