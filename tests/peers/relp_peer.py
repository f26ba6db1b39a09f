"""A scripted RELP server for the misbehaviours rsyslog cannot be made to show.

`ScriptedRelpPeer(answer_open=..., answer_syslog=...)` listens on 127.0.0.1 in the test's
event loop and reads RELP frames with its own small reader (independent of the exporter's
parser). Each command it receives is recorded in `received` as (txnr, command, data); its
answers come from the two callables, which return the exact bytes to send, b"" to stay
silent, or None to drop the connection. Helpers build the usual answers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from types import TracebackType

__all__ = ["OPEN_OK", "ScriptedRelpPeer", "ok", "rsp"]

_HEADER = re.compile(rb"([0-9]{1,9}) ([a-z]{1,32}) ([0-9]{1,9})[ \n]")

OPEN_OK = b"200 OK\nrelp_version=0\nrelp_software=scripted,1\ncommands=syslog"


def rsp(txnr: int, data: bytes) -> bytes:
    """An rsp frame for `txnr` carrying `data`."""
    if not data:
        return b"%d rsp 0\n" % txnr
    return b"%d rsp %d %b\n" % (txnr, len(data), data)


def ok(txnr: int, _data: bytes) -> bytes:
    """Answer 200 OK."""
    return rsp(txnr, b"200 OK")


class ScriptedRelpPeer:
    """A RELP server whose answers are scripted per command (see the module docstring)."""

    def __init__(
        self,
        *,
        answer_open: Callable[[int, bytes], bytes | None] = lambda txnr, _: rsp(txnr, OPEN_OK),
        answer_syslog: Callable[[int, bytes], bytes | None] = ok,
    ) -> None:
        self.answer_open = answer_open
        self.answer_syslog = answer_syslog
        self.received: list[tuple[int, str, bytes]] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    def commands(self, command: str) -> list[bytes]:
        """The data of every `command` received, in order."""
        return [data for _, name, data in self.received if name == command]

    async def __aenter__(self) -> ScriptedRelpPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while match := _HEADER.match(buffer):
                    length = int(match.group(3))
                    start = match.end() if length else match.end() - 1
                    end = start + length
                    if len(buffer) <= end:
                        break
                    assert buffer[end : end + 1] == b"\n", buffer[:80]
                    txnr, command = int(match.group(1)), match.group(2).decode()
                    data = buffer[start:end]
                    buffer = buffer[end + 1 :]
                    self.received.append((txnr, command, data))
                    answer: bytes | None = b""
                    if command == "open":
                        answer = self.answer_open(txnr, data)
                    elif command == "syslog":
                        answer = self.answer_syslog(txnr, data)
                    elif command == "close":
                        writer.write(rsp(txnr, b"") + b"0 serverclose 0\n")
                        await writer.drain()
                        return
                    if answer is None:
                        return
                    writer.write(answer)
                    await writer.drain()
                    if b"serverclose" in answer:
                        return  # as imrelp does: the hint, then the close
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)
