"""The RELP transport against a scripted RELP server that misbehaves on purpose.

Each test is named after the fault and asserts the result and the transport's state
afterwards: the session is dropped after a failure, and the next batch opens a new one.
"""

from __future__ import annotations

import asyncio

from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, Rejected, RetryLater
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.relp import RelpTransport
from xavyo_siem.delivery.syslog_config import SyslogConfig
from xavyo_siem.egress import EgressGuard

from peers.relp_peer import ScriptedRelpPeer, ok, rsp


def records(count: int, tag: str = "r") -> list[Record]:
    return [Record(f"{tag}{i}", i, f"<14>1 - h app - - - {tag} {i}") for i in range(count)]


def transport(port: int, **options: object) -> RelpTransport:
    config = validate_destination(
        "syslog_relp", f"relp://127.0.0.1:{port}", {"timeout_s": 0.5, **options}, development=False
    )
    assert isinstance(config, SyslogConfig)
    return RelpTransport(config)


async def test_peer_that_stops_answering_is_retry_later_with_the_window_in_flight() -> None:
    """A peer that answers open and then never answers syslog: RetryLater after timeout_s
    naming the silence, with no more than `window` commands ever sent (memory bounded)."""
    async with ScriptedRelpPeer(answer_syslog=lambda txnr, data: b"") as peer:
        sender = transport(peer.port, window=8)
        result = await sender.send(records(500))
        assert isinstance(result, RetryLater)
        assert "no answer within 0.5 s" in result.reason
        assert "8 commands unanswered" in result.reason
        assert len(peer.commands("syslog")) == 8
        assert not sender.connected
        await sender.aclose()


async def test_peer_answering_500_to_syslog_is_misconfigured_with_its_text() -> None:
    """A 500 to a syslog command is a configuration alarm naming the event and the text."""

    def refuse_third(txnr: int, data: bytes) -> bytes:
        return rsp(txnr, b"500 command disabled") if txnr == 4 else ok(txnr, data)

    async with ScriptedRelpPeer(answer_syslog=refuse_third) as peer:
        sender = transport(peer.port)
        result = await sender.send(records(10))
        assert result == Misconfigured(
            f"RELP relp://127.0.0.1:{peer.port}: the receiver refused event r2:"
            " 500 command disabled"
        )
        assert not sender.connected


async def test_peer_refusing_open_is_misconfigured() -> None:
    """A 500 to open (as imrelp answers a client without the syslog command) is Misconfigured."""
    refusal = b"500 required command not supported by client"
    async with ScriptedRelpPeer(answer_open=lambda txnr, _: rsp(txnr, refusal)) as peer:
        sender = transport(peer.port)
        result = await sender.check()
        assert isinstance(result, Misconfigured)
        assert "refused the session: 500 required command not supported by client" in (
            result.reason
        )
        assert await sender.send(records(1)) == result
        assert peer.commands("syslog") == []


async def test_peer_without_the_syslog_command_is_misconfigured() -> None:
    """An open answer whose commands lack syslog: Misconfigured, and no syslog is sent."""
    offers = b"200 OK\nrelp_version=0\ncommands=eventlog"
    async with ScriptedRelpPeer(answer_open=lambda txnr, _: rsp(txnr, offers)) as peer:
        result = await transport(peer.port).send(records(3))
        assert isinstance(result, Misconfigured)
        assert "does not offer the syslog command (commands: eventlog)" in result.reason
        assert peer.commands("syslog") == []


async def test_garbage_answer_is_misconfigured_with_what_was_wrong() -> None:
    """Bytes that are not RELP (an HTTP server, say) give Misconfigured naming the problem."""
    async with ScriptedRelpPeer(answer_open=lambda txnr, _: b"HTTP/1.1 400 Bad Request\r\n") as p:
        result = await transport(p.port).check()
        assert isinstance(result, Misconfigured)
        assert "does not speak RELP as expected: not a RELP frame" in result.reason


async def test_answer_out_of_order_is_misconfigured() -> None:
    """An rsp for a txnr that is not the oldest unanswered one breaks the session rules."""
    async with ScriptedRelpPeer(answer_syslog=lambda txnr, d: ok(txnr + 1, d)) as peer:
        result = await transport(peer.port).send(records(2))
        assert isinstance(result, Misconfigured)
        assert "rsp 3 out of order: the oldest unanswered command is 2" in result.reason


async def test_garbage_after_a_valid_answer_never_crashes() -> None:
    """A broken frame after good answers (a 10-digit txnr) is a clear error, not a crash."""
    async with ScriptedRelpPeer(answer_syslog=lambda txnr, d: b"1000000000 rsp 6 200 OK\n") as p:
        result = await transport(p.port).send(records(2))
        assert isinstance(result, Misconfigured)
        assert "TXNR has more than 9 digits" in result.reason


