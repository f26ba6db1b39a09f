"""Contract peers of Microsoft Entra ID (client-credentials tokens) and of the Azure Monitor
Logs Ingestion API, written from Microsoft's public documentation, for tests.

Azure cannot run here, so these servers play what the documentation says the services do;
the official client (`azure-monitor-ingestion`, with `azure-identity`) is run against them
too, and the tests compare its requests with the exporter's.

`AzurePeer` serves, over HTTPS with a trustme certificate (`make_tls`) or plain HTTP:

* the token endpoint `POST /{tenant}/oauth2/v2.0/token` (on its own port: another origin,
  as login.microsoftonline.com is), checking in order: the tenant (400 `invalid_request`
  AADSTS90002), `grant_type=client_credentials` (400 `unsupported_grant_type`), the client
  id (400 `unauthorized_client` AADSTS700016), the secret (401 `invalid_client`
  AADSTS7000215), the scope `https://monitor.azure.com/.default` or its double-slash form
  (400 `invalid_scope`); it issues `{"token_type":"Bearer","expires_in":N,
  "ext_expires_in":N,"access_token":…}`. `GET /{tenant}/v2.0/.well-known/openid-configuration`
  answers the metadata MSAL reads first;
* the ingestion endpoint `POST /dataCollectionRules/{id}/streams/{stream}?api-version=…`,
  checking in order: the path and method (404, 405), the API version (400
  `InvalidApiVersion`), the bearer token (401 `InvalidToken`; expired tokens too), the rule
  (404 `NotFound`), the app's role (403 `OperationFailed`), the stream (400
  `InvalidStream`), `Content-Type: application/json` (400 `InvalidContentType`), the body
  size on the wire and, with `limit_uncompressed` (the documentation's reading: "both
  compressed and uncompressed"), after gzip (413 `ContentLengthLimitExceeded`, 1,048,576
  bytes), the
  gzip (400 `InvalidContentEncoding`), the body being a JSON array of objects (400
  `InvalidPayload`); success is 204 with no body.

`AzureFaults` holds the misbehaviour knobs; each counter is consumed by the next requests.
Everything is recorded for assertions: `received` (accepted records, in order),
`requests` (each ingestion request: path, query, headers, records) and `token_requests`.
Run `python -m peers.azure_peer --help` for a standalone server (benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import secrets
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from peers.hec_server import TlsFiles, make_tls

__all__ = ["AzureFaults", "AzurePeer", "IngestionRequest", "TlsFiles", "make_tls"]

MAX_BODY_BYTES = 1_048_576
SCOPES = ("https://monitor.azure.com/.default", "https://monitor.azure.com//.default")
API_VERSIONS = ("2023-01-01", "2021-11-01-preview")
_STREAM_PATH = re.compile(r"/dataCollectionRules/(?P<dcr>[^/]+)/streams/(?P<stream>[^/]+)")
_TOKEN_PATH = re.compile(r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token")
_METADATA_PATH = re.compile(r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration")


@dataclass
class AzureFaults:
    """Misbehaviour on demand. Counters apply to the next requests, one each."""

    token_busy: int = 0  # token endpoint: 503 with Retry-After
    token_garbage: int = 0  # token endpoint: 200 with an HTML page
    throttle: int = 0  # ingestion: 429 with Retry-After
    retry_after: str = "1"  # sent with `throttle`, `server_error` and `token_busy`
    server_error: int = 0  # ingestion: 503 with Retry-After
    server_error_after: int = 0  # with `server_error`: accept this many requests first
    garbage: int = 0  # ingestion: 502 with an HTML page (a proxy in front)
    drop: int = 0  # ingestion: close the connection without answering
    forbid: int = 0  # ingestion: 403 OperationFailed (the role not yet propagated)
    bad_event_ids: set[str] = field(default_factory=set)  # 400 InvalidPayload when present
    max_records_per_request: int | None = None  # 413 above this many records
    echo: bool = False  # refusals quote the request (headers, form), as a leaky proxy does


@dataclass(frozen=True, slots=True)
class IngestionRequest:
    """One ingestion request as the peer saw it (body gunzipped and parsed) and answered it."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    wire_bytes: int
    records: list[Any] | None
    status: int


