"""RELP, sans I/O: the frame encoder, the strict incremental parser and the client session.

Frames are parsed whole, one byte at a time and with a trailing partial frame (h11's `tr`
pattern); the spec vectors are the exchanges observed with rsyslog imrelp (librelp 1.11).
Hostile input is generated with hypothesis: the parser yields frames or `RelpProtocolError`,
never anything else, and no message can forge a second frame.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem.delivery.relp_protocol import (
    Acknowledged,
    CloseAnswered,
    Frame,
    FrameParser,
    Opened,
    Refused,
    RelpProtocolError,
    RelpSession,
    ServerClosed,
    SessionState,
    encode_frame,
    parse_offers,
    parse_rsp,
)

OPEN_RSP = (
    b"1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,"
    b"http://librelp.adiscon.com\ncommands=syslog\n"
)


def parse_all(data: bytes, *, step: int | None = None) -> list[Frame]:
    """Frames of `data`, fed whole or in chunks of `step` octets."""
    parser = FrameParser()
    if step is None:
        return parser.feed(data)
    frames: list[Frame] = []
    for start in range(0, len(data), step):
        frames += parser.feed(data[start : start + step])
    return frames


def opened_session(window: int = 128) -> RelpSession:
    session = RelpSession(software="xavyo-siem,test", window=window)
    session.open()
    assert session.receive(OPEN_RSP) == [
        Opened(
            {
                "relp_version": ("0",),
                "relp_software": ("librelp", "1.11.0", "http://librelp.adiscon.com"),
                "commands": ("syslog",),
            }
        )
    ]
    return session


# -- frames ----------------------------------------------------------------------------------


def test_encode_writes_librelp_frames() -> None:
    """The encoder writes the frames librelp sends: no SP before an empty DATA, LF trailer."""
    assert encode_frame(2, "close") == b"2 close 0\n"
    assert encode_frame(3, "syslog", b"<14>1 x") == b"3 syslog 7 <14>1 x\n"
    assert encode_frame(0, "serverclose") == b"0 serverclose 0\n"


@pytest.mark.parametrize(
    ("txnr", "command", "data"),
    [(-1, "open", b""), (1_000_000_000, "open", b""), (1, "", b""), (1, "sys log", b""),
     (1, "x" * 33, b""), (1, "sÿslog", b"")],
)  # fmt: skip
def test_encode_refuses_what_the_grammar_forbids(txnr: int, command: str, data: bytes) -> None:
    """A txnr beyond nine digits or a command that is not 1 to 32 ASCII letters is refused."""
    with pytest.raises(ValueError, match="RELP"):
        encode_frame(txnr, command, data)


@pytest.mark.parametrize("step", [None, 1, 2, 7])
def test_parser_reads_observed_exchange_in_any_chunking(step: int | None) -> None:
    """imrelp's answers (open, syslog, the empty close rsp, serverclose) parse in any chunking."""
    stream = OPEN_RSP + b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 0\n0 serverclose 0\n"
    frames = parse_all(stream, step=step)
    assert [(f.txnr, f.command) for f in frames] == [
        (1, "rsp"), (2, "rsp"), (3, "rsp"), (4, "rsp"), (0, "serverclose")
    ]  # fmt: skip
    assert frames[1].data == b"200 OK"
    assert frames[3].data == b""


def test_parser_keeps_a_trailing_partial_frame_for_later() -> None:
    """A frame cut anywhere is held back, and completes with the next chunk."""
    parser = FrameParser()
    assert parser.feed(b"2 rsp 6 200 OK\n3 rsp 6 20") == [Frame(2, "rsp", b"200 OK")]
    assert parser.buffered == len(b"3 rsp 6 20")
    assert parser.feed(b"0 OK\n") == [Frame(3, "rsp", b"200 OK")]
    assert parser.buffered == 0


def test_data_may_contain_lf_and_only_datalen_delimits_it() -> None:
    """An LF inside DATA is data: the frame ends after DATALEN octets, not at the first LF."""
    frame = encode_frame(5, "syslog", b"a\n6 syslog 1 x\nb")
    assert parse_all(frame, step=1) == [Frame(5, "syslog", b"a\n6 syslog 1 x\nb")]


def test_empty_data_may_follow_a_space() -> None:
    """`N rsp 0 \\n` (an SP and empty DATA, which the grammar allows) reads as no data."""
    assert parse_all(b"4 rsp 0 \n") == [Frame(4, "rsp", b"")]


