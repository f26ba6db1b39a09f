"""The strict test parsers reject what the specs forbid, so passing properties mean a thing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from format_parsers import (
    ParseError,
    check_ecs_document,
    parse_cef,
    parse_csv,
    parse_json_line,
    parse_leef,
    parse_ocsf,
    parse_syslog,
)


def test_cef_parser_reads_spec_examples() -> None:
    """A header with `\\|` and an extension with `\\=`, `\\n` and spaces parse as documented."""
    record = parse_cef("CEF:0|V|P|1|sig|a\\|b|5|act=x\\=y msg=two words\\nline rt=0")
    assert record.name == "a|b"
    assert record.extension == {"act": "x=y", "msg": "two words\nline", "rt": "0"}


@pytest.mark.parametrize(
    "line",
    [
        "CEF:0|V|P|1|sig|name|5|k=a\\|b",  # \| is not an extension escape
        "CEF:0|V|P|1|sig|name|5|k=a\\",  # dangling backslash
        "CEF:0|V|P|1|sig|name|5|k=a=b",  # unescaped = forges a key "k=a" / bad key
        "CEF:0|V|P|1|sig|name|5|k=a k=b",  # repeated key
        "CEF:0|V|P|1|sig|na\\=me|5|k=a",  # \= is not a header escape
        "CEF:0|V|P|1|sig|name|5|k=a\nCEF:0|V|P|1|s|n|5|",  # two lines
        "CEF:0|V|P|1|sig|name|5|k=\x1b",  # raw control
        "CEF:0|V|P|1||name|5|k=a",  # empty header field
        "CEF:0|V|P|1|sig|name",  # short header
    ],
)
def test_cef_parser_rejects_malformed_lines(line: str) -> None:
    """Invalid escapes, forged or repeated keys, raw controls and short headers are errors."""
    with pytest.raises(ParseError):
        parse_cef(line)


def test_syslog_parser_reads_the_rfc_example_shape() -> None:
    """A message with two SD elements and a BOM MSG parses into its parts."""
    record = parse_syslog(
        '<165>1 2003-10-11T22:14:15.003Z host app - ID47 [a@1 x="\\"q\\"" y="\\]"][b@1] \ufeffhi'
    )
    assert (record.pri, record.msgid, record.msg, record.bom) == (165, "ID47", "hi", True)
    assert record.sd == {"a@1": {"x": ['"q"'], "y": ["]"]}, "b@1": {}}


@pytest.mark.parametrize(
    "message",
    [
        "<192>1 - - - - - -",  # PRI over 191
        "<013>1 - - - - - -",  # leading zero
        "<13>1 2024-01-01T00:00:60Z - - - - -",  # leap second
        "<13>1 2024-01-01T00:00:00.1234567Z - - - - -",  # seven fraction digits
        "<13>1 - h\u00e9 - - - -",  # non-ASCII HOSTNAME
        "<13>1 - - - - " + "m" * 33 + " -",  # MSGID too long
        '<13>1 - - - - - [a@1 x="]"]',  # unescaped ]
        '<13>1 - - - - - [a@1 x="\\n"]',  # backslash not escaped
        "<13>1 - - - - - [a@1][a@1]",  # repeated SD-ID
        '<13>1 - - - - - [a@1 x="v"] [b@1]'.replace(" [b", "\n[b"),  # raw LF
        '<13>1 - - - - - [a@1 x="v"',  # unclosed element
    ],
)
def test_syslog_parser_rejects_malformed_messages(message: str) -> None:
    """The header limits of the RFC 5424 ABNF are enforced."""
    with pytest.raises(ParseError):
        parse_syslog(message)


@pytest.mark.parametrize("line", ['{"a":1}\n', '{"a":1,"a":2}', "[1]", "{"])
def test_json_parser_rejects_non_records(line: str) -> None:
    """A raw newline, a repeated key, a non-object or broken JSON is an error."""
    with pytest.raises(ParseError):
        parse_json_line(line)


def test_csv_parser_tells_quoted_empty_from_absent() -> None:
    """`""` is a quoted empty field and an empty unquoted field is absent."""
    (record,) = parse_csv('"a",,""\r\n')
    assert [(f.value, f.quoted) for f in record] == [("a", True), ("", False), ("", True)]


@pytest.mark.parametrize(
    "text",
    ['"a"\n', '"a","b"', 'a"b"\r\n', '"a"x\r\n', '"a\r\n', '"a"\r\n"b","c"\r\n'],
)
def test_csv_parser_rejects_malformed_text(text: str) -> None:
    """Bare LF, a missing CRLF, stray quotes and ragged records are errors."""
    with pytest.raises(ParseError):
        parse_csv(text)


_OCSF_LOGON: dict[str, Any] = {
    "class_uid": 3002,
    "category_uid": 3,
    "activity_id": 1,
    "type_uid": 300201,
    "time": 1767225600123,
    "severity_id": 1,
    "metadata": {
        "version": "1.5.0",
        "product": {"name": "IDP", "vendor_name": "Xavyo"},
        "uid": "0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
    },
    "user": {"name": "alice"},
    "service": {"name": "IDP"},
    "unmapped": {"category": "authentication", "severity": 1},
}


def _ocsf(**changes: Any) -> str:
    event = {**_OCSF_LOGON, **changes}
    return json.dumps({key: value for key, value in event.items() if value is not None})


def test_ocsf_parser_reads_a_minimal_logon() -> None:
    """A minimal valid Authentication: Logon event parses, its fields in their places."""
    record = parse_ocsf(_ocsf())
    assert (record.class_uid, record.activity_id) == (3002, 1)
    assert record.fields == {
        "event_id": "0b9d6a1e-5c3f-4e2a-8d7b-1f6e9c4a2b58",
        "category": "authentication",
        "severity": 1,
    }
    assert record.user == {"name": "alice"}


LEEF_OK = "LEEF:2.0|V|P|1.0|Login|^|devTime=Jan 18 2019 11:07:53^sev=5^src=192.0.2.1^k=a=b|c"


def test_leef_parser_reads_the_guide_example_shape() -> None:
    """A LEEF 2.0 line with a `^` delimiter parses into its header and attributes."""
    record = parse_leef(LEEF_OK)
    assert (record.vendor, record.event_id, record.delimiter) == ("V", "Login", "^")
    assert record.attributes == {
        "devTime": "Jan 18 2019 11:07:53", "sev": "5", "src": "192.0.2.1", "k": "a=b|c",
    }  # fmt: skip
    assert parse_leef("LEEF:2.0|V|P|1|E|x09|a=1\tb=2").attributes == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    "line",
    [
        _ocsf(type_uid=300202),  # type_uid is not class * 100 + activity
        _ocsf(type_uid=300209),  # not a type of the class at all
        _ocsf(user=None),  # 3002 requires user
        _ocsf(service=None),  # 3002 requires service or dst_endpoint
        _ocsf(user={"email_addr": "a@b.c"}),  # a user needs account, name or uid
        _ocsf(user={"name": "a", "email_addr": "not an address"}),  # email_t pattern
        _ocsf(src_endpoint={"ip": "fe80::1%" + "x" * 40}),  # ip_t is at most 40 characters
        _ocsf(src_endpoint={"ip": "not an ip"}),  # ip_t pattern
        _ocsf(colour="red"),  # no attribute of the class
        _ocsf(time="2026-01-01"),  # time is an integer
        _ocsf(severity_id=7),  # not a severity
        _ocsf(category_uid=6),  # another category
        _ocsf(class_uid=9999),  # no such class
        _ocsf(metadata={"version": "1.8.0", "product": {"name": "IDP"}}),  # not the pinned one
        _ocsf(metadata={"version": "1.5.0"}),  # metadata requires product
        _ocsf(unmapped=None),  # the audit event's own fields are in unmapped
        _ocsf() + "\n" + _ocsf(),  # two records
        "[" + _ocsf() + "]",  # not one object
        _ocsf()[:-1] + ',"time":0}',  # a repeated key
    ],
)
def test_ocsf_parser_rejects_what_the_schema_or_the_format_forbids(line: str) -> None:
    """Invalid OCSF 1.5.0, a wrong type_uid, another version, or not one JSON object: refused."""
    with pytest.raises(ParseError):
        parse_ocsf(line)


@pytest.mark.parametrize(
    "line",
    [
        "LEEF:1.0|V|P|1|E|a=1",  # not LEEF 2.0
        "LEEF:2.0|V|P|1|E|a=1",  # no delimiter field
        "LEEF:2.0|V||1|E|^|a=1",  # empty header field
        "LEEF:2.0|V|P|1|E|=|a=1",  # = as delimiter
        "LEEF:2.0|V|P|1|E|x3d|a=1",  # = as delimiter, in hex
        "LEEF:2.0|V|P|1|E|^^|a=1",  # two-character delimiter
        "LEEF:2.0|V|P|1|E|^|a=1^a=2",  # repeated key
        "LEEF:2.0|V|P|1|E|^|a=1^b",  # attribute without =
        "LEEF:2.0|V|P|1|E|^|a=1^",  # empty attribute after a trailing delimiter
        "LEEF:2.0|V|P|1|E|^|a b=1",  # key with a space
        "LEEF:2.0|V|P|1|E|^|a=1\nLEEF:2.0|V|P|1|E|^|a=1",  # two lines
        "LEEF:2.0|V|P|1|E|^|a=x\x1by",  # raw control
        "LEEF:2.0|V|P|1|E|^|a=x\ty",  # raw TAB inside a value
        "LEEF:2.0|V|P|1|E|^|sev=0",  # sev below 1
        "LEEF:2.0|V|P|1|E|^|sev=high",  # sev not an integer
        "LEEF:2.0|V|P|1|E|^|src=fe80::1%eth0",  # zone index in an IP attribute
        "LEEF:2.0|V|P|1|E|^|devTime=1714566896789",  # not the default pattern
        "LEEF:2.0|V|P|1|E|^|devTime=2024-05-01T12:00:00.000Z^devTimeFormat=yyyy",
        "LEEF:2.0|V|P|1|E|^|devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX",  # no devTime
    ],
)
def test_leef_parser_rejects_malformed_lines(line: str) -> None:
    """Bad headers and delimiters, forged or repeated keys, raw controls, bad types are errors."""
    with pytest.raises(ParseError):
        parse_leef(line)


ECS_MINIMAL = '{"@timestamp":"2024-05-01T12:00:00.000Z","ecs":{"version":"9.4.0"}}'


def test_ecs_checker_reads_a_minimal_document_by_field_name() -> None:
    """The two required fields make a valid document, returned by dotted name."""
    assert check_ecs_document(ECS_MINIMAL) == {
        "@timestamp": "2024-05-01T12:00:00.000Z", "ecs.version": "9.4.0",
    }  # fmt: skip


def _with(extra: str) -> str:
    return ECS_MINIMAL[:-1] + "," + extra + "}"


@pytest.mark.parametrize(
    "line",
    [
        '{"ecs":{"version":"9.4.0"}}',  # no @timestamp
        '{"@timestamp":"2024-05-01T12:00:00Z"}',  # no ecs.version
        '{"@timestamp":"2024-05-01T12:00:00Z","ecs":{"version":"8.11.0"}}',  # another ECS
        '{"@timestamp":"yesterday","ecs":{"version":"9.4.0"}}',  # not a date
        _with('"evnt":{"id":"x"}'),  # not an ECS field
        _with('"event":{"kind":"signal"}'),  # reserved for Kibana
        _with('"event":{"kind":"incident"}'),  # not an allowed kind
        _with('"event":{"category":["login"]}'),  # not an allowed category
        _with('"event":{"category":"iam"}'),  # allowed, but an array is expected
        _with('"event":{"category":["authentication"],"type":["creation"]}'),  # unexpected
        _with('"event":{"outcome":"ok"}'),  # not an allowed outcome
        _with('"event":{"severity":"5"}'),  # long as a string
        _with('"event":{"id":["a","b"]}'),  # an array where ECS has none
        _with('"source":{"ip":"fe80::1%eth0"}'),  # zone index in an ip
        _with('"related":{"ip":["not-an-ip"]}'),
        _with('"labels":{"a":{"b":"c"}}'),  # labels are flat
        _with('"labels":{"a.b":"c"}'),  # a dotted label
        _with('"user.id":"x"'),  # a dotted name: ECS documents are nested here
        _with('"event":{"id":"a","id":"b"}'),  # repeated key
    ],
)
def test_ecs_checker_rejects_what_ecs_forbids(line: str) -> None:
    """Missing required fields, unknown names, wrong types, values ECS does not allow are errors."""
    with pytest.raises(ParseError):
        check_ecs_document(line)