class _Refusal(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def _azure_error(status: int, code: str, message: str, **headers: str) -> _Refusal:
    return _Refusal(status, {"error": {"code": code, "message": message}}, headers or None)


def _oauth_error(status: int, error: str, description: str) -> _Refusal:
    return _Refusal(status, {"error": error, "error_description": description})


class AzurePeer:
    """A token endpoint and a Logs Ingestion endpoint on two free loopback ports."""

    def __init__(
        self,
        *,
        tenant: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
        client_id: str = "00000000-0000-4000-8000-000000000002",
        client_secret: str = "Qx8Q~client.secret-of-the_app~0123456789",
        dcr_immutable_id: str = "dcr-00112233445566778899aabbccddeeff",
        stream: str = "Custom-XavyoAudit_CL",
        token_lifetime_s: int = 3599,
        limit_uncompressed: bool = True,
        tls: TlsFiles | None = None,
        record: bool = True,
        faults: AzureFaults | None = None,
    ) -> None:
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.dcr_immutable_id, self.stream = dcr_immutable_id, stream
        self.token_lifetime_s = token_lifetime_s
        self.limit_uncompressed = limit_uncompressed
        self.tls = tls
        self.record = record
        self.faults = faults or AzureFaults()
        self.received: list[dict[str, Any]] = []
        self.requests: list[IngestionRequest] = []
        self.token_requests: list[dict[str, str]] = []
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.monotonic)
        self.event_count = 0
        self.event_ids: set[str] = set()
        self._runners: dict[str, web.AppRunner] = {}
        self.token_port = 0
        self.ingest_port = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def authority_host(self) -> str:
        """The `authority_host` a destination is configured with."""
        return self._origin(self.token_port)

    @property
    def endpoint(self) -> str:
        """The data collection endpoint a destination is configured with."""
        return self._origin(self.ingest_port)

    def _origin(self, port: int) -> str:
        return f"https://localhost:{port}" if self.tls else f"http://127.0.0.1:{port}"

    def options(self, **extra: Any) -> dict[str, Any]:
        """A sentinel destination's options for this peer (and its CA, over TLS)."""
        options: dict[str, Any] = {
            "dcr_immutable_id": self.dcr_immutable_id,
            "stream": self.stream,
            "tenant": self.tenant,
            "client_id": self.client_id,
            "authority_host": self.authority_host,
        }
        if self.tls:
            options["ca_file"] = str(self.tls.ca_file)
        return {**options, **extra}

    async def _serve(self, name: str, handler: Any, port: int) -> int:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, auto_decompress=False)
        await runner.setup()
        context = self.tls.server_context() if self.tls else None
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        self._runners[name] = runner
        return int(runner.addresses[0][1])

    async def start(self, token_port: int = 0, ingest_port: int = 0) -> None:
        """Listen on two loopback ports (0: free ones)."""
        self.token_port = await self._serve("token", self._token_dispatch, token_port)
        self.ingest_port = await self._serve("ingest", self._ingest_dispatch, ingest_port)

    async def stop_token_endpoint(self) -> None:
        """Stop the token endpoint only: it is down (connections refused), its port known."""
        runner = self._runners.pop("token", None)
        if runner is not None:
            await runner.cleanup()

    async def start_token_endpoint(self) -> None:
        """Serve the token endpoint again, on its port."""
        await self._serve("token", self._token_dispatch, self.token_port)

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        for runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> AzurePeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def expire_tokens(self) -> None:
        """Every issued token expires now (a token expired mid-stream)."""
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    # -- token endpoint ------------------------------------------------------------------

    @staticmethod
    def _answer(refusal: _Refusal) -> web.Response:
        return web.json_response(refusal.body, status=refusal.status, headers=refusal.headers)

    async def _token_dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            metadata = _METADATA_PATH.fullmatch(request.path)
            if metadata and request.method == "GET":
                return self._metadata(request, metadata["tenant"])
            found = _TOKEN_PATH.fullmatch(request.path)
            if not found:
                raise _oauth_error(404, "invalid_request", "AADSTS900561: unknown endpoint")
            if request.method != "POST":
                raise _oauth_error(405, "invalid_request", "AADSTS900561: POST expected")
            return await self._token(request, found["tenant"])
        except _Refusal as refusal:
            return self._answer(refusal)

    def _metadata(self, request: web.Request, tenant: str) -> web.Response:
        base = f"{self.authority_host}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            }
        )

    async def _token(self, request: web.Request, tenant: str) -> web.Response:
        faults = self.faults
        if faults.token_busy:
            faults.token_busy -= 1
            raise _Refusal(
                503,
                {"error": "temporarily_unavailable", "error_description": "AADSTS50196"},
                {"Retry-After": faults.retry_after},
            )
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.token_requests.append(form)
        if faults.token_garbage:
            faults.token_garbage -= 1
            return web.Response(status=200, text="<html>Sign in</html>", content_type="text/html")
        if tenant != self.tenant:
            raise _oauth_error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            raise _oauth_error(400, "unsupported_grant_type", "AADSTS70003: unsupported grant")
        if form.get("client_id") != self.client_id:
            raise _oauth_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not"
                " found in the directory.",
            )
        if form.get("client_secret") != self.client_secret:
            echoed = f" Request: {form}" if faults.echo else ""
            raise _oauth_error(
                401, "invalid_client", f"AADSTS7000215: Invalid client secret provided.{echoed}"
            )
        if form.get("scope") not in SCOPES:
            raise _oauth_error(
                400,
                "invalid_scope",
                f"AADSTS1002012: The provided value for scope {form.get('scope')} is not valid.",
            )
        token = "eyJ0eXAi." + secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_lifetime_s
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime_s,
                "ext_expires_in": self.token_lifetime_s,
                "access_token": token,
            }
        )

    # -- ingestion endpoint --------------------------------------------------------------

    async def _ingest_dispatch(self, request: web.Request) -> web.StreamResponse:
        status = 0
        raw = b""
        records: list[Any] | None = None
        try:
            found = _STREAM_PATH.fullmatch(request.path)
            if not found:
                raise _azure_error(404, "NotFound", "The requested resource was not found.")
            if request.method != "POST":
                raise _azure_error(405, "MethodNotAllowed", "POST is expected.")
            faults = self.faults
            if faults.drop:
                faults.drop -= 1
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=204)
            raw = await request.read()
            records = await self._ingest(request, found["dcr"], found["stream"], raw)
            status = 204
            return web.Response(status=204)
        except _Refusal as refusal:
            status = refusal.status
            return self._answer(refusal)
        finally:
            if self.record and status:
                self.requests.append(
                    IngestionRequest(
                        request.path,
                        dict(request.query),
                        dict(request.headers),
                        len(raw),
                        records,
                        status,
                    )
                )

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            raise _azure_error(401, "InvalidAuthenticationToken", "A bearer token is required.")
        expiry = self.tokens.get(token)
        if expiry is None:
            raise _azure_error(401, "InvalidToken", "The token is not valid.")
        if time.monotonic() >= expiry:
            raise _azure_error(401, "ExpiredAuthenticationToken", "The token has expired.")

    async def _ingest(
        self, request: web.Request, dcr: str, stream: str, raw: bytes
    ) -> list[Any] | None:
        faults = self.faults
        if request.query.get("api-version") not in API_VERSIONS:
            raise _azure_error(400, "InvalidApiVersion", "The api-version is missing or invalid.")
        self._authenticate(request)
        if dcr != self.dcr_immutable_id:
            raise _azure_error(
                404, "NotFound", f"Data collection rule with immutable Id '{dcr}' not found."
            )
        if faults.forbid:
            faults.forbid -= 1
            echoed = f" Request: {dict(request.headers)}" if faults.echo else ""
            raise _azure_error(
                403,
                "OperationFailed",
                "The authentication token provided does not have access to ingest data for"
                f" the data collection rule with immutable Id '{dcr}'.{echoed}",
            )
        if stream != self.stream:
            raise _azure_error(
                400, "InvalidStream", f"Stream '{stream}' is not declared in the rule."
            )
        if faults.throttle:
            faults.throttle -= 1
            raise _azure_error(
                429,
                "TooManyRequests",
                "Rate limit exceeded.",
                **{"Retry-After": faults.retry_after},
            )
        if faults.server_error and faults.server_error_after:
            faults.server_error_after -= 1
        elif faults.server_error:
            faults.server_error -= 1
            raise _azure_error(
                503, "ServiceUnavailable", "Try again later.", **{"Retry-After": faults.retry_after}
            )
        if faults.garbage:
            faults.garbage -= 1
            raise _Refusal(502, {"html": "<html>Bad Gateway</html>"})
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            raise _azure_error(400, "InvalidContentType", "Content-Type must be application/json.")
        too_large = _azure_error(
            413,
            "ContentLengthLimitExceeded",
            f"Maximum allowed content length: {MAX_BODY_BYTES} bytes (1 MB).",
        )
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                inflater = zlib.decompressobj(wbits=31)
                raw = inflater.decompress(raw, 64 * MAX_BODY_BYTES)
                if not inflater.eof:
                    raise zlib.error
            except zlib.error:
                raise _azure_error(
                    400, "InvalidContentEncoding", "The gzip body could not be read."
                ) from None
        if len(raw) > MAX_BODY_BYTES and self.limit_uncompressed:
            raise too_large
        try:
            records = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _azure_error(400, "InvalidPayload", "The body is not valid JSON.") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise _azure_error(400, "InvalidPayload", "The body must be an array of objects.")
        if faults.max_records_per_request is not None and len(records) > (
            faults.max_records_per_request
        ):
            raise too_large
        bad = [r.get("event_id") for r in records if r.get("event_id") in faults.bad_event_ids]
        if bad:
            raise _azure_error(
                400, "InvalidPayload", f"Record with event_id {bad[0]} does not match the schema."
            )
        self.event_count += len(records)
        if self.record:
            self.received.extend(records)
        else:
            self.event_ids.update(str(r.get("event_id")) for r in records)
        return records if self.record else None


