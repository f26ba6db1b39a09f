"""An Elasticsearch destination's options and credential forms: defaults, every option, and
each refusal naming its field."""

from __future__ import annotations

import base64

import pytest

from xavyo_siem.delivery.elasticsearch import ElasticsearchConfig
from xavyo_siem.delivery.elasticsearch_auth import elasticsearch_authorization
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.tls import TlsConfig
from xavyo_siem.errors import InvalidDestination

ENCODED = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()


def config(endpoint: str = "https://es.example:9200", **options: object) -> ElasticsearchConfig:
    """A validated config, in production mode."""
    result = validate_destination("elasticsearch", endpoint, options, development=False)
    assert isinstance(result, ElasticsearchConfig)
    return result


def refused(endpoint: str = "https://es.example:9200", **options: object) -> InvalidDestination:
    """The error validation raises."""
    with pytest.raises(InvalidDestination) as raised:
        validate_destination("elasticsearch", endpoint, options, development=False)
    return raised.value


def test_defaults() -> None:
    """Without options: the data stream `logs-xavyo.audit-default`, create, gzip, 1,000
    events or 5 MiB per request, 30 s per request, TLS verified."""
    assert config() == ElasticsearchConfig(url="https://es.example:9200")
    default = config()
    assert (default.index, default.op_type, default.gzip) == (
        "logs-xavyo.audit-default",
        "create",
        True,
    )
    assert (default.batch_max_events, default.batch_max_bytes) == (1000, 5 << 20)
    assert default.pipeline is None
    assert default.require_data_stream is False
    assert default.tls == TlsConfig()


def test_every_option() -> None:
    """Each option lands in its field; strings from the command line are read."""
    given = config(
        "https://es.example:9200/proxy/",
        index="audit-2026",
        op_type="index",
        pipeline="xavyo@custom",
        gzip="false",
        timeout_s="5",
        batch_max_events="200",
        batch_max_bytes=1 << 20,
        start="beginning",
        server_name="es.internal",
        max_requests_in_flight="4",
    )
    assert (given.url, given.index, given.op_type) == (
        "https://es.example:9200/proxy/",
        "audit-2026",
        "index",
    )
    assert (given.pipeline, given.gzip, given.timeout_s) == ("xavyo@custom", False, 5.0)
    assert (given.batch_max_events, given.batch_max_bytes, given.start) == (
        200,
        1 << 20,
        "beginning",
    )
    assert given.tls.server_name == "es.internal"
    assert given.max_requests_in_flight == 4
    assert config(require_data_stream="true", pipeline="_none").require_data_stream


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"index": "Audit"}, "options.index"),
        ({"index": "_audit"}, "options.index"),
        ({"index": "-audit"}, "options.index"),
        ({"index": ".security"}, "options.index"),
        ({"index": "a/b"}, "options.index"),
        ({"index": "a b"}, "options.index"),
        ({"index": "a*"}, "options.index"),
        ({"index": "<logs-{now/d}>"}, "options.index"),
        ({"index": "a" * 256}, "options.index"),
        ({"index": ""}, "options.index"),
        ({"index": 5}, "options.index"),
        ({"op_type": "update"}, "options.op_type"),
        ({"op_type": "index", "require_data_stream": True}, "options.op_type"),
        ({"pipeline": "a b"}, "options.pipeline"),
        ({"pipeline": "../x"}, "options.pipeline"),
        ({"gzip": "maybe"}, "options.gzip"),
        ({"timeout_s": 0}, "options.timeout_s"),
        ({"max_requests_in_flight": 0}, "options.max_requests_in_flight"),
        ({"max_requests_in_flight": 9}, "options.max_requests_in_flight"),
        ({"require_data_stream": "perhaps"}, "options.require_data_stream"),
        ({"body": "ndjson"}, "options.body"),
        ({"tls_verify": False}, "options.tls_verify"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, object], field: str) -> None:
    """Each bad option is refused with its own field."""
    assert refused(**options).field == field


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://es.example:9200",
        "tcp://es.example:9200",
        "https://es.example:9200/logs/_bulk",
        "https://es.example:9200/?pretty",
        "https://user:pw@es.example:9200",
    ],
)
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    """Plain http (outside development), another scheme, a `_bulk` URL, a query and
    credentials in the URL are refused, naming `endpoint`."""
    assert refused(endpoint).field == "endpoint"


def test_plain_http_only_in_development() -> None:
    """http:// is accepted in development mode."""
    accepted = validate_destination("elasticsearch", "http://127.0.0.1:9200", {}, development=True)
    assert isinstance(accepted, ElasticsearchConfig)


@pytest.mark.parametrize(
    ("secret", "header"),
    [
        (None, None),
        (ENCODED, f"ApiKey {ENCODED}"),
        (f" {ENCODED}\n", f"ApiKey {ENCODED}"),
        (f'{{"api_key": "{ENCODED}"}}', f"ApiKey {ENCODED}"),
        (
            '{"api_key_id": "VuaCfGcBCdbkQm-e5aOx", "api_key": "ui2lp2axTNmsyakw9tvNnw"}',
            f"ApiKey {ENCODED}",
        ),
        (
            '{"username": "xavyo", "password": "p:ss word"}',
            "Basic " + base64.b64encode(b"xavyo:p:ss word").decode(),
        ),
        ('{"bearer": "AAEAAWVsYXN0aWM"}', "Bearer AAEAAWVsYXN0aWM"),
    ],
)
def test_credential_forms(secret: str | None, header: str | None) -> None:
    """Each documented way of writing the secret becomes its Authorization header."""
    assert elasticsearch_authorization(secret) == header


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "not base64!",
        base64.b64encode(b"no-colon").decode(),
        base64.b64encode(b":key").decode(),
        "{",
        "[]",
        '{"api_key": 5}',
        '{"username": "a:b", "password": "x"}',
        '{"username": "a", "password": "x\\ny"}',
        '{"bearer": "two words"}',
        '{"token": "x"}',
        '{"api_key_id": "", "api_key": "k"}',
    ],
)
def test_malformed_credentials_are_refused_without_quoting_them(secret: str) -> None:
    """A secret of no known form is refused on `secret`, and the message never quotes it."""
    with pytest.raises(InvalidDestination) as raised:
        elasticsearch_authorization(secret)
    assert raised.value.field == "secret"
    if len(secret) > 3:
        assert secret not in str(raised.value)
