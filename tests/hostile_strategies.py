"""Hypothesis strategies for hostile destinations: odd endpoints, wrong-typed options, bad secrets.

Every host a generated endpoint names is a loopback address (127.0.0.0/8, ::1, in any
spelling) or a name under `.invalid`, which `loopback_resolver` resolves to loopback, so
nothing generated here can reach another machine. Two placeholders are filled in by the
test: `{peer}`, the port of a hostile peer the test runs on loopback, and `{tmp}`, a
directory of the test's own under which every generated file path lies.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import strategies as st

from xavyo_siem.delivery import allowed_options
from xavyo_siem.model import DeliveryType, ExportFormat

__all__ = [
    "PEER_REPLIES",
    "HostileDestination",
    "hostile_destinations",
    "loopback_resolver",
]

PEER = "{peer}"
TMP = "{tmp}"

# Spellings of loopback that a URL parser, a resolver or an HTTP client may each read
# differently; whichever way one reads them, they stay on this machine.
_LOOPBACK_HOSTS: Final = (
    "127.0.0.1",
    "127.0.0.1.",
    "127.1",
    "127.255.255.254",
    "2130706433",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::1%25lo]",
    "[::1%lo]",
    "[127.0.0.1]",
    "[::1",
    "::1]",
    "::1",
    "a[::1]",
    "[::1]]",
    "[[::1]]",
)
_INVALID_NAMES: Final = (
    "siem.invalid",
    "SIEM.INVALID.",
    "invalid",
    "xn--bcher-kva.invalid",
    "bücher.invalid",
    "ΣΙΕΜ.invalid",
    "siem\u200b.invalid",
    "a..invalid",
    "-bad-.invalid",
    "_srv._tcp.invalid",
    "*.invalid",
    "a" * 63 + ".invalid",
    "a" * 64 + ".invalid",
    ".".join(["b" * 60] * 4) + ".invalid",
    "127.0.0.1.invalid",
    "siem.invalid:80@127.0.0.1",
)
_LABEL: Final = st.text(
    alphabet=st.sampled_from("abcz09-_.%ü\u00e9\u0130Σ"), min_size=1, max_size=70
)
hosts: Final = st.one_of(
    st.sampled_from(_LOOPBACK_HOSTS),
    st.sampled_from(_INVALID_NAMES),
    _LABEL.map(lambda label: f"{label}.invalid"),
)

ports: Final = st.sampled_from(
    (
        "",
        ":",
        ":0",
        ":00",
        ":65535",
        ":65536",
        ":99999",
        ":18446744073709551617",
        ":-1",
        ":+1",
        ": 1",
        ":1e3",
        ":0x10",
        ":http",
        f":{PEER}",
        f":{PEER}",
        f":{PEER}",
        f":000{PEER}",
        f":{PEER}:{PEER}",
    )
)

userinfos: Final = st.sampled_from(
    ("", "", "", "user@", "user:pa%40ss@", "127.0.0.1@", ":@", "@", "%00@", "siem.invalid@")
)

paths: Final = st.one_of(
    st.sampled_from(
        (
            "",
            "/",
            "/x",
            "/services/collector",
            "/services/collector/event",
            "/%2e%2e/%2F%2f",
            "/%zz",
            "/x?%00=1",
            "/x?a=1&a=2",
            "/x#fragment",
            "/ü/€/🔐",
            "/x/../../admin",
            "/ x",
            "/x\r\nHost: other.invalid",
            "\\x",
            "?only=query",
        )
    ),
    st.integers(min_value=100, max_value=4000).map(lambda n: "/" + "a" * n),
    st.text(alphabet=st.sampled_from("/a%2F.ü?#;"), max_size=30).map(lambda p: "/" + p),
)

_SCHEMES: Final[dict[DeliveryType, str]] = {
    DeliveryType.SYSLOG_TCP: "tcp",
    DeliveryType.SYSLOG_TLS: "tls",
    DeliveryType.SYSLOG_UDP: "udp",
    DeliveryType.SYSLOG_RELP: "relp",
    DeliveryType.WEBHOOK: "https",
    DeliveryType.SPLUNK_HEC: "https",
    DeliveryType.ELASTICSEARCH: "https",
    DeliveryType.SENTINEL: "https",
    DeliveryType.S3: "s3",
}
_ODD_SCHEMES: Final = (
    "http",
    "HTTPS",
    "tcp",
    "tls",
    "udp",
    "file",
    "ftp",
    "gopher",
    "javascript",
    "ws",
    "unix",
    "tcp+tls",
    "relp",
    "",
)

# Endpoints no part-by-part construction makes: broken authorities and separators.
_MALFORMED: Final = (
    "https://a[::1]/x",
    "https://[::1]]/x",
    "https://[[::1]]/",
    "https://[::1/x",
    "https://::1/x",
    "tcp://127.0.0.1:514:515",
    "udp://[::1]:514/",
    "https:///x",
    "https://",
    "tcp:127.0.0.1",
    "tcp:/127.0.0.1:514",
    "https:\\\\127.0.0.1\\x",
    "HTTPS://127.0.0.1/ x",
    "https://127.0.0.1\t/",
    "https://127.0.0.1/x\r\nX-Injected: 1",
    "https://127.0.0.1%2f@siem.invalid/",
    "https://siem.invalid%00.127.0.0.1/",
    "https://127.0.0.1:{peer}#@siem.invalid/",
    "https://user@[::1]:{peer}/x",
    "tls://[::ffff:127.0.0.1]:{peer}",
    "",
    " ",
    "://",
    "\u202ehttps://127.0.0.1/",
)


# Hosts and paths validation accepts, some of which URL parsers read differently.
_PLAUSIBLE_HOSTS: Final = (
    "127.0.0.1",
    "127.0.0.1",
    "[::1]",
    "[::1]",
    "siem.invalid",
    "SIEM.INVALID.",
    "xn--bcher-kva.invalid",
    "_srv.invalid",
    "a" * 63 + ".invalid",
    "[::ffff:127.0.0.1]",
    "127.1",
    "2130706433",
    "a[::1]",
)
_PLAUSIBLE_PORTS: Final = (f":{PEER}", f":{PEER}", f":{PEER}", f":0{PEER}", ":65535", "")
_HTTP_PATHS: Final = (
    "",
    "/",
    "/services/collector",
    "/services/collector/event",
    "/x?a=1&a=2",
    "/%2e%2e/%2F%2f",
    "/%zz",
    "/ü/€",
    "/" + "a" * 1800,
)


@st.composite
def endpoints(draw: st.DrawFn, delivery_type: DeliveryType, *, plausible: bool) -> str:
    """An endpoint for `delivery_type`: one validation may well accept (its scheme, a
    plausible host, a port) when `plausible`, else often one with hostile parts."""
    if delivery_type is DeliveryType.FILE:
        if plausible:
            return f"file://{TMP}/{draw(st.sampled_from(('out.log', 'ü🔐.log', 'f' * 255)))}"
        return draw(file_endpoints())
    if plausible or draw(st.booleans()):
        scheme = _SCHEMES[delivery_type]
        path = draw(st.sampled_from(_HTTP_PATHS if scheme == "https" else ("", "/")))
        host = draw(st.sampled_from(_PLAUSIBLE_HOSTS))
        return f"{scheme}://{host}{draw(st.sampled_from(_PLAUSIBLE_PORTS))}{path}"
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(st.sampled_from(_MALFORMED))
    scheme = draw(st.sampled_from((_SCHEMES[delivery_type],) * 4 + _ODD_SCHEMES))
    return (
        f"{scheme}://{draw(userinfos)}{draw(hosts)}{draw(ports)}"
        f"{draw(paths) if draw(st.booleans()) else ''}"
    )


_SEGMENT: Final = st.one_of(
    st.sampled_from(("out.log", "%2e%2e", "..", ".", "%00", "%2F", "a%20b", "ü.log", "🔐")),
    st.text(alphabet=st.sampled_from("ab%2Fü.-_ "), min_size=1, max_size=20),
    st.integers(min_value=200, max_value=300).map(lambda n: "f" * n),
)


@st.composite
def file_endpoints(draw: st.DrawFn) -> str:
    """A file:// endpoint whose path lies under `{tmp}` (at most two `..` deep, and `{tmp}`
    is two directories below the test's own), with odd authorities and escapes."""
    authority = draw(st.sampled_from(("", "", "localhost", "127.0.0.1", "siem.invalid")))
    segments = draw(st.lists(_SEGMENT, max_size=3))
    if sum(segment in ("..", "%2e%2e") for segment in segments) > 2:
        segments = [s for s in segments if s not in ("..", "%2e%2e")]
    tail = "/".join(segments)
    suffix = draw(st.sampled_from(("", "/", "?q", "#f", ";x")))
    return f"file://{authority}{TMP}/{tail}{suffix}"


