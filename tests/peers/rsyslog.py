"""A real rsyslog, started and stopped by a test, that writes what it received to a file.

`start_rsyslog(workdir, tcp=True, ...)` writes a config into `workdir`, picks free loopback
ports, starts `rsyslogd -n` in the foreground and waits until every listener is up. The peer
is stopped by PID (SIGTERM, then SIGKILL after a grace period), never by name, and can be
stopped and started again on the same ports to test receiver restarts.

Every input is bound to the ruleset `peer`, so rsyslog's own start/stop messages go to
`internal.log`, never to the output file. Output is one line per received message:

* `output="raw"`: `%rawmsg%`, the message as received without its frame (octet count or
  trailing LF). Control characters are escaped by rsyslog on receive, so an embedded LF shows
  as `#012` and a TAB as `#011`; every message is exactly one line.
* `output="json"`: one JSON object per message, control characters not escaped (JSON escapes
  them). Keys: `rawmsg`, `pri`, `version`, `timestamp`, `hostname`, `app_name`, `procid`,
  `msgid`, `structured_data`, `msg`, and `sd`, the structured data parsed by mmpstrucdata
  (`{sd_id: {param: value}}`, `{}` when the message has none). See `read_json()`.
  With `msg_parser`, rsyslog also parses the MSG into `msg_fields`: `"leef"` with
  mmnormalize and a liblognorm rule for LEEF 2.0 with the TAB delimiter (`LEEF_RULEBASE`:
  the header fields, and `attributes` as a list of `{key, value}`), `"json"` with
  mmjsonparse (no cookie). Either leaves the MSG it cannot parse in `msg_fields` as
  `originalmsg` (mmnormalize) or `msg` (mmjsonparse).

With `relp=True` (and `relp_tls=...` for RELP over TLS) the peer also listens with imrelp
(rsyslog-relp), and its queues are Direct: every message rsyslog acknowledges with a RELP
`200 OK` has been written to the output file before the answer (omfile flushes per
transaction), so it survives a SIGKILL of rsyslogd. `relp_queue="memory"` keeps rsyslog's
in-memory main queue instead (a 200 then follows the enqueue; for benchmarks only).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["RSYSLOGD", "RelpTlsFiles", "RsyslogPeer", "TlsFiles", "start_rsyslog"]

RSYSLOGD = "/usr/sbin/rsyslogd"

_PROBE_APP = "rsyslog-peer-probe"
_START_TIMEOUT_S = 20.0
_STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The files rsyslog's TLS listener uses (PEM).

    `cert_file` / `key_file` are the server's certificate chain and key. `ca_file` is the CA
    that signs client certificates; with `require_client_cert` the listener runs in
    `x509/certvalid` mode and refuses a client without a certificate that chains to it,
    otherwise it runs in `anon` mode and asks for none.
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_cert: bool = False


@dataclass(frozen=True, slots=True)
class RelpTlsFiles:
    """The files of rsyslog's RELP TLS listener (PEM), by librelp's OpenSSL driver.

    `auth_mode` is imrelp's `tls.authmode`: `certvalid` (the client certificate must chain to
    `ca_file`) or `name` (also its name must be one of `permitted_peers`). With `anonymous`
    no certificate is configured at all: librelp then offers only anonymous TLS.
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    auth_mode: Literal["certvalid", "name", "anonymous"] = "certvalid"
    permitted_peers: tuple[str, ...] = ()


