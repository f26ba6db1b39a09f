"""RELP, the client side, sans I/O: frames, the incremental frame parser and the session.

No sockets and no clock: bytes in, frames and events out, bytes to write back (h11's shape).
The transport (`relp.py`) owns the connection and the deadlines.

The frame (librelp's grammar; docs/delivery.md has the session and what an answer means):

    RELP-FRAME = TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
    TXNR       = 1*9DIGIT     ; 0 only for serverclose hints
    COMMAND    = 1*32ALPHA    ; open | syslog | close | rsp | serverclose
    DATALEN    = 1*9DIGIT     ; octets of DATA
    TRAILER    = LF

* `encode_frame` writes one frame; DATA is opaque octets (an LF inside it is data: only
  DATALEN delimits it, so no message can forge a second frame).
* `FrameParser.feed` reads frames from a stream in chunks of any size. It refuses, as
  librelp does, a 10th digit in TXNR or DATALEN, a command byte that is not a letter or a
  33rd letter, and a byte after DATA that is not LF; it also refuses DATA longer than its
  `max_data_bytes` (memory stays bounded whatever the peer sends). A refusal raises
  `RelpProtocolError`, and the parser stays failed: whoever detects an error closes.
* `RelpSession` is one client session on one connection: `open` (txnr 1, the offers), then
  `syslog` commands with txnr 2, 3, ... (at most `window` unanswered), `close`. `receive`
  turns the peer's bytes into events: `Opened`, `Acknowledged` (200 on a syslog command),
  `Refused` (any other answer, or an open whose `commands` lacks syslog), `CloseAnswered`
  and `ServerClosed`. Answers must come in command order, each with its command's txnr.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final, NamedTuple

__all__ = [
    "MAX_TXNR",
    "REOPEN_AFTER_TXNR",
    "Acknowledged",
    "CloseAnswered",
    "Frame",
    "FrameParser",
    "Opened",
    "Refused",
    "RelpEvent",
    "RelpProtocolError",
    "RelpSession",
    "ServerClosed",
    "SessionState",
    "encode_frame",
    "parse_offers",
    "parse_rsp",
]

MAX_TXNR: Final = 999_999_999  # nine digits
MAX_DATALEN: Final = 999_999_999
# A session is closed and a new one opened once its txnr passes this: long before the nine
# digits run out (librelp's own wrap-around would produce a 10-digit txnr).
REOPEN_AFTER_TXNR: Final = 900_000_000
MAX_COMMAND_LETTERS: Final = 32

_HEADER: Final = re.compile(rb"([0-9]{1,9}) ([A-Za-z]{1,32}) ([0-9]{1,9})([ \n])")
# What a header that is only incomplete (not yet wrong) looks like.
_HEADER_PREFIX: Final = re.compile(rb"[0-9]{0,9}(?: (?:[A-Za-z]{0,32}(?: [0-9]{0,9})?)?)?")
_MAX_HEADER: Final = 9 + 1 + MAX_COMMAND_LETTERS + 1 + 9 + 1
_SHOWN: Final = 40


class RelpProtocolError(ValueError):
    """The peer broke the RELP grammar or the session rules; the message says how."""


class Frame(NamedTuple):
    """One RELP frame: transaction number, command, and its data (opaque octets)."""

    txnr: int
    command: str
    data: bytes = b""


def encode_frame(txnr: int, command: str, data: bytes = b"") -> bytes:
    """The octets of one frame; DATALEN 0 is written without the SP before DATA.

    Raises `ValueError` for a txnr outside 0..999,999,999, a command that is not 1 to 32
    ASCII letters, or more than 999,999,999 octets of data (our own misuse, never the peer's).
    """
    if not 0 <= txnr <= MAX_TXNR:
        raise ValueError(f"RELP txnr must be 0 to {MAX_TXNR}, got {txnr}")
    if not (0 < len(command) <= MAX_COMMAND_LETTERS and command.isascii() and command.isalpha()):
        raise ValueError(f"RELP command must be 1 to 32 ASCII letters, got {command[:40]!r}")
    if len(data) > MAX_DATALEN:
        raise ValueError(f"RELP data must be at most {MAX_DATALEN} octets, got {len(data)}")
    if not data:
        return b"%d %s 0\n" % (txnr, command.encode())
    return b"%d %s %d %b\n" % (txnr, command.encode(), len(data), data)


class FrameParser:
    """Frames from a byte stream fed in chunks of any size (see the module docstring).

    `max_data_bytes` bounds DATA (librelp's client accepts answers up to 128 KiB).
    """

    def __init__(self, max_data_bytes: int = 128 * 1024) -> None:
        self.max_data_bytes = max_data_bytes
        self._buffer = bytearray()
        self._error: RelpProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Octets received and not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by `data`, in order; raises `RelpProtocolError` on a
        grammar error (and again on every later call)."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        frames: list[Frame] = []
        buffer = self._buffer
        pos = 0
        try:
            while True:
                frame, pos = self._next(buffer, pos)
                if frame is None:
                    break
                frames.append(frame)
        except RelpProtocolError as exc:
            self._error = exc
            raise
        finally:
            del buffer[:pos]
        return frames

    def _next(self, buffer: bytearray, pos: int) -> tuple[Frame | None, int]:
        """The frame starting at `pos` and the position after it, or (None, pos) if the
        buffer ends before the frame does."""
        header = _HEADER.match(buffer, pos, pos + _MAX_HEADER)
        if header is None:
            _refuse_header(buffer, pos)
            return None, pos
        txnr_s, command_s, datalen_s, after = header.groups()
        datalen = int(datalen_s)
        command = command_s.decode("ascii")
        txnr = int(txnr_s)
        if after == b"\n":  # no SP: no data
            if datalen:
                raise RelpProtocolError(
                    f"frame {txnr} {command}: DATALEN is {datalen} but LF follows it"
                )
            return Frame(txnr, command), header.end()
        if datalen > self.max_data_bytes:
            raise RelpProtocolError(
                f"frame {txnr} {command}: {datalen} octets of data, more than the"
                f" {self.max_data_bytes} accepted"
            )
        start = header.end()
        end = start + datalen
        if len(buffer) <= end:
            return None, pos
        if buffer[end] != 0x0A:
            raise RelpProtocolError(
                f"frame {txnr} {command}: the octet after its {datalen} octets of data is"
                f" {bytes(buffer[end : end + 1])!r}, not the LF trailer"
            )
        return Frame(txnr, command, bytes(buffer[start:end])), end + 1


def _refuse_header(buffer: bytearray, pos: int) -> None:
    """Raise `RelpProtocolError` unless `buffer[pos:]` is the start of a valid header."""
    rest = bytes(buffer[pos : pos + _MAX_HEADER])
    prefix = _HEADER_PREFIX.match(rest)
    assert prefix is not None  # the pattern matches the empty string
    if prefix.end() == len(rest) and len(rest) < _MAX_HEADER:
        return  # incomplete, not wrong
    shown = rest[:_SHOWN]
    fields = rest.split(b" ", 3)
    if not fields[0] or not fields[0].isdigit():
        what = "TXNR must be 1 to 9 digits"
    elif len(fields[0]) > 9 and fields[0][:10].isdigit():
        what = "TXNR has more than 9 digits"
    elif len(fields) < 2 or not fields[1][:33].isalpha() or len(fields[1]) == 0:
        what = "COMMAND must be 1 to 32 letters"
    elif len(fields[1]) > MAX_COMMAND_LETTERS:
        what = "COMMAND has more than 32 letters"
    else:
        what = "DATALEN must be 1 to 9 digits followed by SP or LF"
    raise RelpProtocolError(f"not a RELP frame: {what}; got {shown!r}")


def parse_rsp(data: bytes) -> tuple[int, str, bytes]:
    """`rsp` DATA: (code, text, what follows the first LF); `3DIGIT SP text [LF data]`."""
    head, _, rest = data.partition(b"\n")
    if len(head) < 3 or not head[:3].isdigit() or (len(head) > 3 and head[3:4] != b" "):
        raise RelpProtocolError(f"rsp data must start with a 3-digit code, got {head[:_SHOWN]!r}")
    return int(head[:3]), head[4:].decode("utf-8", errors="replace"), rest


def parse_offers(data: bytes) -> dict[str, tuple[str, ...]]:
    """Offers (`name=value[,value...]`, one per line) as a mapping of name to values."""
    offers: dict[str, tuple[str, ...]] = {}
    for line in data.decode("utf-8", errors="replace").split("\n"):
        if not line:
            continue
        name, _, values = line.partition("=")
        offers[name] = tuple(values.split(",")) if values else ()
    return offers


# -- the session ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """The peer accepted `open`; `offers` are its answer (it offers the syslog command)."""

    offers: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The peer answered `200` to the syslog command `txnr`, which carried record `index`."""

    txnr: int
    index: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The peer did not accept command `command` (`index`: the record of a syslog command).

    `reason` is the peer's answer (`500 command disabled`) or, for an open whose offers lack
    syslog, what was missing.
    """

    txnr: int
    command: str
    index: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class CloseAnswered:
    """The peer answered our `close` (with an empty rsp, as imrelp does, or 200)."""


@dataclass(frozen=True, slots=True)
class ServerClosed:
    """The peer announced it drops the session (`serverclose`); nothing unanswered will be."""


RelpEvent = Opened | Acknowledged | Refused | CloseAnswered | ServerClosed


class SessionState(Enum):
    """Where a session is: IDLE -> OPENING -> OPEN -> CLOSING -> CLOSED."""

    IDLE = "idle"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class RelpSession:
    """One RELP client session on one connection (see the module docstring).

    `software` is our `relp_software` offer. `window` caps unanswered syslog commands.
    `unanswered` maps each unanswered command's txnr to its record index (None for open and
    close), in command order.
    """

    def __init__(
        self,
        *,
        software: str,
        window: int = 128,
        max_answer_bytes: int = 128 * 1024,
        reopen_after_txnr: int = REOPEN_AFTER_TXNR,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.software = software
        self.window = window
        self.reopen_after_txnr = reopen_after_txnr
        self.state = SessionState.IDLE
        self.parser = FrameParser(max_answer_bytes)
        self.unanswered: OrderedDict[int, int | None] = OrderedDict()
        self._commands: dict[int, str] = {}
        self._next_txnr = 1

    @property
    def can_send(self) -> bool:
        """Whether a syslog command may be sent now (open, and the window not full)."""
        return self.state is SessionState.OPEN and self.in_flight < self.window

    @property
    def in_flight(self) -> int:
        """Unanswered commands."""
        return len(self.unanswered)

    @property
    def ended(self) -> bool:
        """Whether the session is over (serverclose received, or open refused)."""
        return self.state is SessionState.CLOSED

    @property
    def worn_out(self) -> bool:
        """Whether the session should be closed and a new one opened (txnr nearly spent)."""
        return self._next_txnr > self.reopen_after_txnr

    def _command(self, command: str, data: bytes, index: int | None) -> bytes:
        txnr = self._next_txnr
        if txnr > MAX_TXNR:
            raise ValueError("the session's transaction numbers are spent; open a new one")
        frame = encode_frame(txnr, command, data)
        self._next_txnr = txnr + 1
        self.unanswered[txnr] = index
        self._commands[txnr] = command
        return frame

    def open(self) -> bytes:
        """The `open` frame (txnr 1) with our offers."""
        if self.state is not SessionState.IDLE:
            raise ValueError(f"open on a {self.state.value} session")
        self.state = SessionState.OPENING
        offers = f"relp_version=0\nrelp_software={self.software}\ncommands=syslog"
        return self._command("open", offers.encode(), None)

    def syslog(self, index: int, message: bytes) -> bytes:
        """The `syslog` frame carrying record `index`; only when `can_send`."""
        if not self.can_send:
            raise ValueError(
                f"syslog on a {self.state.value} session with {self.in_flight} unanswered"
            )
        return self._command("syslog", message, index)

    def close(self) -> bytes:
        """The `close` frame; the session then waits for its answer and the server's close."""
        if self.state is not SessionState.OPEN:
            raise ValueError(f"close on a {self.state.value} session")
        self.state = SessionState.CLOSING
        return self._command("close", b"", None)

    def receive(self, data: bytes) -> list[RelpEvent]:
        """The events in the peer's `data`; raises `RelpProtocolError` when the peer breaks
        the grammar or the session rules (the connection must then be closed). Once the
        session is over (serverclose, a refused open), frames after it are ignored."""
        events: list[RelpEvent] = []
        for frame in self.parser.feed(data):
            if self.state is SessionState.CLOSED:
                break  # the session is over; what follows is not read (the peer closes)
            if frame.command == "serverclose":
                self.state = SessionState.CLOSED
                events.append(ServerClosed())
            elif frame.command == "rsp":
                events.append(self._answer(frame))
            else:
                raise RelpProtocolError(
                    f"unexpected command {frame.command[:_SHOWN]!r} from the server"
                    " (a server sends only rsp and serverclose)"
                )
        return events

    def _answer(self, frame: Frame) -> RelpEvent:
        if not self.unanswered:
            raise RelpProtocolError(f"rsp {frame.txnr} answers no command (none is unanswered)")
        expected, index = next(iter(self.unanswered.items()))
        if frame.txnr != expected:
            raise RelpProtocolError(
                f"rsp {frame.txnr} out of order: the oldest unanswered command is {expected}"
            )
        del self.unanswered[expected]
        command = self._commands.pop(expected)
        if command == "close" and not frame.data:
            return CloseAnswered()  # imrelp answers close with an empty rsp
        code, text, rest = parse_rsp(frame.data)
        if code != 200:
            if command == "open":
                self.state = SessionState.CLOSED
            return Refused(expected, command, index, f"{code} {text}".strip())
        if command == "syslog":
            assert index is not None
            return Acknowledged(expected, index)
        if command == "close":
            return CloseAnswered()
        offers = parse_offers(rest)
        if "syslog" not in offers.get("commands", ()):
            self.state = SessionState.CLOSED
            offered = ",".join(offers.get("commands", ())) or "none"
            return Refused(
                expected,
                command,
                None,
                f"the server does not offer the syslog command (commands: {offered[:_SHOWN]})",
            )
        self.state = SessionState.OPEN
        return Opened(offers)
