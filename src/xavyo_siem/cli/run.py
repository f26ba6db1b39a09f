"""Long-running commands: `run` (the delivery worker, optionally with the HTTP API in the
same process) and `serve` (the HTTP API alone). Both stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import start_http_server
from sqlalchemy import Engine

from xavyo_siem import destinations as manage
from xavyo_siem.cli.options import DbOption, load_settings, startup_secrets
from xavyo_siem.cli.output import err
from xavyo_siem.crypto import KeyRing
from xavyo_siem.egress import EgressGuard
from xavyo_siem.pipeline.export import PipelineSettings
from xavyo_siem.pipeline.retry import RetryPolicy
from xavyo_siem.pipeline.worker import Worker, WorkerSettings, single_worker_lock
from xavyo_siem.settings import DEFAULT_DATABASE_URL, Settings
from xavyo_siem.store import open_store

__all__ = ["api_server", "run", "serve", "stop_on_signals"]


DrainOption = Annotated[
    bool, typer.Option("--drain", help="Exit once every destination has caught up.")
]
MetricsPortOption = Annotated[
    int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
]
PollIntervalOption = Annotated[
    float, typer.Option("--poll-interval", min=0.01, help="Seconds between reads when idle.")
]
RetryBaseOption = Annotated[
    float, typer.Option("--retry-base", min=0.001, help="First retry delay ceiling, seconds.")
]
RetryCapOption = Annotated[
    float, typer.Option("--retry-cap", min=0.001, help="Longest retry delay, seconds.")
]
ProbeCapOption = Annotated[
    float,
    typer.Option(
        "--probe-cap", min=0.001, help="Longest wait between probes of a misconfigured one."
    ),
]
LeaseTtlOption = Annotated[
    float, typer.Option("--lease-ttl", min=1, help="Seconds a dead worker's leases last.")
]
ApiHostOption = Annotated[
    str, typer.Option("--api-host", help="With --api: the address to listen on.")
]
ApiPortOption = Annotated[
    int, typer.Option("--api-port", min=1, max=65535, help="With --api: the port.")
]
ApiExportDirOption = Annotated[
    Path, typer.Option("--api-export-dir", help="With --api: where file exports go.")
]


def run(
    drain: DrainOption = False,
    metrics_port: MetricsPortOption = None,
    poll_interval: PollIntervalOption = 0.5,
    retry_base: RetryBaseOption = 0.5,
    retry_cap: RetryCapOption = 60.0,
    probe_cap: ProbeCapOption = 300.0,
    lease_ttl: LeaseTtlOption = 30.0,
    api: Annotated[bool, typer.Option("--api", help="Also serve the HTTP API.")] = False,
    api_host: ApiHostOption = "127.0.0.1",
    api_port: ApiPortOption = 8080,
    api_export_dir: ApiExportDirOption = Path("exports"),
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Deliver every enabled destination's events, continuously (Ctrl-C or SIGTERM stops).

    Several workers may share a PostgreSQL store: each destination is leased to one worker
    at a time. On SQLite one worker runs at a time.

    With `--api` the HTTP API is served too, in the same process. In production a
    credential key is required (XAVYO_SIEM_SECRET_KEY or XAVYO_SIEM_SECRET_KEY_FILE).

    Example: `xavyo-siem run --metrics-port 9464`, or `xavyo-siem run --drain` from cron.
    """
    settings = load_settings()
    engine = open_store(db)
    with _single_worker(engine):
        keyring, egress = startup_secrets(settings)
        if metrics_port is not None:
            start_http_server(metrics_port)
        retry = RetryPolicy(base_s=retry_base, cap_s=retry_cap, misconfigured_cap_s=probe_cap)
        worker = Worker(
            engine=engine,
            open_components=lambda destination: manage.open_destination(
                engine, destination, settings=settings, keyring=keyring, egress=egress
            ),
            settings=WorkerSettings(
                lease_ttl_s=lease_ttl,
                scan_interval_s=min(2.0, max(poll_interval, 0.2)),
                pipeline=PipelineSettings(poll_interval_s=poll_interval, retry=retry),
            ),
        )
        server = None
        if api:
            server = api_server(
                settings, engine, keyring, egress, api_host, api_port, api_export_dir
            )
        _log_to_stderr()
        err.print(f"worker {worker.owner} started ({'draining' if drain else 'continuous'})")
        stuck = asyncio.run(_work(worker, drain=drain, server=server))
    if stuck:
        for reason in stuck:
            err.print(f"stuck: {reason}")
        raise typer.Exit(1)


def serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port.")] = 8080,
    export_dir: Annotated[
        Path, typer.Option("--export-dir", help="Where file exports asked over the API go.")
    ] = Path("exports"),
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Serve the HTTP API (OpenAPI document at /openapi.json) until Ctrl-C or SIGTERM.

    In production a credential key is required (XAVYO_SIEM_SECRET_KEY or
    XAVYO_SIEM_SECRET_KEY_FILE). Put a TLS-terminating proxy in front of it. Export jobs
    are carried out by `xavyo-siem run` workers (their files go under `--export-dir`,
    which the workers must be able to write).

    Example: `xavyo-siem serve --host 0.0.0.0 --port 8080`
    """
    settings = load_settings()
    keyring, egress = startup_secrets(settings)
    engine = open_store(db)
    server = api_server(settings, engine, keyring, egress, host, port, export_dir)
    _log_to_stderr()
    asyncio.run(_serve(server))


@contextmanager
def _single_worker(engine: Engine) -> Iterator[None]:
    """On a SQLite file, hold the lock that keeps a second worker out; elsewhere nothing."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock = single_worker_lock(Path(database).resolve())
    try:
        yield
    finally:
        lock.close()


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call `stop` on SIGTERM or SIGINT (Ctrl-C), in the running event loop."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


async def _work(worker: Worker, *, drain: bool, server: Any | None) -> list[str]:
    """Run the worker until it stops, with the API `server` (if any) served beside it; a
    signal stops both. The worker's stuck reasons (see `Worker.run`)."""

    def stop() -> None:
        worker.stop()
        if server is not None:
            server.should_exit = True

    stop_on_signals(stop)
    serving = None if server is None else asyncio.create_task(server.serve())
    try:
        return await worker.run(drain=drain)
    finally:
        if server is not None and serving is not None:
            server.should_exit = True
            await serving


async def _serve(server: Any) -> None:
    """Serve the API until a signal asks it to exit."""
    stop_on_signals(lambda: setattr(server, "should_exit", True))
    await server.serve()


def api_server(
    settings: Settings,
    engine: Engine,
    keyring: KeyRing,
    egress: EgressGuard,
    host: str,
    port: int,
    export_dir: Path,
) -> Any:
    """A uvicorn server for the API that leaves signal handling to the command."""
    import uvicorn

    from xavyo_siem.api import create_app

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    api = create_app(settings, engine, keyring=keyring, egress=egress, export_dir=export_dir)
    config = uvicorn.Config(
        api, host=host, port=port, log_level="info", server_header=False, lifespan="off"
    )
    return Server(config)
