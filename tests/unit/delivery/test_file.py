"""The file transport: appends one line per record, durable per batch, no partial batches."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.file import DirectorySync, FileConfig, FileTransport
from xavyo_siem.delivery.file_io import Appends
from xavyo_siem.delivery.options import validate_destination


def records(count: int, tag: str = "r") -> list[Record]:
    return [Record(f"{tag}{i}", i, f'{{"event":"{tag}{i}","name":"zoë"}}') for i in range(count)]


def transport(path: Path) -> FileTransport:
    config = validate_destination("file", path.as_uri(), {}, development=False)
    assert isinstance(config, FileConfig)
    return FileTransport(config)


async def test_batches_are_appended_one_line_per_record(tmp_path: Path) -> None:
    """Each batch is appended after the previous one, one UTF-8 line per record."""
    path = tmp_path / "export.jsonl"
    sender = transport(path)
    assert await sender.check() == Delivered()
    assert await sender.send(records(3, "a")) == Delivered()
    assert await sender.send(records(2, "b")) == Delivered()
    await sender.aclose()
    assert path.read_text(encoding="utf-8").splitlines() == [
        r.text for r in records(3, "a") + records(2, "b")
    ]


async def test_existing_file_is_appended_to_and_new_file_is_private(tmp_path: Path) -> None:
    """An existing file keeps its content; a new file is created readable by its owner only."""
    existing = tmp_path / "old.log"
    existing.write_text("kept\n")
    sender = transport(existing)
    assert await sender.send(records(1)) == Delivered()
    await sender.aclose()
    assert existing.read_text(encoding="utf-8").splitlines() == ["kept", records(1)[0].text]
    fresh = tmp_path / "new.log"
    sender = transport(fresh)
    assert await sender.send(records(1)) == Delivered()
    await sender.aclose()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


async def test_missing_directory_is_misconfigured(tmp_path: Path) -> None:
    """A file in a directory that does not exist cannot be written: Misconfigured."""
    sender = transport(tmp_path / "absent" / "x.log")
    for result in (await sender.check(), await sender.send(records(1))):
        assert isinstance(result, Misconfigured)
        assert "No such file or directory" in result.reason


async def test_path_that_is_a_directory_is_misconfigured(tmp_path: Path) -> None:
    """A path naming a directory is Misconfigured, not retried."""
    (tmp_path / "dir.log").mkdir()
    result = await transport(tmp_path / "dir.log").send(records(1))
    assert isinstance(result, Misconfigured)


async def test_failed_batch_is_rolled_back(tmp_path: Path) -> None:
    """A batch that fails half-way (file size limit) is removed again: RetryLater, no partial."""
    path = tmp_path / "limited.log"
    sender = transport(path)
    assert await sender.send(records(2, "ok")) == Delivered()
    size = path.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))
    try:
        result = await sender.send(records(50, "big"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert isinstance(result, RetryLater)
    assert path.stat().st_size == size
    assert await sender.send(records(1, "after")) == Delivered()
    await sender.aclose()
    assert path.read_text(encoding="utf-8").splitlines() == [
        r.text for r in records(2, "ok") + records(1, "after")
    ]
    assert os.path.getsize(path) > size


def csv_transport(path: Path, header: str) -> FileTransport:
    config = validate_destination("file", path.as_uri(), {}, development=False)
    assert isinstance(config, FileConfig)
    return FileTransport(config, header=header)


async def test_csv_file_starts_with_its_header_once_and_ends_lines_in_crlf(tmp_path: Path) -> None:
    """A file with a header gets it when created, never again on append; every line ends CRLF."""
    path = tmp_path / "events.csv"
    rows = [Record(f"e{i}", i, f'"e{i}","zoë"') for i in range(4)]
    first = csv_transport(path, '"event_id","name"')
    assert await first.send(rows[:2]) == Delivered()
    await first.aclose()
    again = csv_transport(path, '"event_id","name"')  # a restart appends to the same file
    assert await again.send(rows[2:]) == Delivered()
    await again.aclose()
    data = path.read_bytes()
    assert data == ('"event_id","name"\r\n' + "".join(r.text + "\r\n" for r in rows)).encode()


async def test_csv_file_with_other_columns_is_set_aside_and_a_new_file_started(
    tmp_path: Path,
) -> None:
    """When the columns change, rows never go under the old header: the old file is renamed
    aside, kept whole, and a new file starts with the new header."""
    path = tmp_path / "events.csv"
    old = csv_transport(path, '"event_id"')
    assert await old.send([Record("e0", 0, '"e0"')]) == Delivered()
    await old.aclose()
    new = csv_transport(path, '"event_id","name"')
    assert await new.send([Record("e1", 1, '"e1","zoë"')]) == Delivered()
    await new.aclose()
    assert path.read_bytes() == '"event_id","name"\r\n"e1","zoë"\r\n'.encode()
    (aside,) = [p for p in tmp_path.iterdir() if p != path]
    assert aside.name.startswith("events.")
    assert aside.suffix == ".csv"
    assert aside.read_bytes() == b'"event_id"\r\n"e0"\r\n'


def test_files_made_together_in_one_directory_share_its_fsyncs() -> None:
    """Callers that arrive while a directory's fsync runs wait for one that begins after
    them, and that one fsync serves them all: eleven callers, two fsyncs."""
    log: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def fsync(path: str) -> None:
        log.append(f"begin {path}")
        if len(log) == 1:
            first_in.set()
            assert release.wait(30), "never released"
        log.append(f"end {path}")

    directories = DirectorySync(fsync=fsync)

    def call(name: str) -> None:
        directories.sync("/d")
        log.append(f"returned {name}")

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert first_in.wait(30), "the first fsync never began"
    later = [threading.Thread(target=call, args=(f"later{i}",)) for i in range(10)]
    for thread in later:
        thread.start()
    wait_for(lambda: directories.waiting("/d") == 11)
    release.set()
    for thread in [first, *later]:
        thread.join(30)
    assert [entry for entry in log if entry.startswith("begin")] == ["begin /d", "begin /d"]
    second_end = [i for i, entry in enumerate(log) if entry == "end /d"][1]
    returns = {entry: i for i, entry in enumerate(log) if entry.startswith("returned later")}
    assert len(returns) == 10
    assert all(i > second_end for i in returns.values())
    assert directories.waiting("/d") == 0


def test_a_failed_directory_fsync_is_not_taken_for_a_success() -> None:
    """When a directory's fsync fails, its caller gets the error and the callers waiting
    for it run their own fsync instead of returning on the failed one."""
    calls: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def fsync(path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            first_in.set()
            assert release.wait(30), "never released"
            raise OSError(errno.EIO, "I/O error")

    directories = DirectorySync(fsync=fsync)
    failures: list[OSError] = []

    def first_call() -> None:
        try:
            directories.sync("/d")
        except OSError as exc:
            failures.append(exc)

    first = threading.Thread(target=first_call)
    first.start()
    assert first_in.wait(30), "the first fsync never began"
    waiter = threading.Thread(target=directories.sync, args=("/d",))
    waiter.start()
    wait_for(lambda: directories.waiting("/d") == 2)
    release.set()
    first.join(30)
    waiter.join(30)
    assert [exc.errno for exc in failures] == [errno.EIO]
    assert calls == ["/d", "/d"]


def wait_for(condition: Callable[[], bool]) -> None:
    """Until `condition` holds; raises when it does not within 30 s."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.001)


