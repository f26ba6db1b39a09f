"""File transport: appends each batch to a local file, one record per line, fsync per batch;
and the config of a file destination (`FileConfig`).

Used by batch export and the demo. A batch is written with one `write` on a file opened
with `O_APPEND` and then `fsync`ed, and only then reported `Delivered`. If the write or the
fsync fails, the file is truncated back to its size before the batch, so a failed batch
leaves no partial records behind and the resend does not duplicate them. The file is made
with mode 0600 (audit data); its directory must exist. One transport writes one file:
two writers appending to the same file would interleave batches and defeat the rollback.

A file with a header (CSV) starts with the header row when it is created (never repeated on
append) and its lines end in CRLF. When an existing file begins with another header (the
columns changed), it is renamed aside (`NAME.<UTC time>.EXT`) and a new file is started,
so no row is ever appended under a header that does not describe it.

A new file's directory entry is made durable too (an fsync of the directory) before its first
batch is reported `Delivered`. Files made at once in one directory (a worker starting a
thousand file destinations) share those fsyncs: a caller waits for one fsync of the
directory that started after its file was made, and one fsync serves every caller that was
waiting when it started (`DirectorySync`, a group commit).

Blocking file calls run on threads, so the event loop never waits on the disk: the appends
and their fsyncs on a few threads that every file transport of the process shares, and
take in chunks (file_io.py).
Errors classify by errno: a full or failing disk is `RetryLater`; a missing directory, a
permission or read-only error, or a path that is a directory is `Misconfigured`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import unquote

from xavyo_siem.delivery.base import Delivered, DeliveryResult, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.endpoints import split_url
from xavyo_siem.delivery.file_io import Appends, DirectorySync
from xavyo_siem.delivery.framing import encode_utf8
from xavyo_siem.delivery.option_values import BATCH_OPTIONS, OptionReader
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["FILE_OPTIONS", "DirectorySync", "FileConfig", "FileTransport"]

FILE_OPTIONS: Final = frozenset(BATCH_OPTIONS)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileConfig:
    """A local file that batches are appended to (batch export, demo); the endpoint is
    `file:///absolute/path`, and the options are the batch options alone."""

    delivery_type: DeliveryType = DeliveryType.FILE
    path: str
    batch_max_events: int = 1000
    batch_max_bytes: int = 4 << 20
    start: str = "now"

    @classmethod
    def from_options(
        cls, endpoint: str, options: Mapping[str, object], *, development: bool
    ) -> FileConfig:
        """The config of a file destination, or InvalidDestination naming the field.

        `options` holds only names of `FILE_OPTIONS` (checked before); `development`
        changes nothing for a file.
        """
        return cls(path=_file_path(endpoint), **OptionReader(options, cls).batch())


def _file_path(endpoint: str) -> str:
    """The absolute path a `file://` endpoint names (percent escapes decoded)."""
    scheme, host, port, rest, _url = split_url(endpoint)
    if scheme != "file":
        raise InvalidDestination("endpoint", "a file destination needs a file:///absolute/path URL")
    if host not in ("", "localhost") or port is not None:
        raise InvalidDestination("endpoint", "a file:// URL names a local path: file:///path")
    if "?" in rest or "#" in rest:
        raise InvalidDestination("endpoint", "a file:// URL has no query or fragment")
    path = unquote(rest)
    if not path.startswith("/") or path.endswith("/") or len(path) < 2:
        raise InvalidDestination(
            "endpoint", f"must name a file by absolute path, got {path[:60]!r}"
        )
    controls = not path.isprintable() and any(ord(c) < 32 for c in path)
    if "\x00" in path or "/../" in path + "/" or controls:
        raise InvalidDestination("endpoint", "the path must not contain '..' or control characters")
    return path


log = logging.getLogger("xavyo_siem.delivery")

_MISCONFIGURED_ERRNOS: Final = frozenset(
    (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EINVAL,
    )
)
_FILE_MODE: Final = 0o600


# Every file transport of the process: files made together in one directory share fsyncs,
# and the appends share a few threads.
_DIRECTORIES: Final = DirectorySync()
_APPENDS: Final = Appends()


class FileTransport:
    """Appends records to the file `config.path`, one line per record.

    With `header` (the CSV header row, without its line end) the file starts with it and
    lines end in CRLF; otherwise lines end in LF.
    """

    def __init__(
        self,
        config: FileConfig,
        *,
        header: str | None = None,
        directories: DirectorySync = _DIRECTORIES,
        appends: Appends = _APPENDS,
    ) -> None:
        self.config = config
        self._directories = directories
        self._appends = appends
        self._fd: int | None = None
        self._new_entry: tuple[str, int] | None = None  # (directory, generation) to fsync
        self._lock = asyncio.Lock()  # one batch (or check, or close) at a time
        # Held by whichever thread uses the descriptor: a close, even of a transport whose
        # caller gave up on an append still running, waits for it to let go, so the
        # descriptor is never closed (and reused by another file) under a write.
        self._file = threading.Lock()
        self._line_end = b"\n" if header is None else b"\r\n"
        self._header = None if header is None else encode_utf8(header) + self._line_end

    # -- blocking parts, run on a thread (`Appends`, or asyncio's for `check`) --------------

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        path = self.config.path
        if self._header is not None:
            self._set_aside_if_other_header(path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        existed = os.path.exists(path)
        fd = os.open(path, flags, _FILE_MODE)
        if not existed:  # its directory entry is made durable before its first batch counts
            directory = os.path.dirname(path) or "/"
            self._new_entry = (directory, self._directories.generation(directory))
        try:
            if self._header is not None and os.fstat(fd).st_size == 0:
                self._write_all(fd, self._header)
                os.fsync(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def _sync_new_entry(self) -> None:
        """If this transport made its file, fsync the directory (once an fsync of it that
        began after the file was made succeeded, files made together share it)."""
        if self._new_entry is not None:
            directory, since = self._new_entry
            self._directories.sync(directory, since=since)
            self._new_entry = None  # kept until it succeeds, across reopens

    def _set_aside_if_other_header(self, path: str) -> None:
        """Rename an existing file whose first line is not our header, so a new one starts."""
        assert self._header is not None
        try:
            with open(path, "rb") as existing:
                first = existing.read(len(self._header))
        except FileNotFoundError:
            return
        if not first or first == self._header:
            return
        stem, ext = os.path.splitext(path)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = f"{stem}.{stamp}{ext}"
        os.rename(path, aside)
        log.warning(
            "%s starts with other columns than this destination writes: renamed to %s,"
            " starting a new file with the current header",
            path,
            aside,
        )

    @staticmethod
    def _write_all(fd: int, payload: bytes) -> None:
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def write(self, payload: bytes) -> int:
        """Append `payload`, not durable yet (`AppendTarget`); the file's size before it."""
        with self._file:
            fd = self._open()
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                self._write_all(fd, payload)
            except OSError:
                self._roll_back(fd, start)
                raise
            return start

    def sync(self, start: int) -> None:
        """fsync what was appended since `start` (`AppendTarget`); on failure take it out."""
        with self._file:
            fd = self._fd
            if fd is None:  # closed after the write (the worker let the destination go)
                raise OSError(errno.EBADF, "the file was closed before its batch was synced")
            try:
                self._sync_new_entry()
                os.fsync(fd)
            except OSError:
                self._roll_back(fd, start)
                raise

    def _open_held(self) -> None:
        with self._file:
            self._open()
            self._sync_new_entry()

    def _close_held(self) -> None:
        with self._file:
            self._close()

    def _roll_back(self, fd: int, start: int) -> None:
        """Take a failed batch back out, so the resend does not duplicate it; the file is
        opened again for the next batch."""
        try:
            os.ftruncate(fd, start)
        except OSError as exc:
            log.warning("could not roll back a failed batch in %s: %s", self.config.path, exc)
        self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                log.warning("closing %s failed: %s", self.config.path, exc)

    def _classify(self, exc: OSError) -> RetryLater | Misconfigured:
        detail = exc.strerror or str(exc)
        if exc.errno in _MISCONFIGURED_ERRNOS:
            return Misconfigured(f"file {self.config.path}: {detail}")
        return RetryLater(f"file {self.config.path}: {detail}")

    # -- the Transport interface -----------------------------------------------------------

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Append `records` as lines, fsync, and report `Delivered` once they are durable."""
        if not records:
            return Delivered()
        end = self._line_end
        payload = encode_utf8(end.decode().join([record.text for record in records])) + end
        async with self._lock:
            try:
                await self._appends.append(self, payload)
            except OSError as exc:
                return self._classify(exc)
        return Delivered()

    async def check(self) -> DeliveryResult:
        """Open (and if needed create) the file for appending."""
        async with self._lock:
            try:
                await asyncio.to_thread(self._open_held)
            except OSError as exc:
                return self._classify(exc)
        return Delivered()

    async def aclose(self) -> None:
        """Close the file (every delivered batch is already fsynced); never raises."""
        async with self._lock:
            await asyncio.to_thread(self._close_held)
