"""The worker's own cost per delivery, without a store: thousands of file lanes in one
scheduler, fed as the change feed feeds them.

`Scheduler`, `Lane`, the JSON lines formatter and `FileTransport` (real files, each batch
fsynced) run as in `xavyo-siem run`; the store is replaced by one that writes nothing and
answers every progress flush at once (a flush every loop pass, as the worker's group commit
does when the store keeps up). So the figures are the worker's share of a delivery: the
scheduling, formatting, the append and its fsync, and the hand-offs between the event loop
and the threads. What the store adds (the feed's read, the progress transaction) is measured
by bench_tenants.py.

Two shapes:
- `steady`: rounds of one event for each of `--active` lanes of different tenants, the next
  round once the last was delivered (every event a batch of its own, as at 2,000 events/s
  over thousands of tenants);
- `backlog`: one page of `--backlog-events` events over `--active` tenants routed at once
  (batches of up to 1,000).

It reports CPU per delivery (the whole process, and the event loop's thread alone) and
deliveries per second. CPU time is what this measures best: the machine's other work
changes the wall clock far more than the CPU a delivery takes.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from xavyo_siem.delivery.file import FileConfig, FileTransport
from xavyo_siem.format import make_formatter
from xavyo_siem.model import (
    AuditEvent,
    DeliveryType,
    EventCategory,
    ExportFormat,
    Outcome,
    SiemDestination,
)
from xavyo_siem.pipeline.lane import Lane
from xavyo_siem.pipeline.loop import DestinationComponents
from xavyo_siem.pipeline.scheduler import Scheduler

from machine import describe_machine, python_speed


class _Store:
    """Takes every note and answers the next flush at once; reads nothing."""

    def __init__(self) -> None:
        self.noted: list[Lane] = []
        self.delivered = 0

    async def read_backlog(self, lane: Lane, *, after: Any, limit: int) -> None:
        return None

    async def read_replay(self, lane: Lane, *, limit: int) -> list[Any]:
        return []

    async def settle_replay(self, lane: Lane, *, delivered: Any, refused: Any) -> None:
        return None

    def note_delivered(self, lane: Lane, *, position: Any, delivered: int, **_: Any) -> None:
        self.noted.append(lane)
        self.delivered += delivered

    def note_failure(self, lane: Lane, *, reason: str, **_: Any) -> None:
        raise RuntimeError(f"{lane.destination.name}: {reason}")

    def note_losses(self, lane: Lane, **_: Any) -> None:
        return None

    def note_disabled(self, lane: Lane, *, reason: str) -> None:
        raise RuntimeError(reason)


def _event(tenant: uuid.UUID, n: int) -> AuditEvent:
    return AuditEvent(
        event_id=uuid.uuid4(),
        tenant_id=tenant,
        timestamp=datetime(2026, 12, 1, tzinfo=UTC) + timedelta(microseconds=n * 1013 + 1),
        event_type="USER_LOGIN",
        category=EventCategory.AUTHENTICATION,
        severity=3,
        outcome=Outcome.SUCCESS,
        source_ip="203.0.113.7",
        actor_email="alice@example.com",
        user_agent="Mozilla/5.0",
        session_id="s-1234567890",
        metadata={"geo": "FR", "mfa": "totp"},
    )


async def _run(args: argparse.Namespace, directory: Path) -> dict[str, float]:
    formatter = make_formatter(ExportFormat.JSON)
    store = _Store()
    scheduler = Scheduler(store=store, max_turns=256, max_behind=8)  # the worker's limits

    async def open_components(destination: SiemDestination) -> DestinationComponents:
        config = FileConfig(path=destination.endpoint.removeprefix("file://"))
        return DestinationComponents(FileTransport(config), formatter, 1000)

    tenants = [uuid.uuid4() for _ in range(args.lanes)]
    for index, tenant in enumerate(tenants):
        destination = SiemDestination(
            id=uuid.uuid4(),
            tenant_id=tenant,
            name=f"file-{index}",
            delivery_type=DeliveryType.FILE,
            format=ExportFormat.JSON,
            endpoint=f"file://{directory}/d{index}.jsonl",
        )
        lane = Lane(destination=destination, position=0, open_components=open_components)
        scheduler.add(lane, mark=None)
    active = tenants[: args.active]
    position = 0

    def page(per_tenant: int) -> dict[uuid.UUID, list[tuple[Any, AuditEvent]]]:
        nonlocal position
        out: dict[uuid.UUID, list[tuple[Any, AuditEvent]]] = {}
        for tenant in active:
            events = out[tenant] = []
            for _ in range(per_tenant):
                position += 1
                events.append((position, _event(tenant, position)))
        return out

    async def drive(expected: int) -> None:
        """The worker's loop, less the store: start due turns, answer flushes."""
        while store.delivered < expected:
            scheduler.changed.clear()
            if store.noted:
                noted, store.noted = store.noted, []
                scheduler.written(lane.id for lane in noted)
            scheduler.start_due()
            if store.delivered >= expected:
                break
            await scheduler.changed.wait()

    # One warm-up round opens every file (made once, as in a running worker).
    scheduler.route(page(1))
    await drive(args.active)
    store.delivered = 0
    if args.shape == "steady":
        pages = [page(1) for _ in range(args.rounds)]
    else:
        pages = [page(max(args.backlog_events // args.active, 1))]
    deliveries = sum(len(events) for p in pages for events in p.values())
    cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    done = 0
    for each in pages:
        scheduler.route(each)
        done += sum(len(events) for events in each.values())
        await drive(done)
    wall = time.perf_counter() - wall0
    cpu, main = time.process_time() - cpu0, time.thread_time() - main0
    for lane in scheduler.lanes.values():
        if lane.components is not None:
            await lane.components.transport.aclose()
    return {
        "deliveries": deliveries,
        "wall_s": wall,
        "cpu_us": cpu / deliveries * 1e6,
        "main_us": main / deliveries * 1e6,
        "rate": deliveries / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--shape", choices=("steady", "backlog"), default="steady")
    parser.add_argument("--lanes", type=int, default=2000, help="file destinations")
    parser.add_argument("--active", type=int, default=200, help="lanes given events")
    parser.add_argument("--rounds", type=int, default=50, help="steady: rounds")
    parser.add_argument("--backlog-events", type=int, default=50_000, help="backlog: events")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a file each lane keeps open
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}`")
    print(f"Machine: {describe_machine()}")
    print("| shape | run | deliveries | deliveries/s | CPU µs per delivery | of it, event loop |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for run in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="xavyo-bench-lanes-") as directory:
            got = asyncio.run(_run(args, Path(directory)))
        print(
            f"| {args.shape} | {run} | {got['deliveries']:,.0f} | {got['rate']:,.0f} |"
            f" {got['cpu_us']:.1f} | {got['main_us']:.1f} |"
        )
    print(f"yardstick at the end: {python_speed():.1f} M loop iterations/s")


if __name__ == "__main__":
    main()
