"""The C helpers (xavyo_siem._speedups) give exactly what their Python references give, for
any input, errors included; the package runs the C ones where they were built, the Python
ones when XAVYO_SIEM_PURE_PYTHON=1 asks for them, and warns once when it fell back to them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem import _speedups, speedups
from xavyo_siem.format._text import C0_DEL_C1_BYTES

OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS | st.just(UTC)
)
FORCED_RUN = os.environ.get(speedups.FORCE_PURE_PYTHON) == "1"  # the test command's second run
SPECIALS = b"\\=" + C0_DEL_C1_BYTES  # CEF's set; RFC 5424's is b'\\"]' and the same controls
TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from("\\=\t\r\n\x00\x1f\x7f\x85"))


def outcome(function: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("value", function(*args))
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, None)


class Odd(tzinfo):
    """A time zone whose utcoffset() answers `offset` whatever it is."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def utcoffset(self, dt: datetime | None) -> Any:
        return self.offset


def test_this_run_uses_the_c_helpers_unless_told_to_use_the_python_ones() -> None:
    """The test command builds the C helpers and the package uses them, except in its second
    run, with XAVYO_SIEM_PURE_PYTHON=1, where the package uses the Python ones."""
    if FORCED_RUN:
        assert not speedups.COMPILED
        assert speedups.to_epoch_us is speedups.py_to_epoch_us
        assert speedups.uuid_text is speedups.py_uuid_text
        assert speedups.plain_values_length is speedups.py_plain_values_length
        assert speedups.helpers_in_use() == "Python helpers (forced by XAVYO_SIEM_PURE_PYTHON)"
    else:
        assert speedups.COMPILED
        assert speedups.to_epoch_us is _speedups.to_epoch_us
        assert speedups.uuid_text is _speedups.uuid_text
        assert speedups.plain_values_length is _speedups.plain_values_length
        assert speedups.helpers_in_use() == "C helpers"


def run_python(*pieces: str, pure: str | None) -> subprocess.CompletedProcess[str]:
    """The code `pieces` in a fresh interpreter, with XAVYO_SIEM_PURE_PYTHON set to `pure`
    (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != speedups.FORCE_PURE_PYTHON}
    if pure is not None:
        env[speedups.FORCE_PURE_PYTHON] = pure
    code = "\n".join(textwrap.dedent(piece) for piece in pieces)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


WITHOUT_THE_C_BUILD = """
    import sys
    sys.modules["xavyo_siem._speedups"] = None  # as if no compiler had built it
"""
WARNINGS_ARE_ERRORS = """
    import warnings
    warnings.simplefilter("error")
"""
WHICH_HELPERS = """
    from xavyo_siem import speedups
    python = speedups.to_epoch_us is speedups.py_to_epoch_us
    assert (speedups.uuid_text is speedups.py_uuid_text) is python
    assert (speedups.plain_values_length is speedups.py_plain_values_length) is python
    print(speedups.COMPILED, python, speedups.helpers_in_use(), sep="|")
