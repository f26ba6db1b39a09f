"""The shared append threads: every job gets its own outcome, in chunks, written before synced."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest

from xavyo_siem.delivery.file_io import CHUNK, Appends


class _Target:
    """Records the order of writes and syncs; fails where told to."""

    def __init__(self, name: str, log: list[str], *, fail: str | None = None) -> None:
        self.name, self.log, self.fail = name, log, fail

    def write(self, payload: bytes) -> int:
        if self.fail == "write":
            raise OSError(errno.ENOSPC, "No space left on device")
        self.log.append(f"write {self.name} {payload.decode()}")
        return 7

    def sync(self, start: int) -> None:
        assert start == 7
        if self.fail == "sync":
            raise OSError(errno.EIO, "Input/output error")
        self.log.append(f"sync {self.name}")


async def test_each_append_gets_its_own_outcome() -> None:
    """A write or sync that fails fails only its own append; the others in the same chunk
    succeed, and every awaiting caller is answered."""
    log: list[str] = []
    appends = Appends(threads=1)
    targets = [_Target("ok1", log), _Target("w", log, fail="write"), _Target("s", log, fail="sync")]
    targets.append(_Target("ok2", log))
    outcomes = await asyncio.gather(
        *(appends.append(target, b"x") for target in targets), return_exceptions=True
    )
    assert [type(outcome) for outcome in outcomes] == [type(None), OSError, OSError, type(None)]
    assert [getattr(outcome, "errno", None) for outcome in outcomes] == [
        None,
        errno.ENOSPC,
        errno.EIO,
        None,
    ]
    assert [entry for entry in log if entry.startswith("sync")] == ["sync ok1", "sync ok2"]


async def test_a_chunk_is_written_before_it_is_synced() -> None:
    """Appends waiting together are taken as one chunk: every write of the chunk comes
    before its first sync (so one journal commit can carry them all)."""
    log: list[str] = []
    appends = Appends(threads=1)
    gate = threading.Event()

    class _Blocker(_Target):
        def write(self, payload: bytes) -> int:
            assert gate.wait(30)
            return super().write(payload)

    first = asyncio.ensure_future(appends.append(_Blocker("first", log), b"0"))
    await asyncio.sleep(0.05)  # the thread now waits inside the first job
    rest = [asyncio.ensure_future(appends.append(_Target(f"t{i}", log), b"1")) for i in range(5)]
    gate.set()
    await asyncio.gather(first, *rest)
    chunk = [entry for entry in log if " t" in entry]  # the five taken together
    assert [entry.split()[0] for entry in chunk] == ["write"] * 5 + ["sync"] * 5


async def test_more_appends_than_a_chunk_all_complete() -> None:
    """Appends beyond one chunk's size are taken by later chunks; none is left waiting."""
    log: list[str] = []
    appends = Appends(threads=2)
    count = CHUNK * 3 + 5
    await asyncio.wait_for(
        asyncio.gather(*(appends.append(_Target(f"n{i}", log), b"y") for i in range(count))), 30
    )
    assert sum(entry.startswith("sync") for entry in log) == count


async def test_an_unexpected_error_reaches_the_caller() -> None:
    """An exception that is not an OSError (a bug) is handed to the awaiting caller, and
    the thread goes on serving later appends."""
    log: list[str] = []
    appends = Appends(threads=1)

    class _Broken(_Target):
        def write(self, payload: bytes) -> int:
            raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await appends.append(_Broken("b", log), b"z")
    await asyncio.wait_for(appends.append(_Target("after", log), b"z"), 30)
    assert log == ["write after z", "sync after"]