# Known option names of every type and format, and names nothing knows.
_KNOWN_OPTIONS: Final = (
    "batch_max_events",
    "batch_max_bytes",
    "start",
    "framing",
    "timeout_s",
    "max_datagram_bytes",
    "truncate",
    "confirm_after_s",
    "max_attempts",
    "max_age_s",
    "breaker_threshold",
    "breaker_cooldown_s",
    "window",
    "max_message_bytes",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "fingerprint",
    "server_name",
    "tls_verify",
    "body",
    "gzip",
    "ack",
    "index",
    "source",
    "sourcetype",
    "host",
    "ack_timeout_s",
    "ack_poll_interval_s",
    "ack_max_pending",
    "max_requests_in_flight",
    "hostname",
    "app_name",
    "procid",
    "facility",
    "enterprise_number",
    "formula_guard",
    "cs_max_chars",
    "delimiter",
    "dcr_immutable_id",
    "stream",
    "tenant",
    "client_id",
    "authority_host",
    "audience",
    "endpoint_url",
    "region",
    "addressing",
    "checksum",
    "object_max_age_s",
    "layout",
    "account_id",
)
_UNKNOWN_OPTIONS: Final = ("", " ", "TIMEOUT_S", "timeout_s ", "__proto__", "x" * 200, "ünknown")
option_names: Final = st.one_of(
    st.sampled_from(_KNOWN_OPTIONS),
    st.sampled_from(_KNOWN_OPTIONS),
    st.sampled_from(_UNKNOWN_OPTIONS),
)