@pytest.mark.parametrize(
    ("stream", "detail"),
    [
        (b"1234567890 rsp 6 200 OK\n", "TXNR has more than 9 digits"),
        (b"1 rsp 1234567890 x\n", "DATALEN"),
        (b"1 r5p 6 200 OK\n", "COMMAND"),
        (b"1 " + b"r" * 33 + b" 0\n", "more than 32 letters"),
        (b"x rsp 6 200 OK\n", "TXNR must be 1 to 9 digits"),
        (b" 1 rsp 0\n", "TXNR"),
        (b"1 rsp 6 200 OKX", "not the LF trailer"),
        (b"1 rsp 6\n", "LF follows it"),
        (b"1 rsp -1\n", "DATALEN"),
        (b"1  rsp 0\n", "COMMAND"),
        (b"1 rsp 200000 ", "more than the 131072 accepted"),
    ],
)
def test_parser_refuses_broken_frames(stream: bytes, detail: str) -> None:
    """Each grammar violation librelp refuses is a RelpProtocolError naming what is wrong."""
    for step in (None, 1):
        with pytest.raises(RelpProtocolError, match=detail):
            parse_all(stream, step=step)


def test_parser_stays_failed_after_an_error() -> None:
    """After a protocol error the parser refuses everything: the connection must be closed."""
    parser = FrameParser()
    with pytest.raises(RelpProtocolError):
        parser.feed(b"junk\n")
    with pytest.raises(RelpProtocolError):
        parser.feed(b"1 rsp 6 200 OK\n")


def test_tenth_digit_is_refused_as_soon_as_it_arrives() -> None:
    """A 10-digit TXNR is refused at its 10th digit, without waiting for the rest."""
    parser = FrameParser()
    assert parser.feed(b"123456789") == []
    with pytest.raises(RelpProtocolError, match="more than 9 digits"):
        parser.feed(b"0")


frames_strategy = st.lists(
    st.builds(
        Frame,
        st.integers(0, 999_999_999),
        st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCZ"), min_size=1, max_size=32),
        st.binary(max_size=300),
    ),
    max_size=8,
)


@given(frames_strategy, st.integers(1, 50))
def test_parse_of_encoded_frames_gives_them_back(frames: list[Frame], step: int) -> None:
    """Whatever the frames and the chunking, parsing their encoding gives back the frames."""
    stream = b"".join(encode_frame(*frame) for frame in frames)
    assert parse_all(stream) == frames
    assert parse_all(stream, step=step) == frames


@given(st.binary(max_size=400), st.integers(1, 64))
def test_arbitrary_bytes_give_frames_or_a_protocol_error(data: bytes, step: int) -> None:
    """Hostile bytes never crash the parser: frames, or RelpProtocolError, and the same
    outcome whole and in chunks."""
    outcomes = []
    for chunking in (None, step):
        try:
            outcomes.append(("frames", parse_all(data, step=chunking)))
        except RelpProtocolError:
            outcomes.append(("error", None))
    whole, chunked = outcomes
    if whole[0] == "frames" and chunked[0] == "frames":
        assert whole == chunked
    else:  # an error whole may come after frames that chunking delivered first
        assert whole[0] == chunked[0] == "error"


@given(st.binary(max_size=300), st.integers(1, 999_999_998))
def test_no_message_forges_a_second_frame(message: bytes, txnr: int) -> None:
    """A syslog message with LF, digits or a whole forged frame inside stays one frame."""
    forged = message + b"\n" + encode_frame(txnr + 1, "syslog", b"forged") + message
    assert parse_all(encode_frame(txnr, "syslog", forged)) == [Frame(txnr, "syslog", forged)]


# -- rsp and offers --------------------------------------------------------------------------


def test_rsp_and_offers_are_read() -> None:
    """An rsp splits into code, text and the data after the first LF; offers into values."""
    assert parse_rsp(b"200 OK") == (200, "OK", b"")
    assert parse_rsp(b"500 command disabled") == (500, "command disabled", b"")
    assert parse_rsp(b"200 OK\ncommands=syslog") == (200, "OK", b"commands=syslog")
    assert parse_offers(b"commands=syslog,eventlog\nflag\n") == {
        "commands": ("syslog", "eventlog"),
        "flag": (),
    }
    for bad in (b"", b"OK", b"20", b"2000 OK"):
        with pytest.raises(RelpProtocolError, match="3-digit code"):
            parse_rsp(bad)


# -- the session -----------------------------------------------------------------------------


def test_open_offers_version_software_and_syslog() -> None:
    """`open` is txnr 1 and offers relp_version=0, our software, and the syslog command."""
    session = RelpSession(software="xavyo-siem,1.0")
    assert session.open() == (
        b"1 open 59 relp_version=0\nrelp_software=xavyo-siem,1.0\ncommands=syslog\n"
    )
    assert session.state is SessionState.OPENING
    assert not session.can_send


