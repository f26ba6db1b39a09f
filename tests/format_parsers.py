"""Strict, independent parsers for the records xavyo_siem.format writes (tests only).

Written from the specs alone (the CEF guide, RFC 5424, JSON, RFC 4180, the OCSF 1.5.0 schema
as ocsf-json-schema bundles it) and sharing no code with the encoders: a parser either
returns every field of exactly one record or raises `ParseError`. They are stricter than
real consumers on purpose: any escape the spec does not define, any raw control character
where a record must be one line, any repeated key or SD-ID is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CefRecord",
    "CsvField",
    "OcsfRecord",
    "ParseError",
    "SyslogRecord",
    "parse_cef",
    "parse_csv",
    "parse_json_line",
    "parse_ocsf",
    "parse_syslog",
]


class ParseError(ValueError):
    """The text is not one well-formed record of its format."""


def _no_line_breaks(text: str) -> None:
    if "\n" in text or "\r" in text:
        raise ParseError("a record must not contain a raw CR or LF")


# ---------------------------------------------------------------------------------------
# CEF (ArcSight's CEF guide)


@dataclass(frozen=True)
class CefRecord:
    """One parsed CEF line: the seven header fields (unescaped) and the extension pairs."""

    version: str
    vendor: str
    product: str
    device_version: str
    signature_id: str
    name: str
    severity: str
    extension: dict[str, str]


_RAW_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CEF_KEY = re.compile("[A-Za-z0-9]+")


def parse_cef(line: str) -> CefRecord:
    """Parse one CEF line strictly.

    Header escapes are exactly `\\\\` and `\\|`; extension escapes `\\\\`, `\\=`, `\\n`, `\\r`.
    """
    _no_line_breaks(line)
    if _RAW_CONTROL.search(line):
        raise ParseError("raw control character in a CEF line")
    if not line.startswith("CEF:"):
        raise ParseError("a CEF line starts with 'CEF:'")
    header: list[str] = []
    current: list[str] = []
    i = 4
    while len(header) < 7:
        if i >= len(line):
            raise ParseError(f"the header ends after {len(header)} fields")
        char = line[i]
        if char == "\\":
            nxt = line[i + 1 : i + 2]
            if nxt not in ("\\", "|"):
                raise ParseError(f"invalid header escape \\{nxt!r} at {i}")
            current.append(nxt)
            i += 2
        elif char == "|":
            header.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    extension = _parse_cef_extension(line[i:])
    if header[0] != "0":
        raise ParseError(f"CEF version must be 0, got {header[0]!r}")
    for index, value in enumerate(header):
        if value == "":
            raise ParseError(f"header field {index} is empty")
    return CefRecord(*header, extension=extension)


def _parse_cef_extension(text: str) -> dict[str, str]:
    if text == "":
        return {}
    # Split at unescaped '=' first: everything between two of them is "value SP key".
    chunks: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt not in ("\\", "=", "n", "r"):
                raise ParseError(f"invalid extension escape \\{nxt!r} at {i}")
            i += 2
        elif char == "=":
            chunks.append(text[start:i])
            start = i + 1
            i += 1
        else:
            i += 1
    chunks.append(text[start:])
    if len(chunks) < 2:
        raise ParseError("extension without a key=value pair")
    keys = [chunks[0]]
    raw_values = []
    for middle in chunks[1:-1]:
        value, sep, key = middle.rpartition(" ")
        if not sep:
            raise ParseError(f"no space before the key in {middle[-40:]!r}")
        raw_values.append(value)
        keys.append(key)
    raw_values.append(chunks[-1])
    pairs: dict[str, str] = {}
    for key, raw in zip(keys, raw_values, strict=True):
        if not _CEF_KEY.fullmatch(key):
            raise ParseError(f"invalid extension key {key!r}")
        if key in pairs:
            raise ParseError(f"repeated extension key {key!r}")
        pairs[key] = _unescape_cef_value(raw)
    return pairs


def _unescape_cef_value(raw: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\":
            nxt = raw[i + 1]
            out.append({"\\": "\\", "=": "=", "n": "\n", "r": "\r"}[nxt])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------
# RFC 5424


@dataclass(frozen=True)
class SyslogRecord:
    """One parsed RFC 5424 message; `sd` maps SD-ID to its params (a name -> list of values)."""

    pri: int
    version: int
    timestamp: str
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    sd: dict[str, dict[str, list[str]]]
    msg: str | None
    bom: bool


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})"
)
_SD_NAME_CHARS = frozenset(chr(c) for c in range(33, 127)) - frozenset('= ]"')


def _printusascii(value: str, limit: int, what: str) -> str | None:
    if not 1 <= len(value) <= limit:
        raise ParseError(f"{what} must be 1 to {limit} characters, got {len(value)}")
    if any(not 33 <= ord(c) <= 126 for c in value):
        raise ParseError(f"{what} must be printable US-ASCII: {value!r}")
    return None if value == "-" else value


def _sd_name(text: str, i: int, what: str) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] in _SD_NAME_CHARS:
        i += 1
    name = text[start:i]
    if not 1 <= len(name) <= 32:
        raise ParseError(f"{what} must be 1 to 32 characters, got {name!r}")
    return name, i


def parse_syslog(message: str) -> SyslogRecord:
    """Parse one RFC 5424 message (no frame) per the ABNF of RFC 5424, strictly."""
    _no_line_breaks(message)
    match = re.match(r"<(0|[1-9]\d{0,2})>([1-9]\d{0,2}) ", message)
    if match is None:
        raise ParseError("message must start with <PRI>VERSION SP")
    pri = int(match.group(1))
    if pri > 191:
        raise ParseError(f"PRI {pri} is over 191")
    rest = message[match.end() :]
    fields = rest.split(" ", 5)
    if len(fields) < 6:
        raise ParseError("header has fewer than six fields")
    timestamp, hostname, app_name, procid, msgid, rest = fields
    if timestamp != "-":
        ts = _TIMESTAMP.fullmatch(timestamp)
        if ts is None:
            raise ParseError(f"bad TIMESTAMP {timestamp!r}")
        if int(ts.group(6)) > 59:
            raise ParseError("leap seconds are not allowed")
    host = _printusascii(hostname, 255, "HOSTNAME")
    app = _printusascii(app_name, 48, "APP-NAME")
    proc = _printusascii(procid, 128, "PROCID")
    mid = _printusascii(msgid, 32, "MSGID")
    sd: dict[str, dict[str, list[str]]] = {}
    i = 0
    if rest.startswith("-"):
        i = 1
    else:
        if not rest.startswith("["):
            raise ParseError("STRUCTURED-DATA must be '-' or start with '['")
        while i < len(rest) and rest[i] == "[":
            sd_id, i = _sd_name(rest, i + 1, "SD-ID")
            if sd_id in sd:
                raise ParseError(f"repeated SD-ID {sd_id!r}")
            params: dict[str, list[str]] = {}
            while rest[i : i + 1] == " ":
                name, i = _sd_name(rest, i + 1, "PARAM-NAME")
                if rest[i : i + 2] != '="':
                    raise ParseError(f"PARAM-NAME {name!r} not followed by '=\"'")
                i += 2
                value: list[str] = []
                while True:
                    if i >= len(rest):
                        raise ParseError("unterminated PARAM-VALUE")
                    char = rest[i]
                    if char == "\\":
                        nxt = rest[i + 1 : i + 2]
                        if nxt not in ('"', "\\", "]"):
                            raise ParseError(f"backslash before {nxt!r}: '\\' must be escaped")
                        value.append(nxt)
                        i += 2
                    elif char == '"':
                        i += 1
                        break
                    elif char == "]":
                        raise ParseError("unescaped ']' in a PARAM-VALUE")
                    else:
                        value.append(char)
                        i += 1
                params.setdefault(name, []).append("".join(value))
            if rest[i : i + 1] != "]":
                raise ParseError(f"SD-ELEMENT {sd_id!r} not closed by ']'")
            i += 1
            sd[sd_id] = params
    msg: str | None = None
    bom = False
    if i < len(rest):
        if rest[i] != " ":
            raise ParseError("STRUCTURED-DATA must be followed by SP or the end")
        msg = rest[i + 1 :]
        if msg.startswith("\ufeff"):
            bom = True
            msg = msg[1:]
    return SyslogRecord(
        pri=pri,
        version=int(match.group(2)),
        timestamp=timestamp,
        hostname=host,
        app_name=app,
        procid=proc,
        msgid=mid,
        sd=sd,
        msg=msg,
        bom=bom,
    )


# ---------------------------------------------------------------------------------------
# JSON lines


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ParseError(f"repeated JSON key {key!r}")
        out[key] = value
    return out


def parse_json_line(line: str) -> dict[str, Any]:
    """Parse one JSON line with the stdlib: one object, no raw line break, no repeated key."""
    _no_line_breaks(line)
    try:
        value = json.loads(line, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ParseError(str(exc)) from None
    if not isinstance(value, dict):
        raise ParseError("a JSON line must hold one object")
    return value


# ---------------------------------------------------------------------------------------
# CSV (RFC 4180)


@dataclass(frozen=True)
class CsvField:
    """One CSV field and whether it was quoted (an unquoted empty field is 'absent')."""

    value: str
    quoted: bool


def parse_csv(text: str) -> list[list[CsvField]]:
    """Parse RFC 4180 text: records end in CRLF, any other CR or LF must be inside quotes."""
    records: list[list[CsvField]] = []
    record: list[CsvField] = []
    i = 0
    n = len(text)
    if n == 0:
        return records
    while True:
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise ParseError("unterminated quoted field")
                if text[i] == '"':
                    if text[i + 1 : i + 2] == '"':
                        chars.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                chars.append(text[i])
                i += 1
            record.append(CsvField("".join(chars), quoted=True))
        else:
            start = i
            while i < n and text[i] not in ',"\r\n':
                i += 1
            if i < n and text[i] == '"':
                raise ParseError("a quote inside an unquoted field")
            record.append(CsvField(text[start:i], quoted=False))
        if i >= n:
            raise ParseError("the last record does not end in CRLF")
        if text[i] == ",":
            i += 1
            continue
        if text[i : i + 2] == "\r\n":
            records.append(record)
            record = []
            i += 2
            if i == n:
                break
            continue
        raise ParseError(f"bare CR or LF, or junk after a quoted field, at {i}")
    widths = {len(r) for r in records}
    if len(widths) > 1:
        raise ParseError(f"records have different field counts: {sorted(widths)}")
    return records


# ---------------------------------------------------------------------------------------
# OCSF 1.5.0 (the schema as ocsf-json-schema bundles it, offline; docs/formats.md for the
# places of the event's fields)

OCSF_SCHEMA_VERSION = "1.5.0"


@dataclass(frozen=True)
class OcsfRecord:
    """One parsed OCSF event: its class and activity, the audit-event fields it carries (in
    their JSON form), and `user` as written (the target user, the actor or a stand-in)."""

    class_uid: int
    activity_id: int
    fields: dict[str, Any]
    user: dict[str, Any] | None
    event: dict[str, Any]


_OCSF_VALIDATORS: dict[int, Any] = {}


def ocsf_schema() -> dict[str, Any]:
    """The OCSF 1.5.0 schema export bundled in ocsf-json-schema (read from disk)."""
    from ocsf_json_schema import get_ocsf_schema

    schema: dict[str, Any] = get_ocsf_schema(version=OCSF_SCHEMA_VERSION)
    return schema


def ocsf_class_validator(class_uid: int) -> Any:
    """A JSON Schema 2020-12 validator of one OCSF 1.5.0 class (no profiles), made offline."""
    if class_uid not in _OCSF_VALIDATORS:
        import jsonschema_rs
        from ocsf_json_schema import OcsfJsonSchemaEmbedded

        embedded = OcsfJsonSchemaEmbedded(ocsf_schema())
        try:
            name = embedded.lookup_class_name_from_uid(class_uid=class_uid)
        except ValueError:
            raise ParseError(f"no OCSF class {class_uid}") from None
        schema = embedded.get_class_schema(class_name=name, profiles=[])
        _OCSF_VALIDATORS[class_uid] = jsonschema_rs.validator_for(schema, offline=True)
    return _OCSF_VALIDATORS[class_uid]


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"{where} must be a string")
    return value


def _ocsf_user_parts(who: Any) -> tuple[str | None, str | None, str | None]:
    """(actor_id, actor_email, session_id) of an OCSF `actor` object."""
    if who is None:
        return None, None, None
    user = who.get("user") or {}
    if "email_addr" in user and user["email_addr"] != user.get("name"):
        raise ParseError("actor.user.email_addr differs from actor.user.name")
    session = who.get("session") or {}
    return user.get("uid"), user.get("name"), session.get("uid")


def parse_ocsf(line: str) -> OcsfRecord:
    """Parse one OCSF line: one JSON object, valid against its OCSF 1.5.0 class schema, with
    `type_uid` = class_uid * 100 + activity_id, the pinned version, and the audit event's
    fields in the places docs/formats.md gives them."""
    event = parse_json_line(line)
    class_uid = event.get("class_uid")
    if not isinstance(class_uid, int):
        raise ParseError("class_uid must be an integer")
    errors = [str(error) for error in ocsf_class_validator(class_uid).iter_errors(event)]
    if errors:
        raise ParseError(f"not a valid OCSF {class_uid} event: {errors[:3]}")
    activity_id = event["activity_id"]
    if event["type_uid"] != class_uid * 100 + activity_id:
        raise ParseError("type_uid is not class_uid * 100 + activity_id")
    if event["category_uid"] != class_uid // 1000:
        raise ParseError("category_uid is not the class's category")
    meta = event["metadata"]
    if meta["version"] != OCSF_SCHEMA_VERSION:
        raise ParseError(f"metadata.version must be {OCSF_SCHEMA_VERSION}")
    unmapped = event.get("unmapped")
    if not isinstance(unmapped, dict):
        raise ParseError("unmapped must be an object")
    fields: dict[str, Any] = {
        "event_id": meta.get("uid"),
        "tenant_id": meta.get("tenant_uid"),
        "timestamp": meta.get("original_time"),
        "event_type": meta.get("event_code"),
        "category": unmapped.get("category"),
        "severity": unmapped.get("severity"),
        "event_name": _text(event.get("message"), "message"),
        "reason": _text(event.get("status_detail"), "status_detail"),
        "action": _text(unmapped.get("action"), "unmapped.action"),
    }
    finding = class_uid == 2004
    evidence = (event.get("evidences") or [{}])[0] if finding else event
    if finding:
        if event.get("status_id") != 1 or event["finding_info"]["uid"] != meta.get("uid"):
            raise ParseError("a finding is new and has the event's id")
        fields["outcome"] = unmapped.get("outcome")
    else:
        outcomes = {None: None, 0: "unknown", 1: "success", 2: "failure"}
        if event.get("status_id") not in outcomes:
            raise ParseError("status_id is not one an audit outcome gives")
        fields["outcome"] = outcomes[event.get("status_id")]
    actor = evidence.get("actor")
    if actor is not None and actor.keys() == {"app_name"}:
        actor = None  # API Activity's stand-in for an event that names no actor
    fields["actor_id"], fields["actor_email"], fields["session_id"] = _ocsf_user_parts(actor)
    source = evidence.get("src_endpoint") or {}
    fields["source_ip"] = unmapped.get("source_ip", source.get("ip"))
    fields["source_address"] = source.get("hostname")
    request = evidence.get("http_request") or {}
    fields["user_agent"] = request.get("user_agent")
    fields["request_id"] = request.get("uid")
    if class_uid in (2004, 6003):
        resources = event.get("resources") or []
        users = [r["name"] for r in resources if r.get("type") == "user"]
        others = [r["name"] for r in resources if r.get("type") != "user"]
        if len(users) > 1 or len(others) > 1:
            raise ParseError("more than one target user or resource")
        fields["target_user"] = users[0] if users else None
        fields["target_resource"] = others[0] if others else None
    elif class_uid in (3005, 3006):
        fields["target_resource"] = (event.get("resource") or {}).get("name")
    else:
        fields["target_resource"] = unmapped.get("target_resource")
    if class_uid == 3006:
        fields["target_user"] = (event.get("user") or {}).get("name")
    fields["metadata"] = unmapped.get("metadata")
    fields["normalized"] = unmapped.get("normalized")
    return OcsfRecord(
        class_uid,
        activity_id,
        {key: value for key, value in fields.items() if value is not None},
        event.get("user"),
        event,
    )
