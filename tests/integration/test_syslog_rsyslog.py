"""Syslog transports against a real rsyslog: TCP (both framings), TLS, UDP (IPv4 and IPv6).

Each test starts its own rsyslogd (tests/peers/rsyslog.py), sends RFC 5424 records through
`SyslogTransport`, reads back what rsyslog wrote (`rawmsg`, JSON-escaped) and compares it
with what was sent, message by message. Certificates are made at test time with trustme.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from syslog_records import deliver, lines_with_every, received, record, send_all
from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, Rejected
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.syslog import SyslogTransport
from xavyo_siem.delivery.syslog_config import SyslogConfig

from peers.rsyslog import TlsFiles, start_rsyslog

pytestmark = pytest.mark.peer


def varied_records(count: int) -> list[Record]:
    bodies = ["plain", "line one\nline two", "tab\there", "漢字 🙂", "x" * 10_000, "end\\"]
    return [record(i, bodies[i % len(bodies)]) for i in range(count)]


def transport(kind: str, endpoint: str, **options: object) -> SyslogTransport:
    config = validate_destination(kind, endpoint, {"timeout_s": 5, **options}, development=False)
    assert isinstance(config, SyslogConfig)
    return SyslogTransport(config)


# -- TCP -------------------------------------------------------------------------------------


async def test_tcp_octet_counting_delivers_every_message_exactly(tmp_path: Path) -> None:
    """Over TCP with octet counting rsyslog receives every record byte for byte, in order."""
    records = varied_records(600)
    with start_rsyslog(tmp_path, tcp=True, output="json") as peer:
        sender = transport("syslog_tcp", f"tcp://127.0.0.1:{peer.tcp_port}")
        assert await sender.check() == Delivered()
        await send_all(sender, records, batch=100)
        await sender.aclose()
        assert received(peer, len(records)) == [r.text for r in records]


async def test_tcp_lf_framing_delivers_one_message_per_record(tmp_path: Path) -> None:
    """With LF framing every record arrives as one message, its newlines escaped as #012."""
    records = varied_records(300)
    with start_rsyslog(tmp_path, tcp=True, output="json") as peer:
        sender = transport("syslog_tcp", f"tcp://127.0.0.1:{peer.tcp_port}", framing="lf")
        await send_all(sender, records, batch=64)
        await sender.aclose()
        expected = [r.text.replace("\n", "#012") for r in records]
        assert received(peer, len(records)) == expected


async def test_receiver_restart_between_batches_resends_the_unconfirmed_batch(
    tmp_path: Path,
) -> None:
    """A receiver that restarts within `confirm_after_s` of a batch gets it again, then the next."""
    with start_rsyslog(tmp_path, tcp=True, output="json") as peer:
        sender = transport("syslog_tcp", f"tcp://127.0.0.1:{peer.tcp_port}", confirm_after_s=30)
        first, second = varied_records(10)[:5], varied_records(10)[5:]
        assert await sender.send(first) == Delivered()
        peer.wait_for(5)
        await asyncio.to_thread(peer.stop)
        await asyncio.to_thread(peer.start)
        assert await sender.send(second) == Delivered()
        await sender.aclose()
        assert received(peer, 15) == [r.text for r in first + first + second]
        assert sender.possibly_lost == 0


async def test_receiver_restart_after_confirmation_sends_only_the_next_batch(
    tmp_path: Path,
) -> None:
    """A batch confirmed (connection seen alive `confirm_after_s` later) is not sent again."""
    with start_rsyslog(tmp_path, tcp=True, output="json") as peer:
        sender = transport("syslog_tcp", f"tcp://127.0.0.1:{peer.tcp_port}", confirm_after_s=0.05)
        first, second = varied_records(10)[:5], varied_records(10)[5:]
        assert await sender.send(first) == Delivered()
        peer.wait_for(5)
        await asyncio.sleep(0.1)
        assert await sender.check() == Delivered()  # alive 0.1 s after: `first` is confirmed
        await asyncio.to_thread(peer.stop)
        await asyncio.to_thread(peer.start)
        assert await sender.send(second) == Delivered()
        await sender.aclose()
        assert received(peer, 10) == [r.text for r in first + second]


