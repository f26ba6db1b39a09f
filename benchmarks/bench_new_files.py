"""How long the file system takes to make new files as file destinations make them.

    .venv/bin/python benchmarks/bench_new_files.py [--files 2000] [--threads 8]
        [--delete-first 10000] [--dir /tmp]

Makes `--files` new files in a fresh directory under `--dir`, each opened for appending,
written (15 KB, about fifty JSON lines) and fsynced, on `--threads` threads, then fsyncs the
directory: roughly what a worker's first deliveries to that many new file destinations ask
of the kernel (bench_tenants.py's backlog makes 2,000; the file transport also fsyncs the
directory once for the files made together, and writes up to 32 files before it fsyncs
them). Prints the wall time and the process's CPU time in the kernel and in user space.

With `--delete-first N`, first makes N empty files in that directory and deletes them, as
a previous benchmark run or a test run does in its own: on ext4 without a journal, making a
file then passes over each inode of its group freed in the last minute (in the last six
while the inode table's block is not yet written back), and the kernel time grows with N.
Every file made is deleted at the end (which itself counts for the next run).
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine import describe_machine

_PAYLOAD = b'{"event_type": "AUTH_LOGIN", "padding": "' + b"x" * 250 + b'"}\n'


def make_files(directory: Path, count: int, threads: int) -> None:
    """`count` files appended to and fsynced on `threads` threads, then the directory."""
    names: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(count):
        names.put(index)
    payload = _PAYLOAD * 50

    def work() -> None:
        while True:
            try:
                index = names.get_nowait()
            except queue.Empty:
                return
            fd = os.open(
                directory / f"d{index}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
            )
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)

    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(work) for _ in range(threads)]:
            done.result()  # an OSError (no space left, too many files) ends the run
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--delete-first", type=int, default=0, metavar="N")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()

    target = Path(tempfile.mkdtemp(prefix="bench-new-files-", dir=args.dir))
    try:
        # In the same directory, so that their inodes are in the group the new files take.
        doomed = [target / f"deleted-{index}" for index in range(args.delete_first)]
        for path in doomed:
            path.touch()
        for path in doomed:
            path.unlink()
        if doomed:
            time.sleep(1.5)  # the kernel counts an inode freed in an earlier second only
        before = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        make_files(target, args.files, args.threads)
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        shutil.rmtree(target)
    print(describe_machine())
    print(
        f"{args.files:,} new files on {args.threads} threads"
        f" ({args.delete_first:,} deleted just before): {wall:.2f} s,"
        f" system {after.ru_stime - before.ru_stime:.2f} s,"
        f" user {after.ru_utime - before.ru_utime:.2f} s"
    )


if __name__ == "__main__":
    main()
