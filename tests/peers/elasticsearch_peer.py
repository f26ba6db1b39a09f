"""A contract peer of the Elasticsearch / OpenSearch `_bulk` API, written for tests from the
public API reference (Elasticsearch "Bulk API", "Data streams", "API keys"; OpenSearch
"Bulk"), with faults on demand. Elasticsearch cannot run here; this server answers what the
reference says a cluster answers, and the official clients (elasticsearch-py, opensearch-py)
are used against it as oracles in the tests.

`ElasticsearchPeer` is an aiohttp server on a free loopback port (HTTP, or HTTPS with a
trustme certificate from `peers.hec_server.make_tls`). It checks, in this order:

1. the route: `GET /` (cluster info), `POST|PUT /_bulk` and `POST|PUT /<target>/_bulk`;
   anything else 404 (`GET /` answers `X-Elastic-Product: Elasticsearch`);
2. authentication, when credentials are configured: `ApiKey base64(id:key)`, `Basic`,
   `Bearer`; missing → 401 "missing authentication credentials", wrong → 401 "unable to
   authenticate"; a credential in `read_only` may log in (`GET /` 200) but every document
   it writes is refused 403 `security_exception`;
3. query parameters: only those the reference lists for `_bulk`; another → 400
   `illegal_argument_exception` "contains unrecognized parameter";
4. `Content-Type`: `application/x-ndjson`, `application/json` or the compatible-with
   vendor types, else 406; `Content-Encoding: gzip` (bad gzip → 400); a body over
   `max_content_length` (decompressed) → 413; an empty body → 400; a body that does not end
   in a newline → 400;
5. NDJSON, strictly: each action line one JSON object with exactly one of `index`,
   `create`, `update`, `delete` holding an object of known metadata keys (`_index`, `_id`,
   `routing`, `pipeline`, `require_alias`, `if_seq_no`, `if_primary_term`, `version`,
   `version_type`, `dynamic_templates`, `op_type`); otherwise 400 for the whole request
   (`illegal_argument_exception` / `x_content_parse_exception`); no index anywhere or an
   `_id` over 512 bytes → 400 `action_request_validation_exception`;
6. each document (items answered in request order):
   * a source line that is not a JSON object, or repeats a key → 400
     `document_parsing_exception`; a field whose JSON type differs from the type it was
     first seen with in that index → 400 `document_parsing_exception` (dynamic mapping);
   * a `pipeline` that is not in `pipelines` → 400 "pipeline with id [..] does not exist";
   * a data stream (in `data_streams`, or any `logs-*-*` name: the built-in template) only
     takes `create` (else 400 "only write ops with an op_type of create are allowed in
     data streams") and needs `@timestamp` (else 400 `document_parsing_exception`);
     `require_data_stream=true` on another target → 400;
   * an index that does not exist with `auto_create=False` → 404 `index_not_found_exception`;
   * `create` of an `_id` the (backing) index holds → 409
     `version_conflict_engine_exception`; `index` of one → 200 `updated`; else 201 `created`.

The answer is `{"took","errors","items":[{<op>:{"_index","_id","_version","result",
"status",...}}]}`, pruned by `filter_path` (dotted paths, `*` wildcards, empty objects
dropped) as Elasticsearch does.

`ElasticsearchFaults` holds the knobs; counters are consumed one request at a time, and
`item_faults` maps a document `_id` to the answers it gets first (429, 503, 400 mapper,
409). Everything is recorded: `stored` (target → {_id: source}), `requests` (one
`BulkRequest` per `_bulk` request, with its headers and decompressed body).
Run `python -m peers.elasticsearch_peer --help` for a standalone server (benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import sys
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from isal import isal_zlib

from peers.hec_server import TlsFiles, make_tls

__all__ = ["BulkRequest", "ElasticsearchFaults", "ElasticsearchPeer"]

BULK_PARAMS = frozenset((
    "filter_path", "pipeline", "refresh", "require_alias", "require_data_stream", "routing",
    "timeout", "wait_for_active_shards", "_source", "_source_excludes", "_source_includes",
    "include_source_on_error", "list_executed_pipelines", "error_trace", "human", "pretty",
))  # fmt: skip
ACTIONS = ("index", "create", "update", "delete")
METADATA = frozenset((
    "_index", "_id", "routing", "pipeline", "require_alias", "if_seq_no", "if_primary_term",
    "version", "version_type", "dynamic_templates", "op_type", "require_data_stream",
    "list_executed_pipelines",
))  # fmt: skip
REQUEST_ERRORS = {
    401: "security_exception",
    403: "security_exception",
    413: "content_too_long_exception",
    429: "es_rejected_execution_exception",
}
ITEM_ERRORS = {
    429: ("es_rejected_execution_exception", "rejected execution of coordinating operation"),
    503: ("unavailable_shards_exception", "primary shard is not active"),
    400: ("mapper_parsing_exception", "failed to parse field [x] of type [long]"),
    409: (
        "version_conflict_engine_exception",
        "[{id}]: version conflict, document already exists (current version [1])",
    ),
}
CONTENT_TYPES = (
    "application/x-ndjson",
    "application/json",
    "application/vnd.elasticsearch+x-ndjson",
    "application/vnd.elasticsearch+json",
)


@dataclass
class ElasticsearchFaults:
    """Misbehaviour on demand. Counters apply to the next `_bulk` requests, one each."""

    status: list[int] = field(default_factory=list)  # whole-request answers, one per request
    retry_after: str | None = None  # Retry-After sent with 429/503 from `status`
    garbage: int = 0  # 200 with a body that is not a _bulk answer
    wrong_item_count: int = 0  # 200 with one item too few
    drop: int = 0  # close the connection without answering
    slow_s: float = 0.0  # wait this long before answering
    hang: int = 0  # never answer (until the server stops)
    max_documents_per_request: int | None = None  # 413 above this many documents
    # by _id: the statuses the document gets on its next attempts (429, 503, 400, 409)
    item_faults: dict[str, list[int]] = field(default_factory=dict)
    echo_headers: bool = False  # whole-request errors quote the request's headers


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """One `_bulk` request as the peer saw it, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes  # decompressed
    status: int
    documents: int