_FINGERPRINT: Final = "SHA256:" + ":".join(["AB"] * 32)
_STRING_VALUES: Final = (
    "",
    " ",
    "true",
    "TRUE",
    "yes",
    "off",
    "0",
    "1",
    "-1",
    " 7 ",
    "1e3",
    "0x10",
    "\uff11\uff12",
    "٣",
    "nan",
    "inf",
    "300.0000001",
    "0.1",
    "0.00001",
    "999999999999",
    "now",
    "beginning",
    "2024-01-01T00:00:00+00:00",
    "2024-01-01T00:00:00",
    "9999-12-31T23:59:59+14:00",
    "octet",
    "lf",
    "json_array",
    "ndjson",
    _FINGERPRINT,
    "SHA1:" + ":".join(["AB"] * 20),
    "SHA256:zz",
    "/dev/null",
    "/nonexistent/ca.pem",
    f"{TMP}/garbage.pem",
    "relative/ca.pem",
    "/" + "a" * 5000,
    "\x00",
    "a\nb",
    "ünicode",
    "x" * 2000,
    "siem.invalid",
    "127.0.0.1",
)
option_values: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from((0, -1, 1, 7, 480, 65507, 65528, 2**31, 2**63, 2**64, 10**30)),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_STRING_VALUES),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
option_dicts: Final = st.dictionaries(option_names, option_values, max_size=5)