"""


@pytest.mark.parametrize(
    ("pure", "expected"),
    [
        (None, "True|False|C helpers"),
        ("", "True|False|C helpers"),
        ("0", "True|False|C helpers"),
        ("1", "False|True|Python helpers (forced by XAVYO_SIEM_PURE_PYTHON)"),
    ],
)
def test_only_xavyo_siem_pure_python_1_forces_the_python_helpers(
    pure: str | None, expected: str
) -> None:
    """XAVYO_SIEM_PURE_PYTHON=1 makes a built install run the Python helpers, silently, and
    COMPILED say so; unset, empty or 0, the C helpers run."""
    done = run_python(WARNINGS_ARE_ERRORS, WHICH_HELPERS, pure=pure)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == expected


def test_an_install_without_the_c_build_falls_back_and_warns_naming_the_fix() -> None:
    """Without the C extension the Python helpers run, and importing the package warns once,
    in a RuntimeWarning category of its own, that a C compiler, the Python headers and a
    reinstall would build it."""
    record = """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import xavyo_siem.format, xavyo_siem.model, xavyo_siem.store
        from xavyo_siem.speedups import SlowHelpersWarning
        assert [w.category for w in caught] == [SlowHelpersWarning], caught
        assert issubclass(SlowHelpersWarning, RuntimeWarning)
        print(caught[0].message)
    """
    done = run_python(WITHOUT_THE_C_BUILD, record, WHICH_HELPERS, pure=None)
    assert done.returncode == 0, done.stderr
    message, which = done.stdout.strip().splitlines()
    assert "C compiler" in message
    assert "Python headers" in message
    assert "reinstall" in message
    assert which == "False|True|Python helpers (the C extension is not built)"


def test_the_command_line_shows_the_fallback_warning_once() -> None:
    """A user running the command on an install without the C extension sees the warning on
    stderr once, and the command still works."""
    version = """
        from xavyo_siem.cli import main
        sys.argv = ["xavyo-siem", "--version"]
        main()
    """
    done = run_python(WITHOUT_THE_C_BUILD, version, pure=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("xavyo-siem ")
    assert done.stderr.count("SlowHelpersWarning") == 1
    assert "C compiler" in done.stderr


def test_forcing_the_python_helpers_needs_no_c_build_and_does_not_warn() -> None:
    """With XAVYO_SIEM_PURE_PYTHON=1 the package never looks for the C extension, so an install
    without it runs the Python helpers without a warning."""
    done = run_python(WITHOUT_THE_C_BUILD, WARNINGS_ARE_ERRORS, WHICH_HELPERS, pure="1")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == "False|True|Python helpers (forced by XAVYO_SIEM_PURE_PYTHON)"


@given(AWARE)
def test_epoch_microseconds_match_for_any_aware_time(ts: datetime) -> None:
    """For any aware datetime, in any UTC offset, both count the same microseconds."""
    assert _speedups.to_epoch_us(ts) == speedups.py_to_epoch_us(ts)


@given(st.datetimes())
def test_a_naive_time_is_a_type_error_in_both(ts: datetime) -> None:
    """A naive datetime raises TypeError in both, as subtracting the aware epoch does."""
    assert outcome(_speedups.to_epoch_us, ts) == outcome(speedups.py_to_epoch_us, ts)
    assert outcome(_speedups.to_epoch_us, ts)[0] == "TypeError"


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (None, "TypeError"),
        ("+01:00", "TypeError"),
        (timedelta(hours=24), "ValueError"),
        (timedelta(hours=-25), "ValueError"),
        (timedelta(hours=23, minutes=59), "value"),
        (timedelta(days=213503982, seconds=28909, microseconds=551616), "ValueError"),
        (-timedelta(days=213503982, seconds=28909, microseconds=551616), "ValueError"),
        (timedelta(days=-1), "ValueError"),
        (timedelta(days=-1, microseconds=1), "value"),
    ],
)
def test_an_odd_time_zone_gives_the_same_answer_or_error(offset: Any, error: str) -> None:
    """A tzinfo answering None, a wrong type or an offset of a day or more: the same error as
    datetime's own subtraction, in both; a valid odd offset, the same microseconds."""
    ts = datetime(2026, 1, 1, 12, tzinfo=Odd(offset))
    assert outcome(_speedups.to_epoch_us, ts) == outcome(speedups.py_to_epoch_us, ts)
    assert outcome(_speedups.to_epoch_us, ts)[0] == error


@given(st.uuids(version=None) | st.integers(0, 2**128 - 1).map(lambda n: UUID(int=n)))
def test_uuid_text_is_the_canonical_form(value: UUID) -> None:
    """Any UUID's text is str(value) in both."""
    assert _speedups.uuid_text(value) == speedups.py_uuid_text(value) == str(value)


class MyUUID(UUID):
    """A UUID subclass: written as the UUID it is."""


def test_a_uuid_subclass_is_written_as_its_uuid() -> None:
    """A UUID subclass gets the canonical text of its value in both."""
    value = MyUUID(int=0x1234)
    assert _speedups.uuid_text(value) == speedups.py_uuid_text(value) == str(UUID(int=0x1234))


@pytest.mark.parametrize("value", ["0" * 32, 5, None, b"\x00" * 16])
def test_uuid_text_refuses_what_is_not_a_uuid(value: Any) -> None:
    """Anything but a UUID is a TypeError in both."""
    assert outcome(_speedups.uuid_text, value) == outcome(speedups.py_uuid_text, value)
    assert outcome(_speedups.uuid_text, value)[0] == "TypeError"


@given(st.lists(TEXT, max_size=12), st.sampled_from([SPECIALS, b'\\"]' + C0_DEL_C1_BYTES, b""]))
def test_plain_values_length_matches_for_any_values(values: list[str], specials: bytes) -> None:
    """For any values behind their keys and CEF's, RFC 5424's or no extra specials, both
    agree on whether none needs escaping (and then on their total length)."""
    pieces = ["head"]
    for number, value in enumerate(values):
        pieces += (f" k{number}=", value)
    expected = speedups.py_plain_values_length(pieces, specials)
    assert _speedups.plain_values_length(pieces, specials) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 0),
        (["abc", "d e\tf"], 8),
        (["a=b"], -1),
        (["a\\b"], -1),
        (["a\x7fb"], -1),
        (["a\nb"], -1),
        (["é"], -1),
    ],
)
def test_plain_values_length_examples(values: list[str], expected: int) -> None:
    """Known cases: tabs are plain; `=`, `\\`, DEL, controls and non-ASCII are not."""
    pieces: list[Any] = ["head"]
    for value in values:
        pieces += (" k=", value)
    assert _speedups.plain_values_length(pieces, SPECIALS) == expected
    assert speedups.py_plain_values_length(pieces, SPECIALS) == expected


