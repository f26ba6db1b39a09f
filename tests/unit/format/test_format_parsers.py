"""The strict test parsers reject what the specs forbid, so passing properties mean a thing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from format_parsers import (
    ParseError,
    parse_cef,
    parse_csv,
    parse_json_line,
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
