"""Parse benchmark: CPU time per JSON line through `events_of_lines`, clean and hostile.

    .venv/bin/python benchmarks/bench_normalise.py [--events 20000] [--repeat 5]

The same sample events as `bench_store.py`, as clean lines and as `--hostile` lines (every
event carries one of its four sets of values ingest must normalise), parsed into events
in this process without a store. CPU time of this process (not wall time), best of
`--repeat`, so neighbours on a shared machine disturb it less; per hostile kind too.
`XAVYO_SIEM_PURE_PYTHON=1` measures the Python versions of the C helpers.
"""

from __future__ import annotations

import argparse
import time

import orjson

from bench_store import hostile_line

from machine import describe_machine


def per_line_us(lines: list[bytes], repeat: int) -> float:
    """The best CPU time per line, in microseconds, of parsing `lines` into events."""
    from xavyo_siem.ingest import events_of_lines

    best = float("inf")
    for _ in range(repeat):
        began = time.process_time()
        count = sum(1 for _ in events_of_lines(lines))
        best = min(best, time.process_time() - began)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from xavyo_siem.sample import generate_events
    from xavyo_siem.speedups import helpers_in_use

    dicts = [event.to_dict() for event in generate_events(args.events, 3, 1)]
    clean = [orjson.dumps(data) + b"\n" for data in dicts]
    hostile = [hostile_line(data, index) for index, data in enumerate(dicts)]
    print(f"{args.events:,} lines, best of {args.repeat}, {helpers_in_use()}; {describe_machine()}")
    print(f"clean: {per_line_us(clean, args.repeat):.1f} µs per line")
    print(f"hostile: {per_line_us(hostile, args.repeat):.1f} µs per line")
    for kind in range(4):
        print(
            f"  hostile kind {kind}: {per_line_us(hostile[kind::4], args.repeat):.1f} µs per line"
        )


if __name__ == "__main__":
    main()