@pytest.mark.parametrize(
    ("pieces", "specials"),
    [(("h", " k=", "x"), b""), (["h", " k=", "x"], bytearray(b"=")), (["h", " k=", "é"], "=")],
)
def test_anything_but_a_list_and_bytes_is_a_type_error_in_both(pieces: Any, specials: Any) -> None:
    """plain_values_length takes a list and bytes exactly; anything else is a TypeError in both."""
    assert outcome(_speedups.plain_values_length, pieces, specials)[0] == "TypeError"
    assert outcome(speedups.py_plain_values_length, pieces, specials)[0] == "TypeError"


def test_a_value_that_is_not_text_is_a_type_error_in_both() -> None:
    """A value that is not a string raises TypeError in both, as str.join does."""
    pieces: list[Any] = ["head", " a=", "x", " b=", 5]
    assert outcome(_speedups.plain_values_length, pieces, SPECIALS)[0] == "TypeError"
    assert outcome(speedups.py_plain_values_length, pieces, SPECIALS)[0] == "TypeError"


# Any text: every code point (lone surrogates included, which UTF-8 cannot carry), with NUL,
# controls, surrogates and characters beyond the BMP drawn often, short and very long.
ANY_TEXT = st.text(
    st.characters(blacklist_categories=())
    | st.sampled_from("\x00\x01\x1f\x7f\x85\ud800\udbff\udc00\udfff\ufffd\U0001f600\U0010ffff")
)
LONG_TEXT = st.tuples(ANY_TEXT, st.integers(1, 5000)).map(lambda pair: pair[0] * pair[1])
LIMITS = st.integers(0, 70_000) | st.just(2**70)


def test_this_run_repairs_text_with_the_c_helper_unless_told_otherwise() -> None:
    """The package repairs text with the C helper, except in the forced Python run."""
    expected = speedups.py_repaired_text if FORCED_RUN else _speedups.repaired_text
    assert speedups.repaired_text is expected


@given(ANY_TEXT | LONG_TEXT, LIMITS)
def test_repaired_text_matches_for_any_text_and_limit(text: str, limit: int) -> None:
    """For any text and limit both cut the text to the limit and replace NUL and lone
    surrogates by U+FFFD alike: equal strings of the same kind, holding none of them."""
    expected = speedups.py_repaired_text(text, limit)
    got = _speedups.repaired_text(text, limit)
    assert got == expected
    assert type(got) is str
    assert len(got) == min(len(text), limit)
    assert "\x00" not in got
    got.encode("utf-8")  # no lone surrogate left
    assert repr(got) == repr(expected)  # the same characters, compared another way


@given(ANY_TEXT, LIMITS)
def test_repaired_text_returns_text_that_needs_nothing_as_it_is(text: str, limit: int) -> None:
    """Text within the limit that holds no NUL and no lone surrogate comes back as the very
    same object from the C helper, and equal from the Python one."""
    clean = text.replace("\x00", "").encode("utf-8", "ignore").decode()
    limit = max(limit, len(clean))
    assert _speedups.repaired_text(clean, limit) is clean
    assert speedups.py_repaired_text(clean, limit) == clean


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("", 10, ""),
        ("abc", 2, "ab"),
        ("a\x00b", 10, "a\ufffdb"),
        ("\ud800x\udfff", 10, "\ufffdx\ufffd"),
        ("\U0001f600\ud83d", 10, "\U0001f600\ufffd"),
        ("é\x00", 10, "é\ufffd"),
        ("ab\x00", 2, "ab"),  # what is cut away is not looked at
        ("\x01\x1f\x7f\x85", 10, "\x01\x1f\x7f\x85"),  # other controls are kept
    ],
)
def test_repaired_text_examples(text: str, limit: int, expected: str) -> None:
    """Worked examples: cut first, then NUL and lone surrogates become U+FFFD."""
    assert _speedups.repaired_text(text, limit) == expected
    assert speedups.py_repaired_text(text, limit) == expected


@pytest.mark.parametrize(
    ("text", "limit"),
    [(b"abc", 3), (None, 3), (type("Text", (str,), {})("abc"), 3), ("abc", 1.5), ("abc", -1)],
)
def test_repaired_text_refuses_what_is_not_text_or_a_limit_in_both(text: Any, limit: Any) -> None:
    """Anything but a plain str, or a limit that is not a non-negative integer, is the same
    error in both."""
    expected = outcome(speedups.py_repaired_text, text, limit)
    assert expected[0] in ("TypeError", "ValueError")
    assert outcome(_speedups.repaired_text, text, limit) == expected