async def test_serverclose_mid_batch_is_retry_later_and_the_next_batch_reconnects() -> None:
    """serverclose with commands unanswered: RetryLater; the batch sent again is delivered
    on a new session."""
    closed_once = False

    def close_at_third(txnr: int, data: bytes) -> bytes:
        nonlocal closed_once
        if txnr == 4 and not closed_once:
            closed_once = True
            return b"0 serverclose 0\n"
        return ok(txnr, data)

    async with ScriptedRelpPeer(answer_syslog=close_at_third) as peer:
        sender = transport(peer.port)
        batch = records(20)
        result = await sender.send(batch)
        assert isinstance(result, RetryLater)
        assert "the receiver closed the session (serverclose)" in result.reason
        assert await sender.send(batch) == Delivered()
        assert sender.sessions_opened == 2
        await sender.aclose()


async def test_connection_dropped_mid_batch_is_retry_later() -> None:
    """A peer that drops the connection without a word mid-batch: RetryLater naming the
    close and the unanswered commands; the batch sent again is delivered."""
    dropped_once = False

    def drop_at_third(txnr: int, data: bytes) -> bytes | None:
        nonlocal dropped_once
        if txnr == 4 and not dropped_once:
            dropped_once = True
            return None
        return ok(txnr, data)

    async with ScriptedRelpPeer(answer_syslog=drop_at_third) as peer:
        sender = transport(peer.port, window=4)
        batch = records(10)
        result = await sender.send(batch)
        assert isinstance(result, RetryLater)
        assert "closed by the peer before the answer" in result.reason
        assert "4 commands unanswered" in result.reason  # the window was full
        assert not sender.connected
        assert await sender.send(batch) == Delivered()
        await sender.aclose()


async def test_idle_session_closed_by_the_peer_reconnects_without_a_failure() -> None:
    """A serverclose between batches (a receiver restart) is noticed before the next batch,
    which then goes over a new session and is delivered the first time."""
    async with ScriptedRelpPeer() as peer:
        sender = transport(peer.port)
        assert await sender.send(records(3)) == Delivered()
        conn = sender._conn
        assert conn is not None
        conn.wire.data_received(b"0 serverclose 0\n")  # as a stopping imrelp sends it
        assert await sender.send(records(3, "s")) == Delivered()
        assert sender.sessions_opened == 2
        await sender.aclose()


async def test_close_sends_close_and_waits_for_the_server() -> None:
    """aclose sends close after the last answer; nothing is left unanswered or open."""
    async with ScriptedRelpPeer() as peer:
        sender = transport(peer.port)
        assert await sender.send(records(4)) == Delivered()
        await sender.aclose()
        assert [command for _, command, _ in peer.received] == [
            "open", "syslog", "syslog", "syslog", "syslog", "close"
        ]  # fmt: skip
        assert [txnr for txnr, _, _ in peer.received] == [1, 2, 3, 4, 5, 6]
        assert not sender.connected


async def test_open_offers_what_librelp_expects() -> None:
    """Our open offers relp_version=0, relp_software=xavyo-siem,... and commands=syslog."""
    async with ScriptedRelpPeer() as peer:
        sender = transport(peer.port)
        assert await sender.check() == Delivered()
        [offer] = peer.commands("open")
        lines = offer.decode().split("\n")
        assert lines[0] == "relp_version=0"
        assert lines[1].startswith("relp_software=xavyo-siem,")
        assert lines[2] == "commands=syslog"
        await sender.aclose()


async def test_record_longer_than_max_message_bytes_is_rejected_and_never_sent() -> None:
    """A record the receiver would cut goes to dead letters with the reason; the others go."""
    async with ScriptedRelpPeer() as peer:
        sender = transport(peer.port, max_message_bytes=200)
        batch = records(3)
        batch[1] = Record("long", 1, "<14>1 - h app - - - " + "x" * 180)  # 200 bytes: fits
        batch.append(Record("too-long", 3, "<14>1 - h app - - - " + "y" * 181))
        result = await sender.send(batch)
        assert isinstance(result, Rejected)
        assert list(result.by_index) == [3]
        assert "201 bytes, longer than max_message_bytes (200)" in result.by_index[3]
        assert [len(m) for m in peer.commands("syslog")][1] == 200
        assert all(b"y" not in m for m in peer.commands("syslog"))
        await sender.aclose()


