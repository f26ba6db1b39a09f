"""Long-running commands: `run` (the delivery worker, optionally with the HTTP API in the
same process) and `serve` (the HTTP API alone). Both stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from xavyo_siem.cli.logs import LogFormat, LogLevel, configure_logging
from xavyo_siem.cli.options import DbOption, load_settings, startup_secrets
from xavyo_siem.cli.output import err
from xavyo_siem.cli.watch import watching
from xavyo_siem.crypto import KeyRing
from xavyo_siem.egress import EgressGuard
from xavyo_siem.pipeline import PipelineSettings, RetryPolicy
from xavyo_siem.runtime.hosting import ApiServing, run_worker, serve_api
from xavyo_siem.runtime.worker_settings import WorkerSettings
from xavyo_siem.settings import DEFAULT_DATABASE_URL, Settings
from xavyo_siem.store import open_store
from xavyo_siem.store.destinations import enabled_destination_ids

__all__ = ["run", "serve"]


DrainOption = Annotated[
    bool, typer.Option("--drain", help="Exit once every destination has caught up.")
]
MetricsPortOption = Annotated[
    int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
]
PollIntervalOption = Annotated[
    float,
    typer.Option(
        "--poll-interval",
        min=0.01,
        help="Seconds between reads of new events when idle on SQLite; PostgreSQL is woken "
        "by ingest and reads every ten times this long as a fallback.",
    ),
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
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.001,
        help="Stop after this many seconds; with --drain, exit 1 if not caught up by then.",
    ),
]
LogFormatOption = Annotated[
    LogFormat, typer.Option("--log-format", help="Log lines as text or as JSON objects.")
]
LogLevelOption = Annotated[
    LogLevel, typer.Option("--log-level", help="The least severe messages logged.")
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
    timeout: TimeoutOption = None,
    log_format: LogFormatOption = LogFormat.TEXT,
    log_level: LogLevelOption = LogLevel.INFO,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Deliver every enabled destination's events, continuously (Ctrl-C or SIGTERM stops).

    Several workers may share a PostgreSQL store: each destination is leased to one worker
    at a time. On SQLite one worker runs at a time. Workers also run queued export jobs,
    and about once an hour remove the finished ones older than XAVYO_SIEM_EXPORT_RETENTION
    (default 7d) with their files.

    With `--api` the HTTP API is served too, in the same process. In production a
    credential key is required (XAVYO_SIEM_SECRET_KEY or XAVYO_SIEM_SECRET_KEY_FILE).

    On a terminal a status line shows what is delivered, how fast, what waits and what
    fails; a summary is printed at exit.

    Example: `xavyo-siem run --metrics-port 9464`, or `xavyo-siem run --drain --timeout 600`
    from cron.
    """
    settings = load_settings()
    engine = open_store(db)
    configure_logging(log_format, log_level)
    mode = "draining" if drain else "continuous"
    if not _enabled_destinations(engine):
        err.print(
            "no enabled destinations yet: the worker waits for one "
            "(add one with `xavyo-siem destination add`)"
        )
    worker_settings = WorkerSettings(
        lease_ttl_s=lease_ttl,
        scan_interval_s=lease_ttl / 3,
        listen_poll_s=poll_interval * 10,
        export_retention_s=settings.export_retention.total_seconds(),
        pipeline=PipelineSettings(
            poll_interval_s=poll_interval,
            retry=RetryPolicy(base_s=retry_base, cap_s=retry_cap, misconfigured_cap_s=probe_cap),
        ),
    )
    serving = (
        partial(_api, settings, engine, host=api_host, port=api_port, export_dir=api_export_dir)
        if api
        else None
    )
    with watching():
        stuck = run_worker(
            engine=engine,
            settings=settings,
            secrets=lambda: startup_secrets(settings),
            worker_settings=worker_settings,
            drain=drain,
            api=serving,
            metrics_port=metrics_port,
            started=lambda owner: err.print(f"worker {owner} started ({mode})"),
            timeout_s=timeout,
        )
    for reason in stuck:
        err.print(f"not caught up: {reason}", markup=False)
    if stuck:
        raise typer.Exit(1)


def serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port.")] = 8080,
    export_dir: Annotated[
        Path, typer.Option("--export-dir", help="Where file exports asked over the API go.")
    ] = Path("exports"),
    log_format: LogFormatOption = LogFormat.TEXT,
    log_level: LogLevelOption = LogLevel.INFO,
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
    configure_logging(log_format, log_level)
    serve_api(_api(settings, engine, keyring, egress, host=host, port=port, export_dir=export_dir))


def _enabled_destinations(engine: Engine) -> int:
    """How many destinations are enabled, over every tenant."""
    with engine.connect() as conn:
        return len(enabled_destination_ids(conn))


def _api(
    settings: Settings,
    engine: Engine,
    keyring: KeyRing,
    egress: EgressGuard,
    *,
    host: str,
    port: int,
    export_dir: Path,
) -> ApiServing:
    """The HTTP API application and the address to serve it on."""
    from xavyo_siem.api import create_app

    app = create_app(settings, engine, keyring=keyring, egress=egress, export_dir=export_dir)
    return ApiServing(app, host, port)
