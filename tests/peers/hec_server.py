"""A Splunk HTTP Event Collector written for tests: strict as Splunk's own, with faults.

`HecServer` is an aiohttp server on a free loopback port (HTTP, or HTTPS with a trustme
certificate from `make_tls`). It checks what a real HEC checks, in the same order:

1. the path (`/services/collector/event`, `/services/collector`, `/event/1.0`, `/ack`,
   `/health`; anything else is 404);
2. authentication: `Authorization: Splunk <token>` or Basic with the token as password;
   missing → 401 code 2, another scheme → 401 code 3, unknown token → 403 code 4, disabled
   token → 403 code 1, `?token=` → 400 code 16;
3. with acks on: a channel (header or `?channel=`), missing → 400 code 10, not a GUID →
   400 code 11; `/ack` on a token without acks → 400 code 14;
4. the body: over `max_content_length` bytes on the wire → 413; gzip when
   `Content-Encoding: gzip` (bad gzip → code 6); empty → 400 code 5;
5. the envelopes, concatenated (whitespace allowed between them, a JSON array is refused
   with code 6): not JSON or not an object → 6, no `event` → 12, `event` "" or null → 13,
   `event` neither a string nor an object → 6,
   `time` not a plain decimal number (exponent, boolean, non-numeric string) or `fields`
   not a flat object of strings / lists of strings → 15, `index` outside the allow-list → 7.
   Errors carry `invalid-event-number`; the events before it are kept (`partial_ingest`), as
   Splunk is reported to do.

Success is `{"text":"Success","code":0}` plus `"ackId"` (counting from 0 per channel) when
acks are on. An ackId turns true after `faults.ack_after_polls` polls, is then forgotten,
and its events move to `acknowledged`. Everything is recorded for assertions: `received`
(accepted envelopes, in order), `acknowledged`, and `requests` (one line per request).

`HecFaults` holds the knobs; each counter is consumed by the next event requests.
Run `python -m peers.hec_server --help` for a standalone server (benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import resource
import ssl
import sys
import uuid
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

__all__ = ["HecFaults", "HecRequest", "HecServer", "TlsFiles", "make_tls"]

EVENT_PATHS = ("/services/collector/event", "/services/collector", "/services/collector/event/1.0")
ACK_PATH = "/services/collector/ack"
HEALTH_PATHS = ("/services/collector/health", "/services/collector/health/1.0")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A throwaway CA and a server certificate for `localhost`/127.0.0.1 (trustme)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    fingerprint_sha256: str

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a server presenting this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_tls(directory: Path, *, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """Write a new CA and server certificate into `directory`."""
    import hashlib

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    return TlsFiles(ca_file, cert_file, key_file, hashlib.sha256(der).hexdigest())


@dataclass
class HecFaults:
    """Misbehaviour on demand. Counters apply to the next event requests, one each."""

    busy: int = 0  # 503 code 9 ("Server is busy")
    retry_after: str | None = None  # Retry-After sent with `busy`
    internal_error: int = 0  # 500 code 8
    plain_502: int = 0  # 502 with an HTML body (a proxy in front)
    drop: int = 0  # close the connection without answering
    drop_after_bytes: int = 0  # with `drop`: read this much of the body first
    garbage: int = 0  # 200 with a body that is not an HEC reply
    slow_s: float = 0.0  # wait this long before answering event requests
    hang: int = 0  # never answer (until the server stops)
    invalid_event_at: int | None = None  # code 6 at this index, for every request long enough
    invalid_event_times: int = 1  # how many requests `invalid_event_at` applies to
    invalid_without_index: bool = False  # code 6 errors carry no invalid-event-number
    max_events_per_request: int | None = None  # 413 above this many events
    ack_after_polls: int = 0  # an ackId turns true on poll number N+1
    never_ack: bool = False  # ackIds stay false forever
    ack_garbage: int = 0  # the next N /ack polls get a 200 that is not an ack answer
    ack_string_true: int = 0  # the next N /ack polls say "true" (a string) instead of true
    unhealthy: bool = False  # /health answers 503 code 18
    echo_headers: bool = False  # every error reply's text quotes the request's headers


@dataclass(frozen=True, slots=True)
class HecRequest:
    """One request as the server saw it and answered it."""

    path: str
    status: int
    code: int | None
    events: int  # envelopes parsed (accepted ones before an error included)
    gzip: bool
    channel: str | None


class _Refusal(Exception):
    def __init__(self, status: int, code: int, text: str, index: int | None = None) -> None:
        super().__init__(text)
        self.status, self.code, self.text, self.index = status, code, text, index


class _ExpDecimal(Decimal):
    """A number written with an exponent (`1.7E9`), which HEC refuses in `time`."""


def _parse_float(text: str) -> Decimal:
    return _ExpDecimal(text) if "e" in text or "E" in text else Decimal(text)


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


_DECODER = json.JSONDecoder(parse_float=_parse_float, parse_constant=_refuse_constant)
_LEADING_TIME = re.compile(rb'\s*\{\s*"time"\s*:\s*(-?[0-9][0-9.eE+-]*)\s*[,}]')


def _raw_decode_all(text: str) -> Iterator[tuple[int, Any]]:
    end = len(text)
    pos = 0
    index = 0
    decode = _DECODER.raw_decode
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos == end:
            return
        try:
            value, pos = decode(text, pos)
        except json.JSONDecodeError:
            raise _Refusal(400, 6, "Invalid data format", index) from None
        yield index, value
        index += 1


def _fast_lines(raw: bytes) -> list[Any] | None:
    """One envelope per line, parsed by orjson, `time` kept exact; None if any line is not
    exactly one JSON value or has its `time` anywhere but first."""
    out: list[Any] = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if isinstance(value, dict) and isinstance(value.get("time"), int | float):
            found = _LEADING_TIME.match(line)
            if found is None:
                return None
            value["time"] = _parse_float(found.group(1).decode())
        out.append(value)
    return out


def iter_envelopes(raw: bytes) -> Iterator[tuple[int, Any]]:
    """Yield (index, value) for each JSON value written one after another in `raw`; raises
    `_Refusal` code 6 at the index where the text stops being JSON (or UTF-8).

    A JSON string cannot hold a raw newline, so when the values are one per line each line
    is parsed alone (orjson, fast); anything else goes through `json.raw_decode`. Both
    refuse NaN and Infinity and keep `time` as an exact `Decimal`.
    """
    fast = _fast_lines(raw) if b"\n" in raw else None
    if fast is not None:
        yield from enumerate(fast)
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal(400, 6, "Invalid data format", 0) from None
    yield from _raw_decode_all(text)


def _check_time(value: object) -> bool:
    if isinstance(value, bool | _ExpDecimal):
        return False
    if isinstance(value, int | Decimal):
        return True
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except ArithmeticError:
            return False
        return number.is_finite() and "e" not in value.lower()
    return False


def _check_fields(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    for item in value.values():
        if isinstance(item, list):
            if not all(isinstance(x, str) for x in item):
                return False
        elif not isinstance(item, str):
            return False
    return True


class HecServer:
    """A strict HEC on a free loopback port; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = "00000000-0000-4000-8000-000000000001",
        ack: bool = False,
        disabled: bool = False,
        indexes: Collection[str] | None = None,
        max_content_length: int = 10_000_000,
        partial_ingest: bool = True,
        tls: TlsFiles | None = None,
        record: bool = True,
        faults: HecFaults | None = None,
    ) -> None:
        self.token = token
        self.ack = ack
        self.disabled = disabled
        self.indexes = None if indexes is None else frozenset(indexes)
        self.max_content_length = max_content_length
        self.partial_ingest = partial_ingest
        self.tls = tls
        self.record = record
        self.faults = faults or HecFaults()
        self.received: list[dict[str, Any]] = []
        self.acknowledged: list[dict[str, Any]] = []
        self.requests: list[HecRequest] = []
        self.event_count = 0
        self.event_ids: set[str] = set()
        self._next_ack: dict[str, int] = {}
        self._pending: dict[str, dict[int, tuple[list[dict[str, Any]], int]]] = {}
        self._runner: web.AppRunner | None = None
        self._hanging: list[asyncio.Event] = []
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL the transport is configured with."""
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0: a free one)."""
        app = web.Application(client_max_size=self.max_content_length * 4 + 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, auto_decompress=False
        )
        await self._runner.setup()
        context = self.tls.server_context() if self.tls else None
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        for event in self._hanging:
            event.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HecServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- views for assertions ------------------------------------------------------------

    def events(self) -> list[Any]:
        """The `event` values received, in order."""
        return [envelope["event"] for envelope in self.received]

    def acknowledged_events(self) -> list[Any]:
        """The `event` values of acknowledged requests, in acknowledgement order."""
        return [envelope["event"] for envelope in self.acknowledged]

    def pending_acks(self) -> int:
        """How many ackIds were issued and not yet answered true."""
        return sum(len(p) for p in self._pending.values())

    # -- request handling ----------------------------------------------------------------

    @staticmethod
    def _reply(status: int, code: int, text: str, **extra: Any) -> web.Response:
        body = {"text": text, "code": code, **extra}
        return web.json_response(body, status=status)

    def _log(self, request: web.Request, status: int, code: int | None, events: int) -> None:
        self.requests.append(
            HecRequest(
                path=request.path,
                status=status,
                code=code,
                events=events,
                gzip=request.headers.get("Content-Encoding", "").lower() == "gzip",
                channel=request.headers.get("X-Splunk-Request-Channel")
                or request.query.get("channel"),
            )
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        try:
            if path in HEALTH_PATHS and request.method == "GET":
                return self._health(request)
            if path in EVENT_PATHS and request.method == "POST":
                return await self._event(request)
            if path == ACK_PATH and request.method == "POST":
                return await self._ack_poll(request)
            if path in (*HEALTH_PATHS, *EVENT_PATHS, ACK_PATH):
                raise _Refusal(405, 404, "Method not allowed")
            raise _Refusal(404, 404, "The requested URL was not found on this server.")
        except _Refusal as refusal:
            self._log(request, refusal.status, refusal.code, refusal.index or 0)
            extra = {} if refusal.index is None else {"invalid-event-number": refusal.index}
            text = refusal.text + self._echo(request)
            return self._reply(refusal.status, refusal.code, text, **extra)

    def _echo(self, request: web.Request) -> str:
        """With `faults.echo_headers`: the request's headers, as a leaky proxy quotes them."""
        if not self.faults.echo_headers:
            return ""
        return "; request was:\r\n" + "\r\n".join(f"{k}: {v}" for k, v in request.headers.items())

    def _health(self, request: web.Request) -> web.Response:
        if self.faults.unhealthy:
            return self._reply(503, 18, "HEC is unhealthy, queues are full" + self._echo(request))
        return self._reply(200, 17, "HEC is healthy")

    def _authenticate(self, request: web.Request) -> None:
        if "token" in request.query:
            raise _Refusal(400, 16, "Query string authorization is not enabled")
        value = request.headers.get("Authorization")
        if value is None:
            raise _Refusal(401, 2, "Token is required")
        scheme, _, credential = value.partition(" ")
        if scheme == "Splunk":
            token = credential
        elif scheme == "Basic":
            try:
                token = base64.b64decode(credential, validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                raise _Refusal(401, 3, "Invalid authorization") from None
        else:
            raise _Refusal(401, 3, "Invalid authorization")
        if token != self.token:
            raise _Refusal(403, 4, "Invalid token")
        if self.disabled:
            raise _Refusal(403, 1, "Token disabled")

    def _channel(self, request: web.Request) -> str | None:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if not self.ack:
            return channel
        if not channel:
            raise _Refusal(400, 10, "Data channel is missing")
        try:
            uuid.UUID(channel)
        except ValueError:
            raise _Refusal(400, 11, "Invalid data channel") from None
        return channel

    async def _event(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        if faults.drop:
            faults.drop -= 1
            if faults.drop_after_bytes:
                await request.content.read(faults.drop_after_bytes)
            assert request.transport is not None
            request.transport.close()
            self._log(request, 0, None, 0)
            return web.Response(status=204)
        if faults.hang:
            faults.hang -= 1
            forever = asyncio.Event()
            self._hanging.append(forever)
            await forever.wait()
            raise _Refusal(503, 9, "Server is busy")
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        self._authenticate(request)
        channel = self._channel(request)
        if faults.busy:
            faults.busy -= 1
            self._log(request, 503, 9, 0)
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else None
            return web.json_response(
                {"text": "Server is busy", "code": 9}, status=503, headers=headers
            )
        if faults.internal_error:
            faults.internal_error -= 1
            raise _Refusal(500, 8, "Internal server error")
        if faults.plain_502:
            faults.plain_502 -= 1
            self._log(request, 502, None, 0)
            return web.Response(status=502, text="<html>Bad Gateway</html>")
        if (request.content_length or 0) > self.max_content_length:
            raise _Refusal(413, 413, "Content-Length too large")
        raw = await request.read()
        if len(raw) > self.max_content_length:
            raise _Refusal(413, 413, "Content too large")
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                raw = zlib.decompress(raw, wbits=31)
            except zlib.error:
                raise _Refusal(400, 6, "Invalid data format") from None
        if not raw.strip():
            raise _Refusal(400, 5, "No data")
        if faults.garbage:
            faults.garbage -= 1
            self._log(request, 200, None, 0)
            return web.Response(status=200, text="<html>OK, I guess</html>")
        accepted = self._parse(raw)
        count = len(accepted)
        if faults.max_events_per_request is not None and count > faults.max_events_per_request:
            raise _Refusal(413, 413, "Content too large")
        bad = faults.invalid_event_at
        if bad is not None and faults.invalid_event_times > 0 and count > bad:
            faults.invalid_event_times -= 1
            self._keep(accepted[:bad] if self.partial_ingest else [])
            raise _Refusal(400, 6, "Invalid data format", bad)
        self._keep(accepted)
        if not self.ack:
            self._log(request, 200, 0, count)
            return self._reply(200, 0, "Success")
        assert channel is not None
        ack_id = self._next_ack.get(channel, 0)
        self._next_ack[channel] = ack_id + 1
        self._pending.setdefault(channel, {})[ack_id] = (accepted if self.record else [], 0)
        self._log(request, 200, 0, count)
        return self._reply(200, 0, "Success", ackId=ack_id)

    def _parse(self, raw: bytes) -> list[dict[str, Any]]:
        accepted: list[dict[str, Any]] = []
        refusal: _Refusal | None = None
        try:
            for index, envelope in iter_envelopes(raw):
                refusal = self._check_envelope(index, envelope)
                if refusal is not None:
                    break
                accepted.append(envelope)
        except _Refusal as error:
            refusal = error
        if refusal is not None:
            self._keep(accepted if self.partial_ingest else [])
            if self.faults.invalid_without_index:
                refusal.index = None
            raise refusal
        return accepted

    def _check_envelope(self, index: int, envelope: object) -> _Refusal | None:
        if not isinstance(envelope, dict):
            return _Refusal(400, 6, "Invalid data format", index)
        if "event" not in envelope:
            return _Refusal(400, 12, "Event field is required", index)
        event = envelope["event"]
        if event is None or event == "":
            return _Refusal(400, 13, "Event field cannot be blank", index)
        if not isinstance(event, str | dict):
            return _Refusal(400, 6, "Invalid data format", index)
        if "time" in envelope and not _check_time(envelope["time"]):
            return _Refusal(400, 15, "Error in handling indexed fields", index)
        if "fields" in envelope and not _check_fields(envelope["fields"]):
            return _Refusal(400, 15, "Error in handling indexed fields", index)
        for key in ("host", "source", "sourcetype", "index"):
            if key in envelope and not isinstance(envelope[key], str):
                return _Refusal(400, 6, "Invalid data format", index)
        if self.indexes is not None and envelope.get("index", "main") not in self.indexes:
            return _Refusal(400, 7, "Incorrect index", index)
        return None

    def _keep(self, envelopes: list[dict[str, Any]]) -> None:
        self.event_count += len(envelopes)
        if self.record:
            self.received.extend(envelopes)
            return
        for envelope in envelopes:
            event = envelope["event"]
            if isinstance(event, str) and event.startswith("{"):
                event = orjson.loads(event)
            if isinstance(event, dict):
                self.event_ids.add(str(event.get("event_id")))

    async def _ack_poll(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        if not self.ack:
            raise _Refusal(400, 14, "ACK is disabled")
        channel = self._channel(request)
        assert channel is not None
        try:
            asked = json.loads(await request.read())["acks"]
            if not isinstance(asked, list) or not all(type(a) is int for a in asked):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise _Refusal(400, 6, "Invalid data format") from None
        self._log(request, 200, None, 0)
        faults = self.faults
        if faults.ack_garbage:
            faults.ack_garbage -= 1
            return web.Response(status=200, text='{"acks": "soon"}')
        pending = self._pending.setdefault(channel, {})
        answer: dict[str, Any] = {}
        for ack_id in asked:
            entry = pending.get(ack_id)
            done = False
            if entry is not None and not faults.never_ack:
                envelopes, polls = entry
                if polls >= faults.ack_after_polls:
                    done = True
                    del pending[ack_id]
                    self.acknowledged.extend(envelopes)
                else:
                    pending[ack_id] = (envelopes, polls + 1)
            answer[str(ack_id)] = done
        if faults.ack_string_true:
            faults.ack_string_true -= 1
            answer = dict.fromkeys(answer, "true")
        return web.json_response({"acks": answer})


async def _serve(args: argparse.Namespace) -> None:
    tls = None
    if args.tls_dir:
        directory = Path(args.tls_dir)
        directory.mkdir(parents=True, exist_ok=True)
        tls = make_tls(directory)
    server = HecServer(token=args.token, ack=args.ack, tls=tls, record=False)
    await server.start(args.port)
    print(json.dumps({"port": server.port, "ca_file": str(tls.ca_file) if tls else None}))
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line or line.strip() == b"stop":
            break
        if line.strip() == b"stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "events": server.event_count,
                "unique_event_ids": len(server.event_ids),
                "requests": len(server.requests),
                "gzip_requests": sum(r.gzip for r in server.requests),
            }
            print(json.dumps(stats))
            sys.stdout.flush()
        if line.strip() == b"reset":
            server.event_count = 0
            server.event_ids.clear()
            server.requests.clear()
            print("{}")
            sys.stdout.flush()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    """Run a standalone HEC; commands on stdin: `stats`, `reset`, `stop`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="00000000-0000-4000-8000-000000000001")
    parser.add_argument("--ack", action="store_true")
    parser.add_argument("--tls-dir", help="write a trustme CA and serve HTTPS")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
