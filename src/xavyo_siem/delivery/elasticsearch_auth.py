"""The credential of an Elasticsearch or OpenSearch destination: how its secret is written
and the `Authorization` header it becomes (`elasticsearch_authorization`)."""

from __future__ import annotations

import base64
import binascii

import orjson

from xavyo_siem.errors import InvalidDestination

__all__ = ["elasticsearch_authorization"]


def elasticsearch_authorization(secret: str | None) -> str | None:
    """The `Authorization` header a destination's secret stands for (None: no secret).

    * the API key's `encoded` value, as the create-API-key API and Kibana return it
      (base64 of `id:api_key`), alone or as `{"api_key": "<encoded>"}`: `ApiKey <encoded>`;
    * `{"api_key_id": "<id>", "api_key": "<api_key>"}`: the same, encoded here;
    * `{"username": "<user>", "password": "<password>"}`: `Basic` (also OpenSearch);
    * `{"bearer": "<token>"}`: `Bearer` (service account tokens, OAuth / JWT).

    InvalidDestination on `secret` says what is wrong, never quoting it.
    """
    if secret is None:
        return None
    if not isinstance(secret, str) or not secret.strip():
        raise InvalidDestination("secret", "an Elasticsearch credential must not be empty")
    text = secret.strip()
    if not text.startswith("{"):
        return "ApiKey " + _encoded_api_key(text)
    try:
        given = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidDestination("secret", "starts with '{' but is not a JSON object") from None
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        raise InvalidDestination("secret", "must be a JSON object of strings")
    keys = frozenset(given)
    if keys == {"api_key"}:
        return "ApiKey " + _encoded_api_key(given["api_key"])
    if keys == {"api_key_id", "api_key"}:
        pair = f"{_header_safe(given['api_key_id'])}:{_header_safe(given['api_key'])}"
        return "ApiKey " + base64.b64encode(pair.encode()).decode()
    if keys == {"username", "password"}:
        user, password = _header_safe(given["username"]), given["password"]
        if ":" in user:
            raise InvalidDestination("secret", "a username must not contain ':'")
        if any(ord(c) < 32 or ord(c) == 127 for c in password):
            raise InvalidDestination("secret", "the password must not contain control characters")
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if keys == {"bearer"}:
        return "Bearer " + _header_safe(given["bearer"])
    raise InvalidDestination(
        "secret",
        "must be an API key's encoded value, or a JSON object with api_key, api_key_id and"
        " api_key, username and password, or bearer",
    )


def _header_safe(value: str) -> str:
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidDestination(
            "secret", "credential parts must be non-empty, without spaces or control characters"
        )
    return value


def _encoded_api_key(value: str) -> str:
    """An API key's `encoded` form, checked: base64 of `id:api_key`."""
    value = _header_safe(value)
    try:
        pair = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        pair = ""
    key_id, colon, key = pair.partition(":")
    if not (key_id and colon and key):
        raise InvalidDestination(
            "secret",
            "an API key is given as its encoded value (base64 of id:api_key, the `encoded`"
            ' field of the create-API-key answer), or as {"api_key_id": ..., "api_key": ...}',
        )
    return value
