"""Syslog framing, pure: RFC 6587 octet counting and LF framing, RFC 5426 datagram fitting.

No I/O and no state: bytes (or text) in, bytes out. The transports in `syslog.py` call these
per record; the tests run them on whole inputs, byte by byte and with trailing bytes.

* `frame_octet` (RFC 6587 §3.4.1): `MSG-LEN SP SYSLOG-MSG`, transparent.
* `frame_lf` (RFC 6587 §3.4.2): `SYSLOG-MSG LF`. A newline inside a record would end the
  frame early and forge a second record (log injection), so CR, LF and NUL (NUL is a
  trailer for some receivers) are rewritten to rsyslog's own escapes `#015`, `#012` and
  `#000`, the text rsyslog itself writes when it receives these characters. The record is
  sent, never refused, and can never split.
* `fit_datagram` (RFC 5426 §3.2 and RFC 5424 §6.1): one message per datagram; a message
  longer than the datagram limit keeps its HEADER and STRUCTURED-DATA intact and loses the
  end of MSG, cut on a code-point boundary. If HEADER and STRUCTURED-DATA alone do not fit,
  the record is refused with `FramingError` (the transport reports it as `Rejected`, so
  the event goes to dead letters with the reason): a message with a cut structured-data
  section would be invalid, and one without it would drop the audit fields.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "FramingError",
    "encode_utf8",
    "fit_datagram",
    "frame_lf",
    "frame_octet",
    "message_start",
]


class FramingError(ValueError):
    """A record cannot be framed as asked; the message says why (it names no content)."""


# RFC 6587 §3.4.2: the trailer, plus CR (CR LF trailers) and NUL (NUL trailers).
_LF_UNSAFE: Final = (b"\n", b"\r", b"\x00")
_LF_ESCAPES: Final = ((b"\r", b"#015"), (b"\n", b"#012"), (b"\x00", b"#000"))


def encode_utf8(text: str) -> bytes:
    """`text` as UTF-8, with any lone surrogate replaced by U+FFFD (an event is never refused
    because its text cannot be encoded)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text).encode()


def frame_octet(msg: bytes) -> bytes:
    """RFC 6587 octet-counted frame: `MSG-LEN SP SYSLOG-MSG` (MSG-LEN has no leading zero).

    Any octet may appear in `msg`. An empty message cannot be framed (MSG-LEN starts with a
    non-zero digit) and raises `FramingError`.
    """
    if not msg:
        raise FramingError("empty record: an octet-counted frame needs at least one octet")
    return b"%d %b" % (len(msg), msg)


def frame_lf(msg: bytes) -> bytes:
    """RFC 6587 non-transparent frame: `SYSLOG-MSG LF`, with CR, LF and NUL escaped.

    CR, LF and NUL become `#015`, `#012` and `#000`, so the only LF on the wire is the
    trailer. An empty message raises `FramingError` (receivers drop empty lines).
    """
    if not msg:
        raise FramingError("empty record: an empty line is not a syslog message")
    if b"\n" in msg or b"\r" in msg or b"\x00" in msg:
        for raw, escaped in _LF_ESCAPES:
            msg = msg.replace(raw, escaped)
    return msg + b"\n"


def _skip_token(data: bytes, pos: int) -> int:
    """Position of the space after the header token starting at `pos`, or -1."""
    return data.find(b" ", pos)


def message_start(data: bytes) -> tuple[int, int] | None:
    """Where STRUCTURED-DATA ends and MSG starts in an RFC 5424 message (RFC 5424 §6).

    Returns `(sd_end, msg_start)`: `data[:sd_end]` is HEADER SP STRUCTURED-DATA, and MSG is
    `data[msg_start:]` (`msg_start == sd_end` when there is no MSG, else `sd_end + 1`).
    Returns None when `data` is not an RFC 5424 message (no `<PRI>VERSION` and six
    space-separated header fields, or an unterminated SD-ELEMENT).

    SD-ELEMENTs are read with their escapes: inside a quoted PARAM-VALUE a backslash escapes
    the next octet, so `\\]` and `\\"` never end an element or a value.
    """
    if not data.startswith(b"<"):
        return None
    close = data.find(b">", 1, 5)
    if close < 2 or not data[1:close].isdigit():
        return None
    pos = close + 1
    # VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID: six tokens, each followed by SP.
    for _ in range(6):
        end = _skip_token(data, pos)
        if end <= pos:
            return None
        pos = end + 1
    size = len(data)
    if pos >= size:
        return None
    if data[pos] == 0x2D:  # "-" NILVALUE
        sd_end = pos + 1
    elif data[pos] == 0x5B:  # "[" first SD-ELEMENT
        while pos < size and data[pos] == 0x5B:
            pos += 1
            in_value = False
            while pos < size:
                byte = data[pos]
                if in_value:
                    if byte == 0x5C:  # backslash: the next octet is escaped
                        pos += 2
                        continue
                    if byte == 0x22:
                        in_value = False
                elif byte == 0x22:
                    in_value = True
                elif byte == 0x5D:  # "]" ends the SD-ELEMENT
                    break
                pos += 1
            if pos >= size:
                return None
            pos += 1
        sd_end = pos
    else:
        return None
    if sd_end == size:
        return sd_end, sd_end
    if data[sd_end] != 0x20:
        return None
    return sd_end, sd_end + 1


def _cut_utf8(data: bytes, start: int, limit: int) -> int:
    """The largest cut <= `limit` (and >= `start`) that does not split a UTF-8 sequence."""
    cut = limit
    while cut > start and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    # A dangling escape (`\` as the last MSG character: CEF `\=` or JSON `\"` cut in two)
    # would change the meaning of what follows it at the receiver; drop it as well.
    backslashes = 0
    while cut - backslashes - 1 >= start and data[cut - backslashes - 1] == 0x5C:
        backslashes += 1
    if backslashes % 2:
        cut -= 1
    return cut


def fit_datagram(message: str | bytes, max_bytes: int) -> tuple[bytes, bool]:
    """The datagram payload for `message` and whether it was truncated (RFC 5426 §3.2).

    A message that fits is returned whole. A longer one keeps HEADER and STRUCTURED-DATA
    intact and is cut inside MSG on a code-point boundary (never inside a UTF-8 sequence,
    never after a lone escaping backslash); if not even one MSG character fits, MSG and the
    space before it are dropped. Raises `FramingError` when HEADER and STRUCTURED-DATA alone
    exceed `max_bytes`. Text that is not RFC 5424 is cut anywhere on a code-point boundary.
    `message` may be text or its UTF-8 encoding.
    """
    data = message if isinstance(message, bytes) else encode_utf8(message)
    if not data:
        raise FramingError("empty record: a syslog datagram needs at least one octet")
    if len(data) <= max_bytes:
        return data, False
    bounds = message_start(data)
    if bounds is None:
        return data[: _cut_utf8(data, 0, max_bytes)], True
    sd_end, msg_start = bounds
    if sd_end > max_bytes:
        raise FramingError(
            f"header and structured data are {sd_end} bytes, more than max_datagram_bytes"
            f" ({max_bytes}); raise max_datagram_bytes or use syslog over TCP or TLS"
        )
    cut = _cut_utf8(data, msg_start, max_bytes) if max_bytes > msg_start else msg_start
    if cut <= msg_start:
        return data[:sd_end], True
    return data[:cut], True