async def _serve(args: argparse.Namespace) -> None:
    tls = None
    if args.tls_dir:
        directory = Path(args.tls_dir)
        directory.mkdir(parents=True, exist_ok=True)
        tls = make_tls(directory)
    peer = AzurePeer(tls=tls, record=False, limit_uncompressed=not args.wire_limit_only)
    await peer.start()
    print(
        json.dumps(
            {
                "authority_host": peer.authority_host,
                "endpoint": peer.endpoint,
                "options": peer.options(),
                "client_secret": peer.client_secret,
            }
        )
    )
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).strip()
        if not line or line == b"stop":
            break
        if line == b"stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "events": peer.event_count,
                "unique_event_ids": len(peer.event_ids),
                "token_requests": len(peer.tokens),
            }
            print(json.dumps(stats))
        elif line == b"reset":
            peer.event_count = 0
            peer.event_ids.clear()
            print("{}")
        sys.stdout.flush()
    await peer.stop()


def main(argv: list[str] | None = None) -> None:
    """Run standalone peers; commands on stdin: `stats`, `reset`, `stop`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tls-dir", help="write a trustme CA and serve HTTPS")
    parser.add_argument(
        "--wire-limit-only",
        action="store_true",
        help="apply the 1,048,576-byte limit to the body as sent only, not after gunzip",
    )
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
