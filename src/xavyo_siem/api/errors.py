"""How every failed request is answered: one body shape, domain errors mapped in one place.

Every error body is `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`: `loc` names
the field (`["body", "options", "tls_verify"]`, `["path", "destination_id"]`), `msg` the
rule. The store, the pipeline and `destinations.py` raise their own errors
(`InvalidDestination`, `InvalidEvent`, ...); `siem_error` is the one place they become
HTTP. Validation errors never echo the rejected input, which may be a credential.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from xavyo_siem.crypto import CryptoError
from xavyo_siem.errors import (
    EncodeError,
    ExportJobError,
    InvalidDestination,
    InvalidEvent,
    InvalidExport,
    InvalidFilter,
    SiemError,
    StoreError,
    TenantRequired,
)

__all__ = ["ApiError", "error_body", "error_responses", "install_error_handlers"]

log = logging.getLogger("xavyo_siem.api")

# Domain "field" names that mean "the thing named in the path does not exist".
_NOT_FOUND: Final = {"destination": "destination_id"}
_STATUS_TYPES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer the API layer itself decides (401, 403, 404, 413); never raised below api/."""

    def __init__(
        self,
        status: int,
        loc: Sequence[str | int],
        msg: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.loc = list(loc)
        self.msg = msg
        self.headers = headers


def error_body(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"detail": [{"loc": list(loc), "msg": msg, "type": kind}]}


def _where(request: Request) -> str:
    return "query" if request.method in ("GET", "HEAD", "DELETE") else "body"


def _field_loc(request: Request, field: str) -> list[str | int]:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in field.split(".") if p]
    return [_where(request), *parts]


def _status_of(exc: SiemError) -> tuple[int, str]:
    if isinstance(exc, InvalidDestination) and exc.field in _NOT_FOUND:
        return 404, "not_found"
    if isinstance(exc, InvalidDestination):
        return 422, "invalid_destination"
    if isinstance(exc, InvalidEvent):
        return 422, "invalid_event"
    if isinstance(exc, InvalidFilter):
        return 422, "invalid_filter"
    if isinstance(exc, InvalidExport):
        return 422, "invalid_export"
    if isinstance(exc, EncodeError):
        return 422, "cannot_encode"
    if isinstance(exc, ExportJobError):
        return 409, "conflict"
    if isinstance(exc, TenantRequired):
        return 422, "tenant_required"
    if isinstance(exc, CryptoError | StoreError):
        return 503, "unavailable"
    return 422, "invalid"


async def siem_error(request: Request, exc: Exception) -> JSONResponse:
    """The one mapping of domain errors to HTTP: field errors 422 (404 for a missing
    resource), export conflicts 409, a missing key or store 503."""
    assert isinstance(exc, SiemError)
    status, kind = _status_of(exc)
    field = getattr(exc, "field", None)
    if status == 404 and isinstance(field, str):
        loc: list[str | int] = ["path", _NOT_FOUND[field]]
        msg = "not found"
    elif isinstance(field, str):
        loc, msg = _field_loc(request, field), str(getattr(exc, "reason", exc))
    else:
        loc, msg = [], str(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(error_body(loc, msg, kind), status_code=status)


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    """Answers decided by the API layer (authentication, roles, limits, missing resources)."""
    assert isinstance(exc, ApiError)
    return JSONResponse(
        error_body(exc.loc, exc.msg, _STATUS_TYPES.get(exc.status, "error")),
        status_code=exc.status,
        headers=exc.headers,
    )


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Schema violations, naming each field and rule, without the input (maybe a secret)."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": error.get("type", "invalid"),
        }
        for error in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


# The methods `Allow` may name: those of HTTP itself (RFC 9110 section 9, and PATCH).
_HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the app serves at the request's path, for `Allow`.

    The router answers 405 from the first route whose path matched, so its `Allow` names
    only that route's methods where several routes share a path (GET and POST of a
    collection). Each method is asked of every route instead, through `matches`, the one
    routing call every kind of route (and included router) answers.
    """
    routes = request.app.router.routes
    allowed = [
        method
        for method in _HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    ]  # fmt: skip
    return ", ".join(allowed)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (unknown path, wrong method) in the same shape; a body that
    cannot be decoded is a 422 like any other invalid JSON; a 405's `Allow` names every
    method of the path."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8 JSON)
        return JSONResponse(error_body(["body"], "is not valid JSON", "json_invalid"), 422)
    kind = _STATUS_TYPES.get(exc.status_code, "error")
    msg = exc.detail if isinstance(exc.detail, str) else kind.replace("_", " ")
    loc: list[str | int] = ["body"] if exc.status_code == 413 else []
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return JSONResponse(error_body(loc, msg, kind), status_code=exc.status_code, headers=headers)


async def store_away(request: Request, exc: Exception) -> JSONResponse:
    """The store cannot be reached (down, restarting, the network cut): 503, and the next
    request tries again (the connection pool reconnects)."""
    log.error("%s %s: store unavailable: %s", request.method, request.url.path, exc)
    return JSONResponse(
        error_body([], "the store is unavailable; try again shortly", "unavailable"),
        status_code=503,
        headers={"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on `app`."""
    app.add_exception_handler(SiemError, siem_error)
    app.add_exception_handler(OperationalError, store_away)
    app.add_exception_handler(InterfaceError, store_away)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


_DESCRIPTIONS: Final = {
    401: "No API token, or an unknown or revoked one.",
    403: "The token's role (or kind) may not do this.",
    404: "No such resource for this tenant (another tenant's resources are not found either).",
    409: "The request conflicts with the resource's state.",
    413: "The request body or batch is larger than the limit.",
    422: "The request breaks a rule; `loc` names the field and `msg` the rule.",
    429: "The token sent more requests than its budget; `Retry-After` says when to retry.",
    503: "The store or the credential key is unavailable.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error status codes, all with the `ErrorBody` schema;
    wherever a token is needed (401) its request budget may run out (429)."""
    from xavyo_siem.api.schemas import ErrorBody

    listed = (*codes, 429) if 401 in codes and 429 not in codes else codes
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in listed}