def _free_port(kind: int, family: int = socket.AF_INET) -> int:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _q(value: object) -> str:
    """Quote a value for an rsyslog RainerScript string parameter."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + text + '"'


# One JSON object per line; `%$!%` is the whole parsed-JSON tree (mmpstrucdata puts the SD
# under `rfc5424-sd`), made non-empty by `set $!peer = "rsyslog"` so the line is always JSON.
_JSON_TEMPLATE = (
    '{"rawmsg":"%rawmsg:::json%","pri":%pri%,"version":"%protocol-version:::json%",'
    '"timestamp":"%timereported:::date-rfc3339,json%","hostname":"%hostname:::json%",'
    '"app_name":"%app-name:::json%","procid":"%procid:::json%","msgid":"%msgid:::json%",'
    '"structured_data":"%structured-data:::json%","msg":"%msg:::json%","parsed":%$!%}\n'
)


# liblognorm (v2 rule syntax) for a LEEF 2.0 line with the TAB delimiter, with or without the
# UTF-8 BOM of a non-ASCII RFC 5424 MSG: the header split at `|`, then the attributes as a
# repeat of key (up to `=`), `=`, value (up to the next TAB or the end).
_LEEF_ATTRIBUTES = (
    '%attributes:repeat{"parser":[{"type":"char-to","name":"key","extradata":"="},'
    '{"type":"literal","text":"="},{"type":"char-sep","name":"value","extradata":"\\t"}],'
    '"while":[{"type":"literal","text":"\\t"}]}%'
)
_LEEF_HEADER = "|".join(
    f'%{name}:char-to{{"extradata":"|"}}%'
    for name in ("version", "vendor", "product", "product_version", "event_id", "delimiter")
)
LEEF_RULEBASE = (
    "version=2\n"
    f"rule=:LEEF:{_LEEF_HEADER}|{_LEEF_ATTRIBUTES}\n"
    f"rule=:\\xef\\xbb\\xbfLEEF:{_LEEF_HEADER}|{_LEEF_ATTRIBUTES}\n"
)


class RsyslogPeer:
    """One rsyslogd process with fixed ports, writing what it receives to `output_path`."""

    def __init__(
        self,
        workdir: Path,
        *,
        tcp: bool = False,
        udp: bool = False,
        udp6: bool = False,
        tls: TlsFiles | None = None,
        relp: bool = False,
        relp_tls: RelpTlsFiles | None = None,
        relp_queue: Literal["direct", "memory"] = "direct",
        output: Literal["raw", "json"] = "raw",
        max_message_bytes: int = 65536,
        throughput: bool = False,
        msg_parser: Literal["leef", "json"] | None = None,
    ) -> None:
        if msg_parser is not None and output != "json":
            raise ValueError("msg_parser needs output='json'")
        if not (tcp or udp or udp6 or tls or relp or relp_tls):
            raise ValueError(
                "start_rsyslog needs at least one of tcp, udp, udp6, tls, relp, relp_tls"
            )
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.output = output
        self.output_path = self.workdir / "received.log"
        self.internal_path = self.workdir / "internal.log"
        self.probe_path = self.workdir / "probe.log"
        self.config_path = self.workdir / "rsyslog.conf"
        self.pid_path = self.workdir / "rsyslogd.pid"
        self.stderr_path = self.workdir / "rsyslogd.stderr"
        self.tcp_port = _free_port(socket.SOCK_STREAM) if tcp else None
        self.tls_port = _free_port(socket.SOCK_STREAM) if tls else None
        self.udp_port = _free_port(socket.SOCK_DGRAM) if udp else None
        self.udp6_port = _free_port(socket.SOCK_DGRAM, socket.AF_INET6) if udp6 else None
        self.relp_port = _free_port(socket.SOCK_STREAM) if relp else None
        self.relp_tls_port = _free_port(socket.SOCK_STREAM) if relp_tls else None
        self.tls = tls
        self.relp_tls = relp_tls
        self.relp_queue = relp_queue
        self.max_message_bytes = max_message_bytes
        self.throughput = throughput
        self.msg_parser = msg_parser
        self.rulebase_path = self.workdir / "leef.rulebase"
        if msg_parser == "leef":
            self.rulebase_path.write_text(LEEF_RULEBASE)
        self._proc: subprocess.Popen[bytes] | None = None
        self._probes = 0
        self._counted_bytes = 0
        self._counted_lines = 0
        self.config_path.write_text(self._config())

    # -- configuration ---------------------------------------------------------------------

    def _config(self) -> str:
        escape = "on" if self.output == "raw" else "off"
        # For benchmarks: bigger dequeue batches and write buffer, still flushed per batch.
        queue = 'main_queue(queue.dequeueBatchSize="2048" queue.size="400000")'
        direct = bool(self.relp_port or self.relp_tls_port) and self.relp_queue == "direct"
        if direct:  # a RELP 200 OK only after the message is written (docs/delivery.md)
            queue = 'main_queue(queue.type="Direct")'
        relp = bool(self.relp_port or self.relp_tls_port)
        buffer = ' ioBufferSize="1m"' if self.throughput and not direct else ""
        lines = [
            f"global(workDirectory={_q(self.workdir)} maxMessageSize={_q(self.max_message_bytes)}"
            f" parser.escapeControlCharactersOnReceive={_q(escape)})",
            queue if self.throughput or direct else "",
            'module(load="imtcp")' if (self.tcp_port or self.tls_port) else "",
            'module(load="imudp")' if (self.udp_port or self.udp6_port) else "",
            'module(load="imrelp" tls.tlslib="openssl")' if relp else "",
            'module(load="mmpstrucdata")' if self.output == "json" else "",
            'module(load="mmnormalize")' if self.msg_parser == "leef" else "",
            'module(load="mmjsonparse")' if self.msg_parser == "json" else "",
            'template(name="peer_raw" type="string" string="%rawmsg%\\n")',
            f'template(name="peer_json" type="string" string={_q(_JSON_TEMPLATE)})',
            'template(name="peer_probe" type="string" string="%msg%\\n")',
            # rsyslog's own messages (start, stop, errors) stay out of the output file.
            f'*.* action(type="omfile" file={_q(self.internal_path)})',
            'ruleset(name="peer") {',
            f'  if $app-name == "{_PROBE_APP}" then {{',
            f'    action(type="omfile" file={_q(self.probe_path)} template="peer_probe")',
            "    stop",
            "  }",
        ]
        if self.output == "json":
            lines += [
                '  set $!peer = "rsyslog";',
                '  action(type="mmpstrucdata")',
                f'  action(type="mmnormalize" rulebase={_q(self.rulebase_path)}'
                ' path="$!msg_fields")'
                if self.msg_parser == "leef"
                else "",
                '  action(type="mmjsonparse" cookie="" container="$!msg_fields")'
                if self.msg_parser == "json"
                else "",
                f'  action(type="omfile" file={_q(self.output_path)} template="peer_json"{buffer})',
            ]
        else:
            lines.append(
                f'  action(type="omfile" file={_q(self.output_path)} template="peer_raw"{buffer})'
            )
        lines.append("}")
        if self.tcp_port:
            lines.append(
                f'input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="peer")'
            )
        if self.tls_port and self.tls:
            mode = "x509/certvalid" if self.tls.require_client_cert else "anon"
            lines.append(
                f'input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="peer"'
                f' streamDriver.name="gtls" streamDriver.mode="1"'
                f' streamDriver.authMode="{mode}"'
                f" streamDriver.CAFile={_q(self.tls.ca_file)}"
                f" streamDriver.CertFile={_q(self.tls.cert_file)}"
                f" streamDriver.KeyFile={_q(self.tls.key_file)})"
            )
        if self.relp_port:
            lines.append(
                f'input(type="imrelp" address="127.0.0.1" port="{self.relp_port}"'
                f' ruleset="peer" maxDataSize={_q(self.max_message_bytes)})'
            )
        if self.relp_tls_port and self.relp_tls:
            lines.append(self._relp_tls_input(self.relp_tls_port, self.relp_tls))
        if self.udp_port:
            lines.append(
                f'input(type="imudp" address="127.0.0.1" port="{self.udp_port}" ruleset="peer")'
            )
        if self.udp6_port:
            lines.append(
                f'input(type="imudp" address="::1" port="{self.udp6_port}" ruleset="peer")'
            )
        return "\n".join(line for line in lines if line) + "\n"

    def _relp_tls_input(self, port: int, files: RelpTlsFiles) -> str:
        settings = (
            ""
            if files.auth_mode == "anonymous"
            else f" tls.cacert={_q(files.ca_file)} tls.mycert={_q(files.cert_file)}"
            f" tls.myprivkey={_q(files.key_file)} tls.authmode={_q(files.auth_mode)}"
        )
        if files.permitted_peers:
            peers = ", ".join(_q(peer) for peer in files.permitted_peers)
            settings += f" tls.permittedpeer=[{peers}]"
        return (
            f'input(type="imrelp" address="127.0.0.1" port="{port}" ruleset="peer"'
            f' maxDataSize={_q(self.max_message_bytes)} tls="on"{settings})'
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The PID of the running rsyslogd, or None when it is stopped."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start rsyslogd and return once every configured listener accepts messages."""
        if self._proc is not None:
            raise RuntimeError("rsyslog peer is already running")
        with self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.config_path), "-i", str(self.pid_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.workdir,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop rsyslogd by PID: SIGTERM, then SIGKILL if it has not exited after a grace."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def kill(self) -> None:
        """Kill rsyslogd with SIGKILL (an ungraceful receiver crash)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RsyslogPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _failure(self, what: str) -> RuntimeError:
        stderr = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        internal = (
            self.internal_path.read_text(errors="replace") if self.internal_path.exists() else ""
        )
        return RuntimeError(
            f"rsyslog peer {what}\n--- config ---\n{self.config_path.read_text()}"
            f"--- stderr ---\n{stderr[-4000:]}\n--- internal.log ---\n{internal[-4000:]}"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        ports = (self.tcp_port, self.tls_port, self.relp_port, self.relp_tls_port)
        pending_tcp = [p for p in ports if p]
        pending_udp = [
            (fam, host, port)
            for fam, host, port in (
                (socket.AF_INET, "127.0.0.1", self.udp_port),
                (socket.AF_INET6, "::1", self.udp6_port),
            )
            if port
        ]
        while pending_tcp or pending_udp:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise self._failure(f"exited with status {self._proc.returncode} at start")
            if time.monotonic() > deadline:
                raise self._failure(f"did not open its listeners within {_START_TIMEOUT_S} s")
            for port in list(pending_tcp):
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    pending_tcp.remove(port)
            for entry in list(pending_udp):
                if self._udp_probe(*entry):
                    pending_udp.remove(entry)
            if pending_tcp or pending_udp:
                time.sleep(0.05)

    def _udp_probe(self, family: int, host: str, port: int) -> bool:
        """Send a probe datagram (routed to probe.log, not the output) and look for it."""
        self._probes += 1
        token = f"probe-{port}-{self._probes}"
        message = f"<14>1 - - {_PROBE_APP} - - - {token}".encode()
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, (host, port))
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            if self.probe_path.exists() and f"probe-{port}-" in self.probe_path.read_text():
                return True
            time.sleep(0.02)
        return False

    # -- what the peer received ------------------------------------------------------------

    def read_lines(self) -> list[str]:
        """Every complete line the peer wrote so far, without line ends (UTF-8, replace)."""
        try:
            data = self.output_path.read_bytes()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        return data[:end].decode("utf-8", errors="replace").split("\n")

    def read_json(self) -> list[dict[str, Any]]:
        """With `output="json"`: every message as a dict, `sd` holding the parsed SD."""
        records = []
        for line in self.read_lines():
            obj = json.loads(line)
            parsed = obj.pop("parsed", {})
            obj["sd"] = parsed.get("rfc5424-sd", {})
            obj["msg_fields"] = parsed.get("msg_fields")
            records.append(obj)
        return records

    def count_lines(self) -> int:
        """How many complete lines the peer wrote so far (incremental: cheap to poll)."""
        try:
            with self.output_path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self._counted_bytes:  # the file was replaced: count afresh
                    self._counted_bytes = self._counted_lines = 0
                fh.seek(self._counted_bytes)
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    self._counted_lines += chunk.count(b"\n")
                    self._counted_bytes += len(chunk)
        except FileNotFoundError:
            self._counted_bytes = self._counted_lines = 0
        return self._counted_lines

    def wait_for(self, count: int, timeout: float = 30.0) -> list[str]:
        """Wait until the peer wrote at least `count` lines and return all of them.

        Raises `TimeoutError` (with what arrived) if they are not there within `timeout`.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.count_lines()
            if seen >= count:
                return self.read_lines()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"rsyslog peer wrote {seen} of {count} expected lines within {timeout} s;"
                    f" output: {self.output_path}"
                )
            time.sleep(0.02)