async def test_reopens_the_session_before_txnr_runs_out() -> None:
    """Past the reopen threshold the session is closed and a new one opened between batches;
    txnr starts again at 1 and every record is acknowledged."""
    async with ScriptedRelpPeer() as peer:
        config = validate_destination(
            "syslog_relp", f"relp://127.0.0.1:{peer.port}", {}, development=False
        )
        assert isinstance(config, SyslogConfig)
        sender = RelpTransport(config, reopen_after_txnr=10)
        for start in range(0, 30, 6):
            assert await sender.send(records(30)[start : start + 6]) == Delivered()
        await sender.aclose()
        assert sender.sessions_opened == 3
        assert max(txnr for txnr, _, _ in peer.received) <= 14
        assert len(peer.commands("syslog")) == 30


async def test_connection_refused_is_retry_later() -> None:
    """No receiver listening: RetryLater saying so."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    result = await transport(port).check()
    assert isinstance(result, RetryLater)
    assert "connection refused" in result.reason


async def test_name_resolving_to_a_refused_address_is_misconfigured() -> None:
    """With the SSRF guard, a name that resolves to loopback is refused at connect time (the
    guard of the other syslog transports), and the peer sees no connection; allowing the
    address lets the same transport deliver."""
    async with ScriptedRelpPeer() as peer:
        config = validate_destination(
            "syslog_relp", f"relp://localhost:{peer.port}", {"timeout_s": 2}, development=False
        )
        assert isinstance(config, SyslogConfig)
        guarded = RelpTransport(config, egress=EgressGuard())
        result = await guarded.send(records(1))
        assert isinstance(result, Misconfigured)
        assert "loopback" in result.reason
        assert peer.connections == 0
        allowed = RelpTransport(config, egress=EgressGuard(allow=("127.0.0.0/8", "::1/128")))
        assert await allowed.send(records(1)) == Delivered()
        await allowed.aclose()


async def test_send_cancelled_mid_batch_leaves_no_half_answered_session() -> None:
    """A send cancelled while waiting for answers drops its session, so the next batch's
    answers are never taken for the cancelled batch's."""
    async with ScriptedRelpPeer(answer_syslog=lambda txnr, data: b"") as peer:
        sender = transport(peer.port, timeout_s=30)
        sending = asyncio.create_task(sender.send(records(5)))
        for _ in range(1000):  # until every command reached the peer
            if len(peer.commands("syslog")) == 5:
                break
            await asyncio.sleep(0.01)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        assert not sender.connected
        peer.answer_syslog = ok
        assert await sender.send(records(3, "n")) == Delivered()
        assert sender.sessions_opened == 2
        await sender.aclose()


async def test_peer_echoing_the_key_password_never_gets_it_into_a_reason() -> None:
    """A 500 answer or garbage quoting the client key's password is scrubbed from the
    reason, as for the other syslog transports."""
    password = "correct-horse-battery-staple"
    echo = f"500 bad password={password} for {password}".encode()
    async with ScriptedRelpPeer(answer_syslog=lambda txnr, _: rsp(txnr, echo)) as peer:
        config = validate_destination(
            "syslog_relp", f"relp://127.0.0.1:{peer.port}", {}, development=False
        )
        assert isinstance(config, SyslogConfig)
        result = await RelpTransport(config, key_password=password).send(records(1))
        assert isinstance(result, Misconfigured)
        assert "the receiver refused event r0: 500" in result.reason
        assert password not in result.reason
    async with ScriptedRelpPeer(answer_open=lambda txnr, _: password.encode() + b"\n") as peer:
        config = validate_destination(
            "syslog_relp", f"relp://127.0.0.1:{peer.port}", {}, development=False
        )
        assert isinstance(config, SyslogConfig)
        result = await RelpTransport(config, key_password=password.encode()).check()
        assert isinstance(result, Misconfigured)
        assert "not a RELP frame" in result.reason
        assert password not in result.reason


async def test_peer_dropping_the_session_after_every_n_messages_loses_nothing() -> None:
    """A RELP peer that drops its session after answering every N messages (a collector
    restarting, a load balancer cutting): every record is answered 200 OK at least once."""
    every, batch_size, total = 333, 1000, 10_000
    answered: list[bytes] = []

    def answer_n_then_drop(txnr: int, data: bytes) -> bytes | None:
        if txnr - 1 > every:  # txnr 1 is this session's `open`
            return None
        answered.append(data)
        return ok(txnr, data)

    sent = records(total, "n")
    async with ScriptedRelpPeer(answer_syslog=answer_n_then_drop) as peer:
        sender = transport(peer.port)
        for start in range(0, total, batch_size):
            batch = sent[start : start + batch_size]
            for _ in range(200):
                if await sender.send(batch) == Delivered():
                    break
            else:
                raise AssertionError("a batch was never delivered")
        await sender.aclose()
    assert {r.text.encode() for r in sent} <= set(answered)
    assert peer.connections > total // every  # the peer really dropped that often