# Values at the edges of what each known option accepts (and a few just past them).
_seconds_edges = st.sampled_from((0.1, 300, "0.1", "300", 1, 0.05, 301))
_EDGE_VALUES: Final[dict[str, st.SearchStrategy[Any]]] = {
    "batch_max_events": st.sampled_from((1, 2, 100_000, "1", " 7 ", 0, 100_001)),
    "batch_max_bytes": st.sampled_from((1024, 64 << 20, "1024", 1023)),
    "start": st.sampled_from(
        (
            "now",
            "beginning",
            "beginning",
            "2024-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00",
        )
    ),
    "framing": st.sampled_from(("octet", "lf", "LF")),
    "timeout_s": _seconds_edges,
    "max_datagram_bytes": st.sampled_from((480, 65507, 65527, 479, 65528)),
    "truncate": st.sampled_from((True, "false", "maybe")),
    "confirm_after_s": st.sampled_from((0, 0.05, 60, "1", 61)),
    "max_attempts": st.sampled_from((1, 3, "1000000", 0)),
    "max_age_s": st.sampled_from((1, "3600", 0.5)),
    "breaker_threshold": st.sampled_from((1, 1000, 0)),
    "breaker_cooldown_s": st.sampled_from((0.1, "86400", 0.01)),
    "window": st.sampled_from((1, 1024, 0, 1025)),
    "max_message_bytes": st.sampled_from((128, 8096, 64 << 20, 127)),
    "tls": st.sampled_from((True, "true", False, "off", "maybe")),
    "ca_file": st.sampled_from(("/dev/null", f"{TMP}/garbage.pem", "/nonexistent/ca.pem")),
    "cert_file": st.sampled_from(("/dev/null", f"{TMP}/garbage.pem", "/nonexistent/c.pem")),
    "key_file": st.sampled_from(("/dev/null", f"{TMP}/garbage.pem", "/nonexistent/k.pem")),
    "fingerprint": st.sampled_from(
        (_FINGERPRINT, "sha512:" + ":".join(["0f"] * 64), "SHA256:" + "AB" * 32)
    ),
    "server_name": st.sampled_from(("siem.invalid", "127.0.0.1", "a" * 63 + ".invalid", "ü")),
    "tls_verify": st.sampled_from((True, "true", False, "false")),
    "body": st.sampled_from(("json_array", "ndjson")),
    "gzip": st.booleans(),
    "ack": st.booleans(),
    "index": st.sampled_from(("main", "x" * 80, "ü")),
    "source": st.sampled_from(("xavyo", "x" * 1024, "a\tb")),
    "sourcetype": st.sampled_from(("_json", "x" * 256)),
    "host": st.sampled_from(("idp", "x" * 256)),
    "ack_timeout_s": st.sampled_from((0.01, 0.5, 3600)),
    "ack_poll_interval_s": st.sampled_from((0.01, 60)),
    "ack_max_pending": st.sampled_from((1, 1000)),
    "max_requests_in_flight": st.sampled_from((1, 8)),
    "op_type": st.sampled_from(("create", "index", "update")),
    "pipeline": st.sampled_from(("_none", "audit@custom", "a b")),
    "require_data_stream": st.sampled_from((True, "false", "maybe")),
    "dcr_immutable_id": st.sampled_from(("dcr-" + "a" * 32, "dcr-" + "0" * 31, "x")),
    "stream": st.sampled_from(("Custom-XavyoAudit_CL", "Microsoft-ASimAuditEventLogs", "a/b")),
    "tenant": st.sampled_from(("72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso.example", "..")),
    "client_id": st.sampled_from(("00000000-0000-4000-8000-000000000002", "app")),
    "authority_host": st.sampled_from(
        ("https://login.microsoftonline.com", "https://login.invalid", "https://127.0.0.1:1/x")
    ),
    "audience": st.sampled_from(("https://monitor.azure.com", "https://monitor.azure.us", "x")),
    "endpoint_url": st.sampled_from(
        (
            "http://127.0.0.1:{peer}",
            "https://127.0.0.1:{peer}",
            "http://[::1]:{peer}",
            "http://siem.invalid:{peer}/",
            "http://169.254.169.254",
            "http://127.0.0.1:{peer}/path",
            "ftp://127.0.0.1:{peer}",
        )
    ),
    "region": st.sampled_from(("us-east-1", "eu-west-1", "EU", "")),
    "addressing": st.sampled_from(("auto", "path", "virtual", "PATH")),
    "checksum": st.sampled_from(("sha256", "md5", "crc32")),
    "object_max_age_s": st.sampled_from((0, 0.1, 86_400, 86_401, -1)),
    "layout": st.sampled_from(("hive", "security_lake", "lake")),
    "account_id": st.sampled_from(("123456789012", "ext-id.1", "a b", "")),
}
# A sentinel destination names its rule, stream and app: plausible ones have all four.
_NEEDED_OPTIONS: Final[dict[DeliveryType, dict[str, str]]] = {
    DeliveryType.SENTINEL: {
        "dcr_immutable_id": "dcr-" + "0" * 32,
        "stream": "Custom-XavyoAudit_CL",
        "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "00000000-0000-4000-8000-000000000002",
    }
}
_FORMAT_EDGE_VALUES: Final[dict[str, st.SearchStrategy[Any]]] = {
    "hostname": st.sampled_from(("h", "x" * 255, "-", "ü")),
    "app_name": st.sampled_from(("a", "x" * 48, "-")),
    "procid": st.sampled_from(("1", "x" * 128)),
    "facility": st.sampled_from((0, 23, "13")),
    "enterprise_number": st.sampled_from((1, 32473, 2**31 - 1)),
    "formula_guard": st.sampled_from((True, False, "yes")),
    "delimiter": st.sampled_from(("x09", "\t", "^", "0x7E", "|")),
}


_FORMAT_OPTION_NAMES: Final[dict[ExportFormat, tuple[str, ...]]] = {
    ExportFormat.SYSLOG: ("hostname", "app_name", "procid", "facility", "enterprise_number"),
    ExportFormat.CSV: ("formula_guard",),
    ExportFormat.LEEF: ("delimiter",),
}


