"""File transport: appends each batch to a local file, one record per line, fsync per batch;
and the config of a file destination (`FileConfig`).

Used by batch export and the demo. A batch is written with one `write` on a file opened
with `O_APPEND` and then `fsync`ed, and only then reported `Delivered`. If the write or the
fsync fails, the file is truncated back to its size before the batch, so a failed batch
leaves no partial records behind and the resend does not duplicate them. The file is made
with mode 0600 (audit data); its directory must exist. One transport writes one file:
two writers appending to the same file would interleave batches and defeat the rollback.

Blocking file calls run in a worker thread, so the event loop never waits on the disk.
Errors classify by errno: a full or failing disk is `RetryLater`; a missing directory, a
permission or read-only error, or a path that is a directory is `Misconfigured`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from xavyo_siem.delivery.base import Delivered, DeliveryResult, Misconfigured, Record, RetryLater
from xavyo_siem.delivery.endpoints import split_url
from xavyo_siem.delivery.framing import encode_utf8
from xavyo_siem.delivery.option_values import BATCH_OPTIONS, OptionReader
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType

__all__ = ["FILE_OPTIONS", "FileConfig", "FileTransport"]

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
    if "\x00" in path or "/../" in path + "/" or any(ord(c) < 32 for c in path):
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


class FileTransport:
    """Appends records to the file `config.path`, one line per record."""

    def __init__(self, config: FileConfig) -> None:
        self.config = config
        self._fd: int | None = None
        self._lock = asyncio.Lock()

    # -- blocking parts, run in a worker thread --------------------------------------------

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        path = self.config.path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        existed = os.path.exists(path)
        fd = os.open(path, flags, _FILE_MODE)
        try:
            if not existed:  # make the new directory entry durable too
                dir_fd = os.open(os.path.dirname(path) or "/", os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def _append(self, payload: bytes) -> None:
        fd = self._open()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            try:  # take the partial batch back out, so the resend does not duplicate it
                os.ftruncate(fd, start)
            except OSError as exc:
                log.warning("could not roll back a failed batch in %s: %s", self.config.path, exc)
            self._close()
            raise

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
        payload = b"".join([encode_utf8(record.text) + b"\n" for record in records])
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, payload)
            except OSError as exc:
                return self._classify(exc)
        return Delivered()

    async def check(self) -> DeliveryResult:
        """Open (and if needed create) the file for appending."""
        async with self._lock:
            try:
                await asyncio.to_thread(self._open)
            except OSError as exc:
                return self._classify(exc)
        return Delivered()

    async def aclose(self) -> None:
        """Close the file (every delivered batch is already fsynced); never raises."""
        async with self._lock:
            self._close()