@contextlib.contextmanager
def start_rsyslog(
    workdir: Path,
    *,
    tcp: bool = False,
    udp: bool = False,
    udp6: bool = False,
    tls: TlsFiles | None = None,
    relp: bool = False,
    relp_tls: RelpTlsFiles | None = None,
    relp_queue: Literal["direct", "memory"] = "direct",
    output: Literal["raw", "json"] = "raw",
    max_message_bytes: int = 65536,
    throughput: bool = False,
    msg_parser: Literal["leef", "json"] | None = None,
) -> Iterator[RsyslogPeer]:
    """Run an rsyslog peer in `workdir` (use a fresh directory per test) for a `with` block.

    `throughput=True` tunes rsyslog's main queue and file writer for benchmarks.
    """
    peer = RsyslogPeer(
        workdir,
        tcp=tcp,
        udp=udp,
        udp6=udp6,
        tls=tls,
        relp=relp,
        relp_tls=relp_tls,
        relp_queue=relp_queue,
        output=output,
        max_message_bytes=max_message_bytes,
        throughput=throughput,
        msg_parser=msg_parser,
    )
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


if __name__ == "__main__":  # pragma: no cover - manual smoke run
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, start_rsyslog(Path(tmp), tcp=True, udp=True) as p:
        print(f"rsyslog pid {p.pid} tcp {p.tcp_port} udp {p.udp_port}; Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    os._exit(0)