@st.composite
def options_for(
    draw: st.DrawFn, delivery_type: DeliveryType, export_format: ExportFormat, *, plausible: bool
) -> dict[str, Any]:
    """The type's own options with values at their edges (and, sometimes, the format's
    options) when `plausible`, else often a hostile mix of names and wrong-typed values."""
    if not plausible and draw(st.booleans()):
        return dict(draw(option_dicts))
    own = sorted(allowed_options(delivery_type))
    names = draw(st.lists(st.sampled_from(own), unique=True, max_size=4))
    options = {name: draw(_EDGE_VALUES[name]) for name in names}
    for name, value in _NEEDED_OPTIONS.get(delivery_type, {}).items():
        options.setdefault(name, value)
    format_names = _FORMAT_OPTION_NAMES.get(export_format, ())
    with_format_option = draw(st.booleans())
    if format_names and with_format_option:
        name = draw(st.sampled_from(format_names))
        options[name] = draw(_FORMAT_EDGE_VALUES[name])
    return options


_GOOD_SECRETS: Final[dict[DeliveryType, st.SearchStrategy[str | None]]] = {
    DeliveryType.SPLUNK_HEC: st.just("00000000-0000-4000-8000-000000000001"),
    DeliveryType.WEBHOOK: st.sampled_from((None, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
    DeliveryType.ELASTICSEARCH: st.sampled_from((None, "aWQxOmtleTE=")),  # base64 "id1:key1"
    DeliveryType.SENTINEL: st.just("Qx8Q~client.secret-of-the_app~0123456789"),
    DeliveryType.S3: st.just('{"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cret-x"}'),
}

secrets: Final = st.one_of(
    st.none(),
    st.sampled_from(
        (
            "",
            "hec-token-0001",
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000001\n",
            "token with space",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            '{"signing_secrets": 5}',
            '{"signing_secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "auth": []}',
            "{",
            '{"access_key_id": "AKIAEXAMPLE"}',
            '{"access_key_id": "AKIA EXAMPLE", "secret_access_key": "s3cret-x"}',
            "x" * 10_000,
            "ü🔐",
        )
    ),
    st.text(max_size=20),
)

# What the hostile peer answers every connection with, before it hangs up.
PEER_REPLIES: Final[Sequence[bytes]] = (
    b"",
    b"\x00\xff garbage \r\n\r\n",
    b"\x16\x03\x01\x00\x05hello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 503 Busy\r\nRetry-After: 99999999999\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{",
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    b'HTTP/1.1 400 Bad Request\r\nContent-Length: 30\r\n\r\n{"text":"x","code":6,"invalid',
)


@dataclass(frozen=True, slots=True)
class HostileDestination:
    """A destination a hostile tenant might ask for; `endpoint` and option values may hold
    the `{peer}` and `{tmp}` placeholders."""

    tenant: int  # which of the other tenants asks for it
    delivery_type: DeliveryType
    format: ExportFormat
    endpoint: str
    options: dict[str, Any]
    secret: str | None


@st.composite
def hostile_destinations(draw: st.DrawFn, tenants: int) -> HostileDestination:
    """A destination of any delivery type for one of `tenants` other tenants: three times in
    five a plausible one (about half of which validation accepts), else a hostile mix."""
    delivery_type = draw(st.sampled_from(DeliveryType))
    plausible = draw(st.integers(min_value=0, max_value=4)) < 3
    formats = list(ExportFormat)
    if plausible and delivery_type is not DeliveryType.FILE:  # csv is for files only
        formats.remove(ExportFormat.CSV)
    export_format = draw(st.sampled_from(formats))
    options = draw(options_for(delivery_type, export_format, plausible=plausible))
    if draw(st.booleans()):  # most accepted destinations deliver what is stored already
        options.setdefault("start", "beginning")
    good_secret = plausible or draw(st.booleans())
    return HostileDestination(
        tenant=draw(st.integers(min_value=0, max_value=tenants - 1)),
        delivery_type=delivery_type,
        format=export_format,
        endpoint=draw(endpoints(delivery_type, plausible=plausible)),
        options=options,
        secret=draw(_GOOD_SECRETS.get(delivery_type, st.none()) if good_secret else secrets),
    )


def loopback_resolver(
    host: str, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[tuple[Any, ...]]:
    """`socket.getaddrinfo` without DNS: IP literals as the system reads them, names under
    `.invalid` as 127.0.0.1 and ::1, and every other name as not found."""
    try:
        return socket.getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        pass
    name = str(host).lower().rstrip(".")
    if name == "invalid" or name.endswith(".invalid"):
        infos: list[tuple[Any, ...]] = []
        for address in ("127.0.0.1", "::1"):
            try:
                infos += socket.getaddrinfo(
                    address, port, family, type, proto, socket.AI_NUMERICHOST
                )
            except socket.gaierror:
                continue
        if infos:
            return infos
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
