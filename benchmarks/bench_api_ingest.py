"""API ingest benchmark: audit events per second accepted over HTTP, batches of 1,000.

    .venv/bin/python benchmarks/bench_api_ingest.py [--events 100000] [--batch 1000]
        [--clients 1,4] [--notify on|off|both] [--pg-admin-url URL]

For SQLite and PostgreSQL: a fresh store, an admin token made with `xavyo-siem tokens
create`, and `xavyo-siem serve` (uvicorn, one process) on a free port. This process is the
client: it posts pre-serialised batches of sample events (`xavyo_siem.sample`) with httpx
over keep-alive connections, from 1 and from several concurrent connections, each run on
events not stored yet. A run counts only when every answer said `stored: 1000` and the
store holds every event afterwards. Prints a Markdown table and the machine.

`--notify off` serves with ingest's notification of the workers turned off (on PostgreSQL a
NOTIFY after each commit, coalesced to one per 20 ms), to measure what it costs; `both`
measures each, one after the other.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from xavyo_siem.crypto import new_key_text
from xavyo_siem.sample import generate_events
from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.tables import audit_events

from machine import describe_machine

DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Wait (up to 60 s) until `xavyo-siem serve` at `base` answers /healthz; exit with its
    log if it stops or never answers."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start:\n{log.read_text()}")
        time.sleep(0.1)


def batches(tenant: uuid.UUID, count: int, size: int, seed: int) -> list[bytes]:
    """`count` events of `tenant` as JSON request bodies of `size` events (no tenant_id:
    the path's tenant applies)."""
    bodies: list[bytes] = []
    chunk: list[dict[str, Any]] = []
    for event in generate_events(count, 1, seed=seed):
        data = event.to_dict()
        del data["tenant_id"]
        chunk.append(data)
        if len(chunk) == size:
            bodies.append(orjson.dumps({"events": chunk}))
            chunk = []
    if chunk:
        bodies.append(orjson.dumps({"events": chunk}))
    return bodies


def post_all(url: str, token: str, bodies: list[bytes], clients: int) -> tuple[float, int]:
    """Post every body over `clients` keep-alive connections; (seconds, events stored)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    stored = [0] * clients
    failures: list[str] = []

    def run(index: int) -> None:
        with httpx.Client(timeout=120) as client:
            for body in bodies[index::clients]:
                answer = client.post(url, content=body, headers=headers)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    return
                stored[index] += answer.json()["stored"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if failures:
        raise SystemExit(f"ingest failed: {failures[0]}")
    return seconds, sum(stored)


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "xavyo_siem", *args],
        env=env, capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.decode().strip()


# `xavyo-siem` with ingest's notification of the workers turned off (for `--notify off`).
_SERVE_WITHOUT_NOTIFY = (
    "import xavyo_siem.ingest as ingest; ingest.announce_new_events = lambda engine: None; "
    "from xavyo_siem.cli import main; main()"
)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def measure(
    backend: str,
    url: str,
    events: int,
    batch: int,
    client_counts: list[int],
    *,
    notify: bool = True,
) -> list[dict[str, Any]]:
    """Serve the API over a fresh store at `url` and time each client count."""
    engine = make_engine(url)
    upgrade(engine)
    tenant = uuid.uuid4()
    env = {
        **os.environ,
        "XAVYO_SIEM_DATABASE_URL": url,
        "XAVYO_SIEM_SECRET_KEY": new_key_text(),
        "XAVYO_SIEM_ENV": "production",
    }
    token = cli("tokens", "create", "--tenant", str(tenant), "--role", "admin", env=env)
    before = _count(engine)  # the audit trail's own event of the token's creation
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "serve.log"
        command = ["-m", "xavyo_siem"] if notify else ["-c", _SERVE_WITHOUT_NOTIFY]
        server = subprocess.Popen(
            [sys.executable, *command, "serve", "--port", str(port)],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=scratch,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, server, log)
            ingest = f"{base}/v1/tenants/{tenant}/events"
            post_all(ingest, token, batches(tenant, batch, batch, seed=999), 1)  # warm-up
            rows: list[dict[str, Any]] = []
            for number, clients in enumerate(client_counts):
                bodies = batches(tenant, events, batch, seed=number)
                seconds, stored = post_all(ingest, token, bodies, clients)
                rows.append(
                    {
                        "backend": backend,
                        "notify": "on" if notify else "off",
                        "clients": clients,
                        "events": stored,
                        "seconds": seconds,
                        "rate": stored / seconds,
                        "body_mb": sum(map(len, bodies)) / len(bodies) / 1e6,
                    }
                )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    total = _count(engine)
    engine.dispose()
    expected = before + batch + sum(row["events"] for row in rows)
    if total != expected or any(row["events"] != events for row in rows):
        raise SystemExit(f"{backend}: the store holds {total} events, expected {expected}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run")
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--clients", default="1,4", help="concurrent connections, per run")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument(
        "--notify",
        choices=["on", "off", "both"],
        default="on",
        help="ingest notifies the workers (on, as shipped), or not (off), or each in turn",
    )
    args = parser.parse_args()
    client_counts = [int(part) for part in args.clients.split(",")]
    notify_modes = {"on": [True], "off": [False], "both": [True, False]}[args.notify]
    rows: list[dict[str, Any]] = []
    for notify in notify_modes:
        with tempfile.TemporaryDirectory() as scratch:
            rows += measure(
                "SQLite",
                f"sqlite:///{scratch}/bench.db",
                args.events,
                args.batch,
                client_counts,
                notify=notify,
            )
    if not args.skip_postgresql:
        name = f"xavyo_siem_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(args.pg_admin_url).set(database=name)
            for notify in notify_modes:
                with admin.connect() as conn:  # a fresh store for each mode
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                rows += measure(
                    "PostgreSQL",
                    url.render_as_string(hide_password=False),
                    args.events,
                    args.batch,
                    client_counts,
                    notify=notify,
                )
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print(
        f"API ingest over HTTP: POST /v1/tenants/{{t}}/events, {args.batch:,} events per "
        "request, `xavyo-siem serve` (one uvicorn process), every event validated and "
        "stored idempotently\n"
    )
    print(
        "| store | notify | client connections | events | seconds | events/s accepted "
        "| MB per request |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['backend']} | {row['notify']} | {row['clients']} | {row['events']:,} "
            f"| {row['seconds']:.1f} "
            f"| {row['rate']:,.0f} | {row['body_mb']:.2f} |"
        )
    print(f"\nMachine: {describe_machine()}; {platform.system()} {platform.release()}.")


if __name__ == "__main__":
    main()
