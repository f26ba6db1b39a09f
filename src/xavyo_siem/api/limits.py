"""Request size limits: the body (whatever the route) and the events in an ingest batch.

`BodyLimit` is plain ASGI middleware. A declared `Content-Length` over the limit is refused
before a byte is read; a body without one (chunked) is counted as it arrives and refused
as soon as it passes the limit, so an oversized request never sits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xavyo_siem.api.errors import error_body

__all__ = ["DEFAULT_LIMITS", "ApiLimits", "BodyLimit", "BodyTooLarge"]

MIB: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """How large a request may be: its body in bytes, and an ingest batch in events."""

    max_body_bytes: int = 10 * MIB
    max_batch_events: int = 10_000


DEFAULT_LIMITS: Final = ApiLimits()


def _too_large_message(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


class BodyTooLarge(HTTPException):
    """Raised into the route that reads a body once it passes the limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large_message(limit))


class BodyLimit:
    """Refuse request bodies larger than `max_body_bytes` with 413 and the usual error body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _refuse(send, limit)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


async def _refuse(send: Send, limit: int) -> None:
    body = orjson.dumps(error_body(["body"], _too_large_message(limit), "too_large"))
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
