"""A webhook receiver written for tests: verifies Standard Webhooks 1.0 signatures.

`WebhookReceiver` is an aiohttp server on a free loopback port (HTTP, or HTTPS with a
certificate from `peers.hec_server.make_tls`). For each POST it checks, in order:

1. authentication, when configured (bearer, basic or one custom header) → 401;
2. the three headers `webhook-id`, `webhook-timestamp` (integer seconds within
   `tolerance_s` of now, both directions) and `webhook-signature` (space-separated
   `v1,<base64>`; accepted when any one matches any of the receiver's `secrets`, compared
   in constant time over the raw body) → 400 when missing or malformed, 401 when no
   signature matches or the timestamp is outside the window;
3. the body: over `max_body_bytes` → 413; a JSON array, or NDJSON (by Content-Type) of
   JSON values → 400 if it does not parse;
4. de-duplication on `webhook-id`: an id already accepted is answered 200 and counted in
   `duplicates`, never stored twice.

Otherwise it answers the next scripted status from `script` (default 200). A scripted 2xx
stores the message in `messages`; any other status stores nothing. Refused requests are
listed in `refusals` with the reason.

Knobs for faults: `script` entries may be an int or `(status, headers)`; `drop` closes the
next N connections without answering; `slow_s` delays every answer; `echo_headers` makes
every refusal and scripted failure quote the request's headers (a leaky receiver).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from peers.hec_server import TlsFiles

__all__ = ["WebhookMessage", "WebhookReceiver", "key_of", "verify_signature"]


def key_of(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (prefix optional, padding optional)."""
    text = secret.removeprefix("whsec_")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def verify_signature(
    secrets: Sequence[str], msg_id: str, timestamp: str, body: bytes, header: str
) -> bool:
    """True when one `v1` signature in `header` is the HMAC of `{id}.{ts}.{body}` under one
    of `secrets`; other versions are ignored, comparisons run in constant time."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = [hmac.digest(key_of(s), signed, hashlib.sha256) for s in secrets]
    for item in header.split(" "):
        version, _, value = item.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        for candidate in expected:
            if hmac.compare_digest(candidate, given):
                return True
    return False


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """One verified, accepted message."""

    msg_id: str
    timestamp: int
    content_type: str
    events: list[Any]
    headers: dict[str, str]


@dataclass
class WebhookReceiver:
    """A verifying Standard Webhooks receiver; see the module docstring."""

    secrets: Sequence[str] = ()
    tolerance_s: float = 300.0
    bearer: str | None = None
    basic: tuple[str, str] | None = None
    auth_header: tuple[str, str] | None = None
    max_body_bytes: int = 10_000_000
    tls: TlsFiles | None = None
    clock: Callable[[], float] = time.time
    script: deque[int | tuple[int, dict[str, str]]] = field(default_factory=deque)
    drop: int = 0
    slow_s: float = 0.0
    echo_headers: bool = False
    messages: list[WebhookMessage] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # webhook-id of every POST
    duplicates: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The URL to post to (with a path and a query, as real endpoints have)."""
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}/hooks/siem?source=xavyo"

    def events(self) -> list[Any]:
        """Every event of every accepted message, in order."""
        return [event for message in self.messages for event in message.events]

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=self.max_body_bytes * 2 + 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        context = self.tls.server_context() if self.tls else None
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _refuse(self, status: int, reason: str, request: web.Request | None = None) -> web.Response:
        self.refusals.append(reason)
        answer: dict[str, Any] = {"error": reason}
        if self.echo_headers and request is not None:
            answer["request_headers"] = dict(request.headers)
        return web.json_response(answer, status=status)

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        if self.bearer is not None:
            return hmac.compare_digest(given, f"Bearer {self.bearer}")
        if self.basic is not None:
            token = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return hmac.compare_digest(given, f"Basic {token}")
        if self.auth_header is not None:
            name, value = self.auth_header
            return hmac.compare_digest(request.headers.get(name, ""), value)
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.drop:
            self.drop -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=204)
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": "POST, OPTIONS"})
        if request.method != "POST":
            return self._refuse(405, "method not allowed")
        if not self._authorized(request):
            return self._refuse(401, "authentication failed", request)
        msg_id = request.headers.get("webhook-id")
        stamp = request.headers.get("webhook-timestamp")
        signature = request.headers.get("webhook-signature")
        self.attempts.append(msg_id or "")
        if not msg_id or not stamp or (self.secrets and not signature):
            return self._refuse(400, "missing webhook headers")
        if "." in msg_id or not stamp.isdigit():
            return self._refuse(400, "malformed webhook-id or webhook-timestamp")
        if abs(self.clock() - int(stamp)) > self.tolerance_s:
            return self._refuse(401, "timestamp outside the tolerance")
        if (request.content_length or 0) > self.max_body_bytes:
            return self._refuse(413, "payload too large")
        body = await request.read()
        if len(body) > self.max_body_bytes:
            return self._refuse(413, "payload too large")
        if self.secrets and not verify_signature(
            self.secrets, msg_id, stamp, body, signature or ""
        ):
            return self._refuse(401, "no matching signature")
        content_type = request.headers.get("Content-Type", "")
        try:
            if content_type.startswith("application/x-ndjson"):
                if not body.endswith(b"\n"):
                    raise ValueError("NDJSON must end with a newline")
                events = [json.loads(line) for line in body.split(b"\n")[:-1]]
            else:
                events = json.loads(body)
                if not isinstance(events, list):
                    raise ValueError("not a JSON array")
        except ValueError as exc:
            return self._refuse(400, f"body does not parse: {exc}"[:200])
        if any(m.msg_id == msg_id for m in self.messages):
            self.duplicates += 1
            return web.Response(status=200, text="duplicate")
        status: int = 200
        headers: dict[str, str] = {}
        if self.script:
            entry = self.script.popleft()
            status, headers = (entry, {}) if isinstance(entry, int) else entry
        if not 200 <= status < 300:
            text = f"scripted {status}"
            if self.echo_headers:
                text += "\n" + "\n".join(f"{k}: {v}" for k, v in request.headers.items())
            return web.Response(status=status, headers=headers, text=text)
        self.messages.append(
            WebhookMessage(msg_id, int(stamp), content_type, events, dict(request.headers))
        )
        return web.Response(status=status, headers=headers, text="ok")