async def test_a_new_files_directory_is_synced_before_its_first_batch_counts(
    tmp_path: Path,
) -> None:
    """Making a file fsyncs its directory (through the shared directory syncs) before the
    first batch is reported delivered; appending to a file that existed does not."""
    synced: list[str] = []
    directories = DirectorySync(fsync=synced.append)
    config = validate_destination("file", (tmp_path / "new.log").as_uri(), {}, development=False)
    assert isinstance(config, FileConfig)
    sender = FileTransport(config, directories=directories)
    assert await sender.send(records(1)) == Delivered()
    assert synced == [str(tmp_path)]
    await sender.aclose()
    again = FileTransport(config, directories=directories)
    assert await again.send(records(1)) == Delivered()
    await again.aclose()
    assert synced == [str(tmp_path)]


async def test_files_made_together_share_one_directory_fsync_even_on_one_thread(
    tmp_path: Path,
) -> None:
    """Files whose batches one append thread takes together are made before their
    directory is synced: one fsync of the directory serves them all, and each still waits
    for one that began after its file was made (a later file gets a new one)."""
    synced: list[str] = []
    directories = DirectorySync(fsync=synced.append)
    appends = Appends(threads=1)

    def sender(name: str) -> FileTransport:
        config = validate_destination("file", (tmp_path / name).as_uri(), {}, development=False)
        assert isinstance(config, FileConfig)
        return FileTransport(config, directories=directories, appends=appends)

    class _Gate:  # holds the thread until every batch is queued behind it
        entered = threading.Event()
        opened = threading.Event()

        def write(self, payload: bytes) -> int:
            self.entered.set()
            assert self.opened.wait(30)
            return 0

        def sync(self, start: int) -> None:
            pass

    gate = _Gate()
    held = asyncio.ensure_future(appends.append(gate, b""))
    assert await asyncio.to_thread(gate.entered.wait, 30)  # the thread holds the gate alone
    senders = [sender(f"f{i}.log") for i in range(20)]
    sending = asyncio.gather(*(s.send(records(1)) for s in senders))
    deadline = asyncio.get_running_loop().time() + 30
    while appends._jobs.qsize() < len(senders):  # every batch queued behind the gate (not
        assert asyncio.get_running_loop().time() < deadline  # a guess of how long it takes)
        await asyncio.sleep(0.01)
    gate.opened.set()
    await held
    assert await sending == [Delivered()] * 20
    assert synced == [str(tmp_path)]
    late = sender("late.log")
    assert await late.send(records(1)) == Delivered()
    assert synced == [str(tmp_path)] * 2
    for each in [*senders, late]:
        await each.aclose()


async def test_a_close_waits_for_an_append_its_caller_gave_up_on(tmp_path: Path) -> None:
    """When the caller of a send is cancelled while a thread is writing its batch, closing
    the transport waits until the thread let go of the file: its descriptor is never closed
    (and given to another file) under the write."""
    sender = transport(tmp_path / "slow.log")
    assert await sender.send(records(1, "first")) == Delivered()
    inside, release = threading.Event(), threading.Event()
    plain = FileTransport._write_all

    def slow_write_all(fd: int, payload: bytes) -> None:
        inside.set()
        assert release.wait(30)
        plain(fd, payload)

    sender._write_all = slow_write_all  # type: ignore[method-assign]
    sending = asyncio.ensure_future(sender.send(records(1, "second")))
    while not inside.is_set():
        await asyncio.sleep(0.01)
    sending.cancel()
    closing = asyncio.ensure_future(sender.aclose())
    await asyncio.sleep(0.1)
    assert not closing.done()  # waits for the write to let go of the file
    release.set()
    await asyncio.wait_for(closing, 30)
    lines = (tmp_path / "slow.log").read_text(encoding="utf-8").splitlines()
    assert lines[0] == records(1, "first")[0].text
    assert len(lines) <= 2  # the second batch written whole or not at all
