"""The RELP transport against a real rsyslog imrelp (librelp), plain and over TLS.

Each test starts its own rsyslogd (tests/peers/rsyslog.py, with Direct queues so that a
`200 OK` follows the write), sends RFC 5424 records through `RelpTransport`, and reads back
what rsyslog wrote. Certificates are made at test time with trustme.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from syslog_records import deliver, received, record, send_all
from xavyo_siem.delivery.base import Delivered, Misconfigured, Record, Rejected, RetryLater
from xavyo_siem.delivery.options import validate_destination
from xavyo_siem.delivery.relp import RelpTransport
from xavyo_siem.delivery.syslog_config import SyslogConfig

from peers.rsyslog import RelpTlsFiles, RsyslogPeer, start_rsyslog

pytestmark = pytest.mark.peer


def varied_records(count: int) -> list[Record]:
    bodies = [
        "plain",
        "line one\nline two",
        "tab\there",
        "漢字 🙂",
        "x" * 6000,
        "end\\",
        "forged\n9 syslog 5 <14>1\nafter",
        "cr\r\nlf",
    ]
    return [record(i, bodies[i % len(bodies)]) for i in range(count)]


def transport(endpoint: str, **options: object) -> RelpTransport:
    config = validate_destination(
        "syslog_relp", endpoint, {"timeout_s": 5, **options}, development=False
    )
    assert isinstance(config, SyslogConfig)
    return RelpTransport(config)


# -- plain RELP ------------------------------------------------------------------------------


async def test_relp_delivers_every_message_exactly(tmp_path: Path) -> None:
    """rsyslog receives every record byte for byte, in order: non-ASCII, LF, CR and a forged
    frame inside a message arrive as one message."""
    records = varied_records(800)
    with start_rsyslog(tmp_path, relp=True, output="json") as peer:
        sender = transport(f"relp://127.0.0.1:{peer.relp_port}")
        assert await sender.check() == Delivered()
        await send_all(sender, records, batch=100)
        await sender.aclose()
        assert received(peer, len(records)) == [r.text for r in records]
        assert sender.sessions_opened == 1


async def test_message_of_exactly_the_limit_arrives_whole_and_a_longer_one_is_rejected(
    tmp_path: Path,
) -> None:
    """With rsyslog's default 8096-byte limit, an 8096-byte message arrives whole; an
    8097-byte one, which rsyslog would cut and still acknowledge, is Rejected and not sent."""
    fits = Record("fits", 1, "<14>1 - h app - - - " + "a" * (8096 - 20))
    too_long = Record("too-long", 2, "<14>1 - h app - - - " + "b" * (8097 - 20))
    with start_rsyslog(tmp_path, relp=True, output="json", max_message_bytes=8096) as peer:
        sender = transport(f"relp://127.0.0.1:{peer.relp_port}")
        result = await sender.send([too_long, fits])
        await sender.aclose()
        assert isinstance(result, Rejected)
        assert list(result.by_index) == [0]
        assert "8097 bytes, longer than max_message_bytes (8096)" in result.by_index[0]
        assert received(peer, 1) == [fits.text]


async def test_rsyslog_killed_mid_stream_and_restarted_loses_nothing(tmp_path: Path) -> None:
    """rsyslog killed with SIGKILL in the middle of a stream and started again on the same
    port: every record arrives at least once (only acknowledged batches count as delivered)."""
    total, batch = 40_000, 500
    records = [Record(f"{i}", i, f"<14>1 - h app - - - load {i:06d}") for i in range(total)]
    with start_rsyslog(tmp_path, relp=True) as peer:
        sender = transport(f"relp://127.0.0.1:{peer.relp_port}", timeout_s=2)
        killed_pid = peer.pid

        async def kill_when_busy() -> None:
            while peer.count_lines() < total // 4:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(peer.kill)
            await asyncio.to_thread(peer.start)

        crash = asyncio.create_task(kill_when_busy())
        failures = 0
        for start in range(0, total, batch):
            failures += await deliver(sender, records[start : start + batch])
            if start == total // 2:
                await crash  # the crash happens while batches are still being sent
        await crash
        await sender.aclose()
        assert peer.pid != killed_pid
        assert failures >= 1  # the crash was seen by the sender
        lines = peer.wait_for(total)
        seen = {line.rsplit(" ", 1)[1] for line in lines}
        assert seen == {f"{i:06d}" for i in range(total)}
        assert len(lines) - total <= batch  # duplicates: at most the batch in flight


async def test_graceful_restart_between_batches_is_noticed_before_the_next_batch(
    tmp_path: Path,
) -> None:
    """rsyslog stopped and started between batches: the next batch opens a new session and is
    delivered the first time, nothing lost or doubled."""
    records = varied_records(60)
    with start_rsyslog(tmp_path, relp=True, output="json") as peer:
        sender = transport(f"relp://127.0.0.1:{peer.relp_port}")
        assert await sender.send(records[:30]) == Delivered()
        peer.stop()
        peer.start()
        assert await sender.send(records[30:]) == Delivered()
        await sender.aclose()
        assert sender.sessions_opened == 2
        assert received(peer, len(records)) == [r.text for r in records]


async def test_nothing_listening_is_retry_later(tmp_path: Path) -> None:
    """A stopped receiver: check and send are RetryLater, connection refused."""
    with start_rsyslog(tmp_path, relp=True) as peer:
        port = peer.relp_port
    sender = transport(f"relp://127.0.0.1:{port}")
    result = await sender.check()
    assert isinstance(result, RetryLater)
    assert "connection refused" in result.reason
    result = await sender.send(varied_records(1))
    assert isinstance(result, RetryLater)
    assert "connection refused" in result.reason


# -- RELP over TLS ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    certvalid: RelpTlsFiles
    by_name: RelpTlsFiles
    anonymous: RelpTlsFiles
    client: Path
    intruder: Path
    server_der: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server certificate for localhost and client certificates."""
    base = tmp_path_factory.mktemp("relp-pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    other.cert_pem.write_to_path(str(base / "other-ca.pem"))
    server = ca.issue_cert("localhost")
    server.private_key_pem.write_to_path(str(base / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(base / "server.pem"))
    for name, issued in (("client", "client.example"), ("intruder", "intruder.example")):
        ca.issue_cert(issued).private_key_and_cert_chain_pem.write_to_path(
            str(base / f"{name}.pem")
        )
    files = (base / "ca.pem", base / "server.pem", base / "server.key")
    return Pki(
        ca=base / "ca.pem",
        other_ca=base / "other-ca.pem",
        certvalid=RelpTlsFiles(*files, auth_mode="certvalid"),
        by_name=RelpTlsFiles(*files, auth_mode="name", permitted_peers=("client.example",)),
        anonymous=RelpTlsFiles(*files, auth_mode="anonymous"),
        client=base / "client.pem",
        intruder=base / "intruder.pem",
        server_der=ssl.PEM_cert_to_DER_cert(server.cert_chain_pems[0].bytes().decode()),
    )


def tls_transport(peer: RsyslogPeer, **options: object) -> RelpTransport:
    return transport(f"relp://localhost:{peer.relp_tls_port}", tls=True, **options)


@pytest.mark.parametrize("mode", ["certvalid", "by_name"])
async def test_relp_over_mutual_tls_delivers_every_message_exactly(
    tmp_path: Path, pki: Pki, mode: str
) -> None:
    """RELP over TLS with a verified server and our client certificate (imrelp authmode
    certvalid, and name with permittedpeer): every record arrives exactly."""
    records = varied_records(400)
    files = pki.certvalid if mode == "certvalid" else pki.by_name
    with start_rsyslog(tmp_path, relp_tls=files, output="json") as peer:
        sender = tls_transport(peer, ca_file=str(pki.ca), cert_file=str(pki.client))
        assert await sender.check() == Delivered()
        await send_all(sender, records, batch=100)
        await sender.aclose()
        assert received(peer, len(records)) == [r.text for r in records]


@pytest.mark.parametrize(
    ("mode", "client"),
    [("certvalid", None), ("by_name", None), ("by_name", "intruder")],
)
async def test_client_refused_by_imrelp_is_misconfigured(
    tmp_path: Path, pki: Pki, mode: str, client: str | None
) -> None:
    """Without a client certificate, or with one whose name is not permitted, imrelp refuses
    the session: Misconfigured, and nothing arrives."""
    files = pki.certvalid if mode == "certvalid" else pki.by_name
    options: dict[str, object] = {"ca_file": str(pki.ca)}
    if client is not None:
        options["cert_file"] = str(pki.intruder)
    with start_rsyslog(tmp_path, relp_tls=files, output="json") as peer:
        sender = tls_transport(peer, **options)
        result = await sender.send(varied_records(3))
        assert isinstance(result, Misconfigured), result
        assert not sender.connected
        assert peer.read_lines() == []


async def test_untrusted_server_is_misconfigured(tmp_path: Path, pki: Pki) -> None:
    """A server certificate that does not chain to our ca_file is Misconfigured."""
    with start_rsyslog(tmp_path, relp_tls=pki.certvalid) as peer:
        sender = tls_transport(peer, ca_file=str(pki.other_ca), cert_file=str(pki.client))
        result = await sender.check()
        assert isinstance(result, Misconfigured)
        assert "certificate" in result.reason


async def test_pinned_fingerprint_is_checked(tmp_path: Path, pki: Pki) -> None:
    """The pinned SHA-256 fingerprint alone trusts the server; a wrong pin is Misconfigured."""
    pin = "SHA256:" + hashlib.sha256(pki.server_der).hexdigest()
    wrong = "SHA256:" + "00" * 32
    with start_rsyslog(tmp_path, relp_tls=pki.certvalid, output="json") as peer:
        good = tls_transport(peer, fingerprint=pin, cert_file=str(pki.client))
        assert await good.send(varied_records(2)) == Delivered()
        await good.aclose()
        bad = tls_transport(peer, fingerprint=wrong, cert_file=str(pki.client))
        result = await bad.check()
        assert isinstance(result, Misconfigured)
        assert "does not match the pinned fingerprint" in result.reason


async def test_anonymous_tls_receiver_is_refused(tmp_path: Path, pki: Pki) -> None:
    """An imrelp with TLS but no certificate offers only anonymous TLS: the handshake fails
    and the destination is Misconfigured; nothing is sent."""
    with start_rsyslog(tmp_path, relp_tls=pki.anonymous, output="json") as peer:
        sender = tls_transport(peer, ca_file=str(pki.ca))
        result = await sender.send(varied_records(2))
        assert isinstance(result, Misconfigured), result
        assert "TLS" in result.reason
        assert peer.read_lines() == []
