"""Running a worker process: the SQLite lock, metrics, signals, and the HTTP API beside it.

`run_worker` is all of `xavyo-siem run` but its options: it holds the single-worker lock of
a SQLite store, serves the Prometheus metrics, opens destinations with the process's key
ring and SSRF guard, and runs the worker and the sources it tails (`sources.SourceTailer`),
with the HTTP API co-hosted in the same event loop when asked, until SIGTERM or SIGINT (or,
draining, until every destination caught up). `serve_api` is the same without a worker
(`xavyo-siem serve`). The API application is built by the caller (the API sits above the
runtime) and handed in as `ApiServing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from prometheus_client import start_http_server
from sqlalchemy import Engine

from xavyo_siem.crypto import KeyRing
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import SiemError
from xavyo_siem.runtime.components import DestinationOpener
from xavyo_siem.runtime.worker import Worker
from xavyo_siem.runtime.worker_settings import WorkerSettings
from xavyo_siem.settings import Settings
from xavyo_siem.sources.tail import SourceTailer

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

__all__ = [
    "ApiFor",
    "ApiServing",
    "Secrets",
    "run_worker",
    "serve_api",
    "single_worker_lock",
    "stop_on_signals",
]


@dataclass(frozen=True, slots=True)
class ApiServing:
    """The HTTP API to serve: its application, and the address it listens on."""

    app: ASGIApp
    host: str = "127.0.0.1"
    port: int = 8080


Secrets = Callable[[], tuple[KeyRing, EgressGuard]]

_THREADS = 64
ApiFor = Callable[[KeyRing, EgressGuard], ApiServing]


def run_worker(
    *,
    engine: Engine,
    settings: Settings,
    secrets: Secrets,
    worker_settings: WorkerSettings,
    drain: bool = False,
    api: ApiFor | None = None,
    metrics_port: int | None = None,
    started: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
) -> list[str]:
    """Run a worker until SIGTERM or SIGINT, or with `drain` until every destination caught
    up, or for at most `timeout_s` seconds. Returns why a drain ended short of catching up:
    the reasons of the destinations left stuck (misconfigured), and the timeout if it struck
    first.

    The single-worker lock of a SQLite store is taken first: while another worker holds it,
    `SiemError` says so at once, before anything else is asked of the operator. Only then
    are `secrets` loaded (the key ring and the SSRF guard), and the API (`api`, given them)
    built. `started` is called with the worker's name once it is about to run.
    """
    with _single_worker(engine):
        keyring, egress = secrets()

        open_components = DestinationOpener(
            engine, settings=settings, keyring=keyring, egress=egress
        )
        if metrics_port is not None:
            start_http_server(metrics_port)
        worker = Worker(engine=engine, open_components=open_components, settings=worker_settings)
        server = None if api is None else _api_server(api(keyring, egress))
        tailer = SourceTailer(engine, keyring=keyring, egress=egress)
        if started is not None:
            started(worker.owner)
        return asyncio.run(_serve(worker, server, drain=drain, beside=tailer, timeout_s=timeout_s))


def serve_api(api: ApiServing) -> None:
    """Serve the HTTP API alone until SIGTERM or SIGINT."""
    asyncio.run(_serve(None, _api_server(api), drain=False))


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call `stop` on SIGTERM or SIGINT (Ctrl-C), in the running event loop."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


@contextlib.contextmanager
def _single_worker(engine: Engine) -> Iterator[None]:
    """Hold the lock beside a SQLite store file for the run (one worker at a time there)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock = single_worker_lock(Path(database).resolve())
    try:
        yield
    finally:
        lock.close()


def _api_server(api: ApiServing) -> uvicorn.Server:
    """A uvicorn server for the API that leaves signal handling to the process."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        api.app,
        host=api.host,
        port=api.port,
        log_level="info",
        server_header=False,
        lifespan="off",
    )
    return Server(config)


async def _serve(
    worker: Worker | None,
    server: uvicorn.Server | None,
    *,
    drain: bool,
    beside: SourceTailer | None = None,
    timeout_s: float | None = None,
) -> list[str]:
    """Run the worker, the sources it tails (`beside`) and the API server side by side;
    SIGTERM and SIGINT stop them all, and so does `timeout_s` when given."""
    ended_short: list[str] = []

    def stop() -> None:
        if beside is not None:
            beside.stop()
        if worker is not None:
            worker.stop()
        if server is not None:
            server.should_exit = True

    def time_out() -> None:
        if drain:
            ended_short.append(f"stopped after {timeout_s:g} s, before every destination caught up")
        stop()

    stop_on_signals(stop)
    if timeout_s is not None:
        asyncio.get_running_loop().call_later(timeout_s, time_out)
    # Store reads, file appends and fsyncs run on threads; a worker with many destinations
    # keeps more of them waiting at once than the default pool (cores + 4) would let run.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="xavyo-siem")
    )
    serving = None if server is None else asyncio.create_task(server.serve())
    tailing = None if beside is None else asyncio.create_task(beside.run())
    try:
        if worker is not None:
            return [*await worker.run(drain=drain), *ended_short]
        if serving is not None:
            await serving
        return ended_short
    finally:
        if beside is not None and tailing is not None:
            beside.stop()
            await tailing
        if server is not None and serving is not None:
            server.should_exit = True
            await serving


def single_worker_lock(database_path: Path) -> IO[str]:
    """Hold an exclusive lock beside a SQLite store; a second worker fails with a clear message."""
    lock_path = database_path.with_name(database_path.name + ".worker.lock")
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SiemError(
            f"another `xavyo-siem run` already works on {database_path}; SQLite supports one "
            "worker (use PostgreSQL to run several)"
        ) from None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