async def test_receiver_restart_under_load_loses_nothing(tmp_path: Path) -> None:
    """A graceful rsyslog restart in the middle of a stream: every event arrives at least once."""
    total, batch = 60_000, 500
    records = [Record(f"{i}", i, f"<14>1 - h app - - - load {i:06d}") for i in range(total)]
    with start_rsyslog(tmp_path, tcp=True) as peer:
        sender = transport("syslog_tcp", f"tcp://127.0.0.1:{peer.tcp_port}")

        async def restart_when_busy() -> None:
            while peer.count_lines() < total // 4:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(peer.stop)
            await asyncio.to_thread(peer.start)

        restart = asyncio.create_task(restart_when_busy())
        failures = 0
        for start in range(0, total, batch):
            failures += await deliver(sender, records[start : start + batch])
            if start == total // 2:
                await restart  # the restart happens while batches are still being sent
        await restart
        await sender.aclose()
        expected = {f"{i:06d}" for i in range(total)}
        lines = lines_with_every(peer, expected, lambda line: line.rsplit(" ", 1)[1])
        assert {line.rsplit(" ", 1)[1] for line in lines} == expected


# -- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server: TlsFiles
    server_mtls: TlsFiles
    expired: TlsFiles
    client: Path
    stranger: Path
    server_der: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server certificate for localhost, an expired one, and client certificates."""
    base = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    other.cert_pem.write_to_path(str(base / "other-ca.pem"))

    def server_files(name: str, cert: trustme.LeafCert, *, mtls: bool = False) -> TlsFiles:
        cert.private_key_pem.write_to_path(str(base / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(base / f"{name}.pem"))
        return TlsFiles(base / "ca.pem", base / f"{name}.pem", base / f"{name}.key", mtls)

    server = ca.issue_cert("localhost")
    expired = ca.issue_cert(
        "localhost",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(
        str(base / "client.pem")
    )
    other.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(
        str(base / "stranger.pem")
    )
    return Pki(
        ca=base / "ca.pem",
        other_ca=base / "other-ca.pem",
        server=server_files("server", server),
        server_mtls=server_files("server", server, mtls=True),
        expired=server_files("expired", expired),
        client=base / "client.pem",
        stranger=base / "stranger.pem",
        server_der=_der(server.cert_chain_pems[0].bytes()),
    )


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def sha256_pin(der: bytes) -> str:
    return "SHA256:" + hashlib.sha256(der).hexdigest()


async def test_mutual_tls_delivers_everything_and_close_loses_nothing(
    tmp_path: Path, pki: Pki
) -> None:
    """Mutual TLS works, and a close right after the last batch loses no message."""
    records = varied_records(3000)
    with start_rsyslog(tmp_path, tls=pki.server_mtls, output="json") as peer:
        sender = transport(
            "syslog_tls",
            f"tls://localhost:{peer.tls_port}",
            ca_file=str(pki.ca),
            cert_file=str(pki.client),
        )
        assert await sender.check() == Delivered()
        await send_all(sender, records, batch=500)
        await sender.aclose()  # close_notify immediately after the last batch
        assert received(peer, len(records)) == [r.text for r in records]


async def test_missing_client_certificate_is_refused_by_the_peer(tmp_path: Path, pki: Pki) -> None:
    """A peer that requires a client certificate refuses us without one: Misconfigured."""
    with start_rsyslog(tmp_path, tls=pki.server_mtls, output="json") as peer:
        for options in ({}, {"cert_file": str(pki.stranger)}):
            sender = transport(
                "syslog_tls", f"tls://localhost:{peer.tls_port}", ca_file=str(pki.ca), **options
            )
            assert isinstance(await sender.check(), Misconfigured)
            result = await sender.send(varied_records(3))
            assert isinstance(result, Misconfigured), result
            assert "does not accept" in result.reason
            assert not sender.connected
        assert peer.read_lines() == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_ca", "unable to get local issuer certificate"),
        ("host_mismatch", "mismatch"),
        ("expired", "expired"),
        ("wrong_pin", "does not match the pinned fingerprint"),
    ],
)
async def test_untrusted_server_is_misconfigured(
    tmp_path: Path, pki: Pki, case: str, expected: str
) -> None:
    """A wrong CA, a host-name mismatch, an expired certificate or a wrong pin: Misconfigured."""
    server = pki.expired if case == "expired" else pki.server
    with start_rsyslog(tmp_path, tls=server, output="json") as peer:
        host, options = "localhost", {"ca_file": str(pki.ca)}
        if case == "wrong_ca":
            options = {"ca_file": str(pki.other_ca)}
        elif case == "host_mismatch":
            host = "127.0.0.1"  # the certificate names localhost only
        elif case == "wrong_pin":
            options = {"fingerprint": "SHA256:" + "00" * 32}
        sender = transport("syslog_tls", f"tls://{host}:{peer.tls_port}", **options)
        for result in (await sender.check(), await sender.send(varied_records(2))):
            assert isinstance(result, Misconfigured), result
            assert expected in result.reason
        assert peer.read_lines() == []


async def test_pinned_fingerprint_alone_trusts_a_self_signed_peer(tmp_path: Path, pki: Pki) -> None:
    """With only a pinned fingerprint (no CA bundle) the pinned certificate is trusted."""
    records = varied_records(20)
    with start_rsyslog(tmp_path, tls=pki.server, output="json") as peer:
        sender = transport(
            "syslog_tls", f"tls://127.0.0.1:{peer.tls_port}", fingerprint=sha256_pin(pki.server_der)
        )
        await send_all(sender, records, batch=7)
        await sender.aclose()
        assert received(peer, len(records)) == [r.text for r in records]


async def test_tls_verification_off_needs_development_mode(tmp_path: Path, pki: Pki) -> None:
    """With tls_verify=false (development only) an untrusted peer is accepted."""
    with start_rsyslog(tmp_path, tls=pki.server, output="json") as peer:
        config = validate_destination(
            "syslog_tls",
            f"tls://127.0.0.1:{peer.tls_port}",
            {"tls_verify": False},
            development=True,
        )
        assert isinstance(config, SyslogConfig)
        sender = SyslogTransport(config)
        assert await sender.send(varied_records(1)) == Delivered()
        await sender.aclose()
        assert received(peer, 1) == [varied_records(1)[0].text]


# -- UDP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
async def test_udp_delivers_one_datagram_per_record_and_cuts_long_ones_when_told(
    tmp_path: Path, family: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Over UDP (IPv4 and IPv6) each record is one datagram; with `truncate` a long one is sent
    cut, counted, and logged with its event id."""
    short = [record(i, "short") for i in range(50)]
    long = record(50, "é" * 3000)
    with start_rsyslog(
        tmp_path, udp=family == "ipv4", udp6=family == "ipv6", output="json"
    ) as peer:
        endpoint = (
            f"udp://127.0.0.1:{peer.udp_port}"
            if family == "ipv4"
            else f"udp://[::1]:{peer.udp6_port}"
        )
        sender = transport("syslog_udp", endpoint, max_datagram_bytes=1180, truncate="true")
        assert await sender.check() == Delivered()
        results = [await sender.send(chunk) for chunk in (short[:25], short[25:], [long])]
        assert results == [Delivered()] * 3
        assert sender.truncated_count == 1
        assert f"event {long.event_id} cut to 1180 bytes" in caplog.text
        got = received(peer, 51)
        assert got[:50] == [r.text for r in short]
        assert long.text.startswith(got[50])
        assert len(got[50].encode()) <= 1180
        assert got[50].endswith("é")
        await sender.aclose()


