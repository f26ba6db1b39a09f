"""What the Elasticsearch tests share: the contract peer's credentials, sample JSON records,
and a validated config."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from xavyo_siem.delivery.base import Record
from xavyo_siem.delivery.elasticsearch import ElasticsearchConfig
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.sample import generate_events

KEY_ID, KEY = "VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"
API_KEY = base64.b64encode(f"{KEY_ID}:{KEY}".encode()).decode()  # the `encoded` form
STREAM = "logs-xavyo.audit-default"  # the default target


def json_records(count: int, seed: int = 1) -> list[Record]:
    """`count` sample events of one tenant as JSON-format records."""
    return [
        Record.of(event, orjson.dumps(event.to_dict()).decode())
        for event in generate_events(count, 1, seed=seed)
    ]


def config(url: str, development: bool = True, **options: Any) -> ElasticsearchConfig:
    """A validated Elasticsearch config, as the API would build it."""
    result = validate_destination("elasticsearch", url, options, development=development)
    assert isinstance(result, ElasticsearchConfig)
    return result
