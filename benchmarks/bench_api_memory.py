"""API memory benchmark: the server's memory around one ingest request of hostile size.

    .venv/bin/python benchmarks/bench_api_memory.py [--keys 600000] [--requests 3]

A fresh SQLite store, an admin token made with `xavyo-siem tokens create`, and `xavyo-siem
serve` (uvicorn, one process) on a free port. After a warm-up batch of 500 ordinary events, this
process posts `--requests` times one event whose metadata holds `--keys` short entries
(the body just under the 10 MiB limit for the default), and reads the server's resident
memory (`VmRSS`) and its peak (`VmHWM`) from /proc before and after. Then it reads the
stored events back over the API and reports how many metadata entries one of them kept.
Prints a Markdown table and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import orjson

from bench_api_ingest import batches, cli, free_port, wait_until_serving
from xavyo_siem.crypto import new_key_text
from xavyo_siem.sample import generate_events
from xavyo_siem.store import make_engine, upgrade

from machine import describe_machine


def memory_mib(pid: int) -> tuple[float, float]:
    """(resident, peak resident) memory of process `pid`, in MiB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def hostile_body(keys: int) -> bytes:
    """One event whose metadata holds `keys` entries (`k<n>`: `v`)."""
    event = next(iter(generate_events(1, 1, seed=7))).to_dict()
    del event["tenant_id"]
    event["event_id"] = str(uuid.uuid4())
    event["metadata"] = {f"k{n}": "v" for n in range(keys)}
    return orjson.dumps({"events": [event]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=600_000, help="metadata entries per event")
    parser.add_argument("--requests", type=int, default=3, help="hostile requests to send")
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/bench.db"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        tenant = uuid.uuid4()
        env = {
            **os.environ,
            "XAVYO_SIEM_DATABASE_URL": url,
            "XAVYO_SIEM_SECRET_KEY": new_key_text(),
            "XAVYO_SIEM_ENV": "production",
        }
        token = cli("tokens", "create", "--tenant", str(tenant), "--role", "admin", env=env)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        port = free_port()
        log = Path(scratch) / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "xavyo_siem", "serve", "--port", str(port)],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=scratch,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, server, log)
            ingest = f"{base}/v1/tenants/{tenant}/events"
            with httpx.Client(timeout=300) as client:
                for body in batches(tenant, 500, 500, seed=1):
                    client.post(ingest, content=body, headers=headers).raise_for_status()
                rss, peak = memory_mib(server.pid)
                rows.append(("after 500 ordinary events", rss, peak, ""))
                body = hostile_body(args.keys)
                size = f"{len(body) / (1 << 20):.2f} MiB"
                for number in range(1, args.requests + 1):
                    answer = client.post(ingest, content=hostile_body(args.keys), headers=headers)
                    rss, peak = memory_mib(server.pid)
                    rows.append((f"after hostile request {number} ({size})", rss, peak,
                                 f"{answer.status_code} {answer.text[:60]}"))  # fmt: skip
                page = client.get(
                    f"{base}/v1/tenants/{tenant}/events",
                    params={"limit": 1000},
                    headers=headers,
                ).json()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    kept = max(len(event.get("metadata", {})) for event in page["events"])
    print(
        f"API memory: `xavyo-siem serve` (SQLite) receiving one event with {args.keys:,} "
        "metadata entries per request\n"
    )
    print("| moment | VmRSS MiB | VmHWM (peak) MiB | answer |")
    print("| --- | ---: | ---: | --- |")
    for moment, rss, peak, answer in rows:
        print(f"| {moment} | {rss:.0f} | {peak:.0f} | {answer} |")
    print(f"\nMost metadata entries kept by one stored event: {kept:,}.")
    print(f"\nMachine: {describe_machine()}; {platform.system()} {platform.release()}.")


if __name__ == "__main__":
    main()