async def test_udp_record_too_long_is_rejected_with_the_reason_by_default(tmp_path: Path) -> None:
    """By default a record longer than the datagram limit is Rejected (dead letters) with the
    reason, never sent cut; the records around it are sent whole."""
    long = record(1, "x" * 3000)
    with start_rsyslog(tmp_path, udp=True, output="json") as peer:
        sender = transport("syslog_udp", f"udp://127.0.0.1:{peer.udp_port}")
        result = await sender.send([record(0), long, record(2)])
        assert isinstance(result, Rejected)
        assert list(result.by_index) == [1]
        assert "longer than max_datagram_bytes (2048)" in result.by_index[1]
        assert received(peer, 2) == [record(0).text, record(2).text]
        assert sender.truncated_count == 0
        await sender.aclose()


async def test_udp_record_whose_header_does_not_fit_is_rejected(tmp_path: Path) -> None:
    """A record whose header and SD exceed max_datagram_bytes is Rejected; the rest is sent."""
    big_sd = Record("big", 0, f'<14>1 - h app - - [a@32473 v="{"x" * 600}"] msg')
    with start_rsyslog(tmp_path, udp=True, output="json") as peer:
        sender = transport("syslog_udp", f"udp://127.0.0.1:{peer.udp_port}", max_datagram_bytes=480)
        result = await sender.send([record(0), big_sd, record(2)])
        assert list(getattr(result, "by_index", {})) == [1]
        assert received(peer, 2) == [record(0).text, record(2).text]
        await sender.aclose()