def test_syslog_commands_count_on_from_two_and_are_acknowledged_in_order() -> None:
    """After open, syslog commands take txnr 2, 3, ... and 200 answers acknowledge records."""
    session = opened_session()
    assert session.syslog(7, b"<14>1 a") == b"2 syslog 7 <14>1 a\n"
    assert session.syslog(8, b"<14>1 b") == b"3 syslog 7 <14>1 b\n"
    assert dict(session.unanswered) == {2: 7, 3: 8}
    assert session.receive(b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n") == [
        Acknowledged(2, 7),
        Acknowledged(3, 8),
    ]
    assert session.in_flight == 0


def test_window_caps_unanswered_commands() -> None:
    """No more than `window` syslog commands may be unanswered; an answer frees a slot."""
    session = opened_session(window=2)
    session.syslog(0, b"a")
    session.syslog(1, b"b")
    assert not session.can_send
    with pytest.raises(ValueError, match="2 unanswered"):
        session.syslog(2, b"c")
    session.receive(b"2 rsp 6 200 OK\n")
    assert session.can_send


def test_500_on_syslog_is_refused_with_the_peer_text() -> None:
    """A 500 answer names the record and carries the peer's text."""
    session = opened_session()
    session.syslog(3, b"x")
    assert session.receive(b"2 rsp 20 500 command disabled\n") == [
        Refused(2, "syslog", 3, "500 command disabled")
    ]


def test_refused_open_and_open_without_syslog_end_the_session() -> None:
    """A 500 to open, or an open answer without the syslog command, ends the session."""
    session = RelpSession(software="s")
    session.open()
    text = b"500 required command not supported by client"
    events = session.receive(b"1 rsp %d %b\n" % (len(text), text))
    assert events == [Refused(1, "open", None, text.decode())]
    assert session.ended

    session = RelpSession(software="s")
    session.open()
    answer = b"200 OK\nrelp_version=0\ncommands=eventlog"
    [event] = session.receive(encode_frame(1, "rsp", answer))
    assert isinstance(event, Refused)
    assert "does not offer the syslog command" in event.reason
    assert session.ended
    assert not session.can_send


def test_close_is_answered_empty_then_serverclose() -> None:
    """imrelp answers close with an empty rsp, then serverclose; the session ends."""
    session = opened_session()
    assert session.close() == b"2 close 0\n"
    assert session.receive(b"2 rsp 0\n0 serverclose 0\n") == [CloseAnswered(), ServerClosed()]
    assert session.ended


def test_serverclose_while_commands_are_unanswered() -> None:
    """A serverclose hint ends the session; its unanswered commands stay listed, and what
    follows it is not read."""
    session = opened_session()
    session.syslog(0, b"a")
    assert session.receive(b"0 serverclose 0\n") == [ServerClosed()]
    assert session.ended
    assert dict(session.unanswered) == {2: 0}
    assert session.receive(b"2 rsp 6 200 OK\n") == []  # the session is over


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (b"3 rsp 6 200 OK\n", "out of order"),
        (b"2 rsp 6 200 OK\n2 rsp 6 200 OK\n", "answers no command"),
        (b"2 syslog 3 abc\n", "unexpected command"),
        (b"2 rsp 2 OK\n", "3-digit code"),
        (b"2 rsp 0\n", "3-digit code"),
    ],
)
def test_answers_that_break_the_session_rules_are_protocol_errors(
    answer: bytes, detail: str
) -> None:
    """An rsp out of order, for no command, without a code, or a command from the server."""
    session = opened_session()
    session.syslog(0, b"a")
    with pytest.raises(RelpProtocolError, match=detail):
        session.receive(answer)


def test_session_is_worn_out_long_before_txnr_runs_out() -> None:
    """Past `reopen_after_txnr` the session asks to be replaced; txnr never gets 10 digits."""
    session = RelpSession(software="s", reopen_after_txnr=3)
    session.open()
    session.receive(OPEN_RSP)
    session.syslog(0, b"a")
    assert not session.worn_out
    session.syslog(1, b"b")
    assert session.worn_out


@given(st.binary(max_size=200))
def test_hostile_answers_give_events_or_a_protocol_error(data: bytes) -> None:
    """Whatever the peer sends to an open session: events, or RelpProtocolError."""
    session = opened_session(window=4)
    for index in range(4):
        session.syslog(index, b"m")
    try:
        events = session.receive(data)
    except RelpProtocolError:
        return
    assert all(isinstance(e, Acknowledged | Refused | ServerClosed) for e in events)
