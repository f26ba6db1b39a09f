"""The shortcuts of the value checks decide exactly as the slower ways they replace."""

from __future__ import annotations

import ipaddress
import re
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.model.validation import check_timestamp, is_ip_address, repair_timestamp


def _ip_address_by_the_book(text: str) -> bool:
    """Whether `text` is an address, asking `inet_pton` and then `ipaddress` every time."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        return True
    except (OSError, ValueError):  # ValueError: a NUL in the text
        pass
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


_ADDRESS_LIKE = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda address: f"{address}%eth0"),
    st.text(alphabet="0123456789.", max_size=20),
    st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=45),
    st.text(max_size=30).filter(lambda text: "\x00" not in text),
)


@settings(max_examples=500, deadline=None)
@given(_ADDRESS_LIKE)
def test_is_ip_address_decides_as_inet_pton_and_ipaddress(text: str) -> None:
    """`is_ip_address` (which asks `ipaddress` only about text an address could be) says an
    address exactly when `inet_pton` or `ipaddress.ip_address` takes the text."""
    assert is_ip_address(text) == _ip_address_by_the_book(text)


_LEAP_SECOND = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d):60(?:[.,]\d+)?")


@st.composite
def leap_seconds(draw: st.DrawFn) -> str:
    """Times at second 60, with or without fraction, offset and whatever follows."""
    day = draw(st.dates())  # out of range once in UTC near the ends: refused alike
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    fraction = draw(st.sampled_from(["", ".5", ",25", ".123456", ".1234567", "."]))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "+02:00", "-11:30", "", "junk"]))
    separator = draw(st.sampled_from("Tt "))
    return f"{day.isoformat()}{separator}{hour:02}:{minute:02}:60{fraction}{offset}"


def _leap_repaired_by_substitution(text: str) -> object:
    """What `repair_timestamp` gave when it replaced the leap second with `re.sub`."""
    try:
        if _LEAP_SECOND.match(text) is not None:
            return check_timestamp("t", _LEAP_SECOND.sub(r"\1:59.999999", text, count=1)), True
        return check_timestamp("t", text), False
    except InvalidEvent as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(leap_seconds())
def test_a_leap_second_is_repaired_as_the_substitution_did(text: str) -> None:
    """`repair_timestamp` of a time at second 60 gives what the regular expression's
    substitution gave: the same time, or the same refusal."""
    try:
        repaired: object = repair_timestamp("t", text)
    except InvalidEvent as exc:
        repaired = str(exc)
    assert repaired == _leap_repaired_by_substitution(text)
