"""Syslog framing (RFC 6587, RFC 5426): octet counting, LF framing and datagram fitting.

Frames are read back by a small independent receiver written here, fed the whole stream,
one byte at a time, and with a trailing partial frame (h11's `tr` pattern).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem.delivery.framing import (
    FramingError,
    encode_utf8,
    fit_datagram,
    frame_lf,
    frame_octet,
    message_start,
)

HEADER = "<110>1 2024-05-01T12:34:56.789012Z idp.example.com xavyo-siem 42 USER_LOGIN "
SD = '[audit@32473 event_id="e1" reason="a \\"quoted\\" \\] bracket \\\\ end"][meta x="1"]'


class OctetReceiver:
    """An RFC 6587 §3.4.1 receiver: MSG-LEN SP SYSLOG-MSG, any octet in the message."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out = []
        while True:
            match = re.match(rb"([1-9][0-9]*) ", self.buffer)
            if match is None:
                assert re.fullmatch(rb"[1-9][0-9]*", self.buffer) or not self.buffer
                return out
            start = match.end()
            length = int(match.group(1))
            if len(self.buffer) < start + length:
                return out
            out.append(self.buffer[start : start + length])
            self.buffer = self.buffer[start + length :]


class LfReceiver:
    """An RFC 6587 §3.4.2 receiver: every LF ends a message (CR LF and NUL are not trailers)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        *messages, self.buffer = self.buffer.split(b"\n")
        return messages


def receive(receiver: OctetReceiver | LfReceiver, chunks: Iterable[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += receiver.feed(chunk)
    return out


def byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


MESSAGES = [
    f"{HEADER}{SD} plain".encode(),
    f"{HEADER}- multi\nline\r\nwith NUL\x00 inside".encode(),
    "<14>1 - - - - - - \ufeffnon-ASCII: é ü 漢字 🙂".encode(),
    b"x",
    b"9 looks like a frame header",
    b"<13>1 - - - - - - " + b"A" * 70_000,
]


@pytest.mark.parametrize("feed", [lambda d: [d], byte_at_a_time], ids=["whole", "bytewise"])
def test_octet_frames_read_back_exactly(feed: Callable[[bytes], list[bytes]]) -> None:
    """Octet-counted frames carry any octet and read back message by message, however split."""
    stream = b"".join(frame_octet(m) for m in MESSAGES)
    assert receive(OctetReceiver(), feed(stream)) == MESSAGES


def test_octet_frame_with_trailing_partial_frame() -> None:
    """A trailing partial frame is held back, never delivered as a message."""
    stream = b"".join(frame_octet(m) for m in MESSAGES[:3]) + frame_octet(b"unfinished")[:-3]
    receiver = OctetReceiver()
    assert receive(receiver, byte_at_a_time(stream)) == MESSAGES[:3]
    assert receiver.feed(b"hed") == [b"unfinished"]


def test_octet_frame_spec_vector() -> None:
    """MSG-LEN counts octets, not characters, and has no leading zero (RFC 6587 §3.4.1)."""
    assert frame_octet(b"<14>1 - - - - - - hi") == b"20 <14>1 - - - - - - hi"
    assert frame_octet("é".encode()) == b"2 \xc3\xa9"
    assert frame_octet(b"\n") == b"1 \n"


@pytest.mark.parametrize("frame", [frame_octet, frame_lf])
def test_empty_record_is_refused(frame: Callable[[bytes], bytes]) -> None:
    """An empty record cannot be framed and raises FramingError instead of a bogus frame."""
    with pytest.raises(FramingError, match="empty record"):
        frame(b"")


@pytest.mark.parametrize("feed", [lambda d: [d], byte_at_a_time], ids=["whole", "bytewise"])
def test_lf_frames_never_split_a_record(feed: Callable[[bytes], list[bytes]]) -> None:
    """With LF framing every record is exactly one message: CR, LF and NUL are escaped."""
    stream = b"".join(frame_lf(m) for m in MESSAGES)
    received = receive(LfReceiver(), feed(stream))
    assert len(received) == len(MESSAGES)
    assert received[1] == f"{HEADER}- multi#012line#015#012with NUL#000 inside".encode()
    assert received[0] == MESSAGES[0]
    assert all(b"\r" not in m and b"\x00" not in m for m in received)


def test_lf_frame_with_trailing_partial_frame() -> None:
    """Bytes after the last LF are not a message until their LF arrives."""
    receiver = LfReceiver()
    assert receive(receiver, [frame_lf(b"one") + b"tw"]) == [b"one"]
    assert receiver.feed(b"o\n") == [b"two"]


def test_lf_injection_cannot_forge_a_record() -> None:
    """A value that tries to start a second syslog message stays inside the first one."""
    forged = b"<110>1 - h app - - - user=alice\n<110>1 - h app - - - user=admin action=grant"
    assert receive(LfReceiver(), [frame_lf(forged)]) == [forged.replace(b"\n", b"#012")]


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20))
def test_any_octets_round_trip_through_octet_framing(messages: list[bytes]) -> None:
    """Property: any sequence of non-empty messages reads back unchanged."""
    stream = b"".join(frame_octet(m) for m in messages)
    assert receive(OctetReceiver(), [stream]) == messages


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20))
def test_lf_framing_gives_one_message_per_record(messages: list[bytes]) -> None:
    """Property: whatever the bytes, LF framing yields exactly one message per record."""
    stream = b"".join(frame_lf(m) for m in messages)
    assert len(receive(LfReceiver(), [stream])) == len(messages)


# -- RFC 5424 structure: where MSG starts ---------------------------------------------------


@pytest.mark.parametrize(
    ("message", "sd_end_text"),
    [
        ("<14>1 - - - - - -", "<14>1 - - - - - -"),
        ("<14>1 - - - - - - msg", "<14>1 - - - - - -"),
        (f"{HEADER}{SD} msg [not sd]", f"{HEADER}{SD}"),
        (f"{HEADER}{SD}", f"{HEADER}{SD}"),
        ('<14>1 - - - - - [a b="]"] m', '<14>1 - - - - - [a b="]"]'),
        ('<14>1 - - - - - [a b="x\\\\"][c d="y"] m', '<14>1 - - - - - [a b="x\\\\"][c d="y"]'),
    ],
)
def test_message_start_finds_the_end_of_structured_data(message: str, sd_end_text: str) -> None:
    """SD ends after its last element, even with escaped quotes and brackets in values."""
    data = message.encode()
    bounds = message_start(data)
    assert bounds is not None
    sd_end, msg_start = bounds
    assert data[:sd_end] == sd_end_text.encode()
    assert msg_start == (sd_end + 1 if sd_end < len(data) else sd_end)


@pytest.mark.parametrize(
    "message",
    [
        "CEF:0|xavyo|siem|1|login|Login|3|suser=alice",
        "<14>1 - - - -",
        '<14>1 - - - - - [a b="unterminated',
        "<14>1 - - - - - [a]x",
        "<14>1 - - - - - x",
        "<1234567>1 - - - - - -",
        "<14>1  - - - - - -",
    ],
)
def test_message_start_refuses_what_is_not_rfc5424(message: str) -> None:
    """Text that is not an RFC 5424 message gives None instead of a wrong boundary."""
    assert message_start(message.encode()) is None


def test_message_start_bytewise_prefixes_never_crash() -> None:
    """Every prefix of a valid message parses or gives None: no IndexError on short input."""
    data = f"{HEADER}{SD} message".encode()
    for end in range(len(data) + 1):
        bounds = message_start(data[:end])
        assert bounds is None or bounds[0] <= end


# -- RFC 5426 datagrams ---------------------------------------------------------------------


def test_short_message_is_sent_whole() -> None:
    """A message within the limit is one datagram, unchanged and not counted as truncated."""
    message = f"{HEADER}{SD} short"
    assert fit_datagram(message, 2048) == (message.encode(), False)


def test_truncation_keeps_header_and_sd_and_cuts_msg() -> None:
    """An over-long message keeps HEADER and SD intact and loses the end of MSG only."""
    message = f"{HEADER}{SD} " + "x" * 5000
    payload, truncated = fit_datagram(message, 2048)
    assert truncated
    assert len(payload) == 2048
    assert payload.startswith(f"{HEADER}{SD} x".encode())


def test_truncation_cuts_on_a_code_point_boundary() -> None:
    """MSG is never cut inside a multi-byte UTF-8 sequence."""
    prefix = f"{HEADER}- "
    message = prefix + "é" * 40 + "🙂" * 40
    for limit in range(len(prefix.encode()) + 1, len(message.encode())):
        payload, truncated = fit_datagram(message, limit)
        assert truncated
        assert len(payload) <= limit
        assert len(payload) >= limit - 3
        assert message.startswith(payload.decode("utf-8"))


def test_truncation_never_leaves_a_dangling_escape() -> None:
    """A cut that would end MSG with a lone escaping backslash also drops the backslash."""
    prefix = f"{HEADER}- CEF:0|v|p|1|s|n|3|msg=a"
    message = prefix + "\\=" + "b" * 100
    payload, _ = fit_datagram(message, len(prefix.encode()) + 1)
    assert payload == prefix.encode()
    payload, _ = fit_datagram(prefix + "\\\\" + "b" * 100, len(prefix.encode()) + 2)
    assert payload == (prefix + "\\\\").encode()


def test_msg_dropped_when_only_header_and_sd_fit() -> None:
    """If no MSG character fits, MSG and its leading space go and HEADER SD remains valid."""
    head = f"{HEADER}{SD}"
    for extra in (0, 1):
        payload, truncated = fit_datagram(head + " 漢字", len(head.encode()) + extra)
        assert truncated
        assert payload == head.encode()


def test_header_and_sd_larger_than_limit_is_refused() -> None:
    """A message whose HEADER and SD alone exceed the limit raises FramingError (dead letter)."""
    message = f'{HEADER}[big@32473 v="{"x" * 600}"] msg'
    with pytest.raises(FramingError, match="max_datagram_bytes"):
        fit_datagram(message, 480)


def test_non_rfc5424_text_is_cut_on_a_code_point_boundary() -> None:
    """Text without an RFC 5424 header is cut anywhere, still on a code-point boundary."""
    payload, truncated = fit_datagram("é" * 600, 481)
    assert truncated
    assert payload == ("é" * 240).encode()


def test_lone_surrogate_is_replaced_not_fatal() -> None:
    """A lone surrogate becomes U+FFFD instead of an encoding error."""
    assert encode_utf8("a\ud800b") == "a\ufffdb".encode()
    assert fit_datagram("<14>1 - - - - - - a\udfffb", 2048) == (
        "<14>1 - - - - - - a\ufffdb".encode(),
        False,
    )


@given(
    msg=st.text(max_size=400),
    value=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\]'),
        max_size=60,
    ),
    limit=st.integers(min_value=320, max_value=900),
)
def test_fitted_datagram_is_a_valid_prefix(msg: str, value: str, limit: int) -> None:
    """Property: the datagram fits, decodes as UTF-8, keeps HEADER SD and is a prefix of MSG."""
    message = f'<14>1 - host app - - [a@32473 v="{value}"] {msg}'
    payload, truncated = fit_datagram(message, limit)
    assert len(payload) <= limit
    text = payload.decode("utf-8")
    assert message.startswith(text)
    assert truncated == (text != message)
    assert text.startswith(f'<14>1 - host app - - [a@32473 v="{value}"]')