class _Refusal(Exception):
    def __init__(self, status: int, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error_type, self.reason = status, error_type, reason


def _error(error_type: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"type": error_type, "reason": reason, **extra}


_NOTHING: Any = object()
# The `_shards` of every stored document's item: one object, shared, never changed.
_ONE_SHARD: Any = {"total": 1, "successful": 1, "failed": 0}


def filter_path(value: Any, paths: list[list[str]]) -> Any:
    """`value` pruned to `paths` (each a list of keys, `*` any key), as `filter_path` does:
    the elements of an array are matched by the same paths, and objects left empty are
    dropped (from arrays too)."""
    fields = {path[2] for path in paths if len(path) == 3 and path[:2] == ["items", "*"]}
    if isinstance(value, dict) and all(
        len(path) == 1 or (len(path) == 3 and path[:2] == ["items", "*"]) for path in paths
    ):  # the shape of filter every client sends: the same result, without the recursion
        out = {k: v for k, v in value.items() if [k] in paths and k != "items"}
        items = [
            {op: {k: v for k, v in body.items() if k in fields}}
            for item in value.get("items", [])
            for op, body in item.items()
        ]
        if "items" in value and (fields or ["items"] in paths):
            kept = [item for item in items if next(iter(item.values()))]
            out["items"] = value["items"] if ["items"] in paths else kept
        return out
    kept = _prune(value, paths)
    return {} if kept is _NOTHING else kept


def _prune(value: Any, paths: list[list[str]]) -> Any:
    if any(not path for path in paths):
        return value
    if isinstance(value, list):
        return [item for item in (_prune(v, paths) for v in value) if item is not _NOTHING]
    if not isinstance(value, dict):
        return _NOTHING
    out: dict[str, Any] = {}
    for key, item in value.items():
        rest = [path[1:] for path in paths if path[0] in ("*", key)]
        if rest:
            kept = _prune(item, rest)
            if kept is not _NOTHING:
                out[key] = kept
    return out if out else _NOTHING


def _strict_object(line: bytes, *, strict: bool = True) -> dict[str, Any] | None:
    """A JSON object (with `strict`: and no repeated key), or None."""
    try:
        load = _load_strictly if strict else orjson.loads
        value = load(line)
    except (ValueError, _Duplicate):
        return None
    return value if isinstance(value, dict) else None


def _load_strictly(line: bytes) -> Any:
    return json.loads(line, object_pairs_hook=_no_duplicates)


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Duplicate
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "null"


class ElasticsearchPeer:
    """A strict `_bulk` endpoint on a free loopback port; see the module docstring."""

    def __init__(
        self,
        *,
        api_keys: Mapping[str, str] | None = None,  # id -> key
        users: Mapping[str, str] | None = None,  # username -> password
        bearer_tokens: Collection[str] = (),
        read_only: Collection[str] = (),  # api key ids, usernames or tokens
        pipelines: Collection[str] = (),
        data_streams: Collection[str] = (),
        auto_create: bool = True,
        max_content_length: int = 100 << 20,
        tls: TlsFiles | None = None,
        record: bool = True,
        faults: ElasticsearchFaults | None = None,
    ) -> None:
        self.api_keys = dict(api_keys or {})
        self.users = dict(users or {})
        self.bearer_tokens = frozenset(bearer_tokens)
        self.read_only = frozenset(read_only)
        self.pipelines = frozenset(pipelines)
        self.data_streams = set(data_streams)
        self.auto_create = auto_create
        self.max_content_length = max_content_length
        self.tls = tls
        self.record = record
        self.faults = faults or ElasticsearchFaults()
        self.stored: dict[str, dict[str, Any]] = {}  # backing index -> {_id: source}
        self.generation: dict[str, int] = {}  # data stream -> its write index's number
        self.mappings: dict[str, dict[str, str]] = {}  # index -> field path -> JSON kind
        self.requests: list[BulkRequest] = []
        self.document_count = 0
        self.stored_ids: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._hanging: list[asyncio.Event] = []
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL a client is configured with."""
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0: a free one)."""
        app = web.Application(client_max_size=self.max_content_length * 2 + 1024)
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

    async def __aenter__(self) -> ElasticsearchPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- views for assertions ------------------------------------------------------------

    def documents(self, target: str) -> dict[str, Any]:
        """Every stored document of an index or data stream (all its backing indices)."""
        out: dict[str, Any] = {}
        for index, docs in self.stored.items():
            if index == target or index.startswith(f".ds-{target}-"):
                out.update(docs)
        return out

    def rollover(self, stream: str) -> None:
        """Roll a data stream over: later documents go to a new backing index."""
        self.generation[stream] = self.generation.get(stream, 1) + 1

    # -- request handling ----------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            parts = [p for p in request.path.split("/") if p]
            if request.method == "GET" and not parts:
                self._authenticate(request)
                return web.json_response(
                    {
                        "name": "peer-1",
                        "cluster_name": "contract-peer",
                        "version": {"number": "9.1.0", "build_flavor": "default"},
                        "tagline": "You Know, for Search",
                    },
                    headers={"X-Elastic-Product": "Elasticsearch"},
                )
            if request.method in ("POST", "PUT") and parts and parts[-1] == "_bulk":
                if len(parts) > 2:
                    raise _Refusal(400, "illegal_argument_exception", "no handler found")
                return await self._bulk(request, parts[0] if len(parts) == 2 else None)
            raise _Refusal(
                404 if request.method in ("GET", "POST", "PUT") else 405,
                "illegal_argument_exception",
                f"no handler found for uri [{request.path}] and method [{request.method}]",
            )
        except _Refusal as refusal:
            reason = refusal.reason
            if self.faults.echo_headers:
                reason += " " + repr(dict(request.headers))
            headers = {"X-Elastic-Product": "Elasticsearch"}
            if refusal.status == 401:
                headers["WWW-Authenticate"] = 'ApiKey, Basic realm="security", Bearer realm="x"'
            if refusal.status in (429, 503) and self.faults.retry_after is not None:
                headers["Retry-After"] = self.faults.retry_after
            body = {
                "error": {
                    "root_cause": [_error(refusal.error_type, reason)],
                    **_error(refusal.error_type, reason),
                },
                "status": refusal.status,
            }
            return web.json_response(body, status=refusal.status, headers=headers)

    def _authenticate(self, request: web.Request) -> str | None:
        """The principal of the request's credential (None when security is off)."""
        if not (self.api_keys or self.users or self.bearer_tokens):
            return None
        value = request.headers.get("Authorization")
        if not value:
            raise _Refusal(
                401,
                "security_exception",
                f"missing authentication credentials for REST request [{request.path}]",
            )
        scheme, _, credential = value.partition(" ")
        principal: str | None = None
        try:
            if scheme.lower() == "apikey":
                key_id, _, key = base64.b64decode(credential, validate=True).decode().partition(":")
                principal = key_id if self.api_keys.get(key_id) == key and key else None
            elif scheme.lower() == "basic":
                user, _, password = (
                    base64.b64decode(credential, validate=True).decode().partition(":")
                )
                principal = user if self.users.get(user) == password and password else None
            elif scheme.lower() == "bearer":
                principal = credential if credential in self.bearer_tokens else None
        except (ValueError, UnicodeDecodeError):
            principal = None
        if principal is None:
            raise _Refusal(
                401,
                "security_exception",
                f"unable to authenticate with provided credentials for REST request"
                f" [{request.path}]",
            )
        return principal

    async def _bulk(self, request: web.Request, path_target: str | None) -> web.StreamResponse:
        faults = self.faults
        principal = self._authenticate(request)
        for name in request.query:
            if name not in BULK_PARAMS:
                raise _Refusal(
                    400,
                    "illegal_argument_exception",
                    f"request [{request.path}] contains unrecognized parameter: [{name}]",
                )
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:
            raise _Refusal(
                406,
                "media_type_header_exception",
                f"Content-Type header [{request.headers.get('Content-Type')}] is not supported",
            )
        raw = await request.read()
        gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
        if gzipped:
            try:  # ISA-L inflates what zlib does, in less than half the CPU
                unpacker = isal_zlib.decompressobj(31)
                raw = unpacker.decompress(raw, self.max_content_length + 1)
                if not unpacker.eof:
                    raise isal_zlib.error("truncated")
            except (isal_zlib.error, zlib.error):
                raise _Refusal(400, "parse_exception", "failed to decompress the body") from None
        if len(raw) > self.max_content_length:
            raise _Refusal(413, "content_too_long_exception", "request body too large")
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        if faults.hang:
            faults.hang -= 1
            event = asyncio.Event()
            self._hanging.append(event)
            await event.wait()
        if faults.drop:
            faults.drop -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if faults.status:
            status = faults.status.pop(0)
            self._log(request, raw, status, 0)
            error_type = REQUEST_ERRORS.get(status, "unavailable_shards_exception")
            raise _Refusal(status, error_type, "fault")
        if not raw:
            raise _Refusal(400, "parse_exception", "request body is required")
        if not raw.endswith(b"\n"):
            raise _Refusal(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            )
        operations = self._parse(raw, path_target, request.query)
        if (
            faults.max_documents_per_request is not None
            and len(operations) > faults.max_documents_per_request
        ):
            self._log(request, raw, 413, len(operations))
            raise _Refusal(413, "content_too_long_exception", "request body too large")
        if faults.garbage:
            faults.garbage -= 1
            self._log(request, raw, 200, len(operations))
            return web.Response(status=200, text="<html>it works</html>")
        targets: dict[str, tuple[bool, str]] = {}  # target -> (data stream?, index written)
        items = [self._apply(op, principal, request.query, targets) for op in operations]
        if faults.wrong_item_count:
            faults.wrong_item_count -= 1
            items = items[:-1]
        self._log(request, raw, 200, len(operations))
        answer = {
            "took": 1,
            "errors": any("error" in next(iter(item.values())) for item in items),
            "items": items,
        }
        wanted = request.query.get("filter_path")
        if wanted:
            answer = filter_path(answer, [p.split(".") for p in wanted.split(",") if p])
        return web.Response(
            body=orjson.dumps(answer),
            content_type="application/json",
            headers={"X-Elastic-Product": "Elasticsearch"},
        )

    def _log(self, request: web.Request, raw: bytes, status: int, documents: int) -> None:
        self.requests.append(
            BulkRequest(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                raw if self.record else b"",
                status,
                documents,
            )
        )

    def _parse(
        self, raw: bytes, path_target: str | None, query: Mapping[str, str]
    ) -> list[tuple[str, dict[str, Any], bytes | None]]:
        """(action, metadata with `_index` filled in, source line) per operation."""
        lines = raw.split(b"\n")[:-1]
        operations: list[tuple[str, dict[str, Any], bytes | None]] = []
        number = 0
        while number < len(lines):
            line = lines[number].rstrip(b"\r")
            number += 1
            if not line.strip():
                continue
            action = _strict_object(line, strict=self.record)
            if action is None or len(action) != 1:
                raise _Refusal(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{number}], expected START_OBJECT or"
                    " one action",
                )
            ((name, meta),) = action.items()
            if name not in ACTIONS or not isinstance(meta, dict):
                raise _Refusal(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{number}], expected one of {ACTIONS}",
                )
            if not METADATA.issuperset(meta):
                unknown = [key for key in meta if key not in METADATA]
                raise _Refusal(
                    400,
                    "illegal_argument_exception",
                    f"Action/metadata line [{number}] contains an unknown parameter [{unknown[0]}]",
                )
            meta.setdefault("_index", path_target)  # `meta` is this line's own object
            if not meta["_index"]:
                raise _Refusal(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;",
                )
            if len(str(meta.get("_id", "")).encode()) > 512:
                raise _Refusal(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: id is too long, must be no longer than 512 bytes;",
                )
            source = None
            if name != "delete":
                if number >= len(lines):
                    raise _Refusal(400, "illegal_argument_exception", "source line is missing")
                source = lines[number].rstrip(b"\r")
                number += 1
            operations.append((name, meta, source))
        if not operations:
            raise _Refusal(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no requests added;",
            )
        return operations

    def _is_stream(self, target: str) -> bool:
        parts = target.split("-")
        return target in self.data_streams or (len(parts) >= 3 and parts[0] == "logs")

    def _target(self, target: str) -> tuple[bool, str]:
        """Whether `target` is a data stream, and the index a document sent to it goes to
        (a stream's current backing index)."""
        stream = self._is_stream(target)
        if not stream:
            return False, target
        return True, f".ds-{target}-2026.01.05-{self.generation.get(target, 1):06d}"

    def _apply(
        self,
        operation: tuple[str, dict[str, Any], bytes | None],
        principal: str | None,
        query: Mapping[str, str],
        targets: dict[str, tuple[bool, str]],
    ) -> dict[str, Any]:
        name, meta, source = operation
        target: str = meta["_index"]
        doc_id = meta.get("_id")
        resolved = targets.get(target)
        if resolved is None:
            resolved = targets[target] = self._target(target)
        stream, index = resolved

        def fail(status: int, error_type: str, reason: str) -> dict[str, Any]:
            return {
                name: {
                    "_index": index,
                    "_id": doc_id,
                    "status": status,
                    "error": _error(error_type, reason, index=index),
                }
            }

        planned = self.faults.item_faults.get(str(doc_id))
        if planned:
            status = planned.pop(0)
            error_type, reason = ITEM_ERRORS[status]
            return fail(status, error_type, reason.format(id=doc_id))
        if principal is not None and principal in self.read_only:
            return fail(
                403,
                "security_exception",
                f"action [indices:data/write/bulk[s]] is unauthorized for user [{principal}]",
            )
        pipeline = meta.get("pipeline", query.get("pipeline"))
        if pipeline is not None and pipeline != "_none" and pipeline not in self.pipelines:
            return fail(
                400, "illegal_argument_exception", f"pipeline with id [{pipeline}] does not exist"
            )
        if query.get("require_data_stream") == "true" and not stream:
            return fail(
                400, "illegal_argument_exception", f"index [{target}] must be a data stream"
            )
        if stream and name != "create":
            return fail(
                400,
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            )
        if name in ("update", "delete"):
            return fail(400, "illegal_argument_exception", "not supported by this peer")
        document = _strict_object(source or b"", strict=self.record)
        if document is None:
            return fail(
                400,
                "document_parsing_exception",
                "[1:1] failed to parse: not a JSON object without repeated keys",
            )
        if stream and "@timestamp" not in document:
            return fail(
                400,
                "document_parsing_exception",
                "data stream timestamp field [@timestamp] is missing",
            )
        if index not in self.stored and not self.auto_create:
            return fail(404, "index_not_found_exception", f"no such index [{target}]")
        conflict = self._mapping_conflict(index, document)
        if conflict is not None:
            return fail(400, "document_parsing_exception", conflict)
        docs = self.stored.setdefault(index, {})
        if doc_id is None:
            doc_id = f"auto-{self.document_count}"
        if doc_id in docs and name == "create":
            return fail(
                409, "version_conflict_engine_exception", ITEM_ERRORS[409][1].format(id=doc_id)
            )
        result, status = ("updated", 200) if doc_id in docs else ("created", 201)
        docs[doc_id] = document if self.record else True
        self.document_count += 1
        self.stored_ids.add(str(doc_id))
        return {
            name: {
                "_index": index,
                "_id": doc_id,
                "_version": 1,
                "result": result,
                "_shards": _ONE_SHARD,
                "_seq_no": self.document_count,
                "_primary_term": 1,
                "status": status,
            }
        }

    def _mapping_conflict(self, index: str, document: dict[str, Any]) -> str | None:
        if not self.record:
            return None
        mapping = self.mappings.setdefault(index, {})
        pending: list[tuple[str, Any]] = list(document.items())
        seen: dict[str, str] = {}
        while pending:
            path, value = pending.pop()
            kind = _kind(value)
            if kind == "null":
                continue
            known = mapping.get(path, seen.get(path))
            if known is not None and known != kind and not (known == "text" and kind == "number"):
                return f"failed to parse field [{path}] of type [{known}] in document"
            seen[path] = kind
            if kind == "object":
                pending.extend((f"{path}.{k}", v) for k, v in value.items())
        mapping.update(seen)
        return None


async def _serve(args: argparse.Namespace) -> None:
    tls = None
    if args.tls_dir:
        directory = Path(args.tls_dir)
        directory.mkdir(parents=True, exist_ok=True)
        tls = make_tls(directory)
    peer = ElasticsearchPeer(api_keys={"bench": "secret-key"}, tls=tls, record=False)
    await peer.start(args.port)
    print(json.dumps({"port": peer.port, "ca_file": str(tls.ca_file) if tls else None}))
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
                "documents": peer.document_count,
                "unique_ids": len(peer.stored_ids),
                "requests": len(peer.requests),
                "gzip_requests": sum(
                    r.headers.get("content-encoding") == "gzip" for r in peer.requests
                ),
            }
            print(json.dumps(stats))
            sys.stdout.flush()
    await peer.stop()


def main(argv: list[str] | None = None) -> None:
    """Run a standalone peer (API key id `bench`, key `secret-key`); stdin: `stats`, `stop`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-dir", help="write a trustme CA and serve HTTPS")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
