"""Text rules every format shares: visible control characters, cuts, timestamps.

Nothing here knows a format's escaping; each format module escapes after these rules ran.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Final

import orjson

from xavyo_siem.errors import EncodeError
from xavyo_siem.speedups import to_epoch_us

__all__ = [
    "C0_DEL_C1_BYTES",
    "CONTROL_AND_NEWLINE_PICTURES",
    "CONTROL_PICTURES",
    "TRUNCATION_MARK",
    "epoch_ms",
    "rfc3339_utc",
    "truncate",
    "utf8",
]

# NUL and other C0/C1 controls are replaced *visibly*, never dropped in silence. C0 controls
# and DEL become their Unicode Control Pictures (U+2400-U+241F, U+2421: "␀", "␁", "␛", "␡"),
# which keep the code readable; C1 controls (U+0080-U+009F) have no picture and become U+FFFD
# "�". TAB is kept, and CR / LF are left to each format (CEF escapes them, the others picture
# them).
CONTROL_PICTURES: Final[dict[int, str]] = {
    **{code: chr(0x2400 + code) for code in range(0x20) if code not in (0x09, 0x0A, 0x0D)},
    0x7F: "\u2421",
    **dict.fromkeys(range(0x80, 0xA0), "\ufffd"),
}

# The same, with CR and LF pictured too ("␍", "␊"): for places that cannot escape them.
CONTROL_AND_NEWLINE_PICTURES: Final[dict[int, str]] = {
    **CONTROL_PICTURES,
    0x0A: "\u240a",
    0x0D: "\u240d",
}

# Bytes that may need escaping, for a fast check of many values at once: a value's UTF-8
# without them is clean. C1 controls are U+0080-U+009F, UTF-8 0xC2 0x80-0x9F: the lead byte
# 0xC2 stands for them (U+00A0-U+00BF share it; they only cost the slow path, never output).
# bytes.translate(None, delete) runs about 3x faster than a regex search over the same text.
C0_DEL_C1_BYTES: Final = bytes((*range(0x09), *range(0x0A, 0x20), 0x7F, 0xC2))


def utf8(text: str, field: str) -> bytes:
    """`text` as UTF-8; a lone surrogate (only an unvalidated event holds one) -> EncodeError."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise EncodeError(
            field, f"holds a lone surrogate at {exc.start}; text must be UTF-8"
        ) from None


# The character that ends a value cut to a length cap, so a cut is never silent.
TRUNCATION_MARK: Final = "\u2026"

_UTC_Z: Final = orjson.OPT_UTC_Z

# Characters a cut must not fall in front of: they extend the grapheme before them.
_ZWJ: Final = "\u200d"
_REGIONAL_INDICATORS: Final = re.compile("[\U0001f1e6-\U0001f1ff]")


def _extends_previous(char: str) -> bool:
    """True for a character that belongs to the grapheme cluster before it."""
    code = ord(char)
    return (
        unicodedata.category(char).startswith("M")  # combining marks (Mn, Mc, Me)
        or char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences
    )


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in "…" when it was cut.

    The cut is at a code-point boundary (Python strings never split a UTF-8 sequence) and
    backs off so it does not split a combining sequence, an emoji ZWJ/modifier sequence or a
    flag (a pair of regional indicators). If a whole cap's worth of text is one cluster, the
    cut falls at the code point instead. Runs *before* any escaping, so a cut never splits
    an escape sequence.
    """
    if len(text) <= limit:
        return text
    end = limit - 1  # room for the mark
    cut = end
    while cut > 0 and (_extends_previous(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    if cut > 0 and _REGIONAL_INDICATORS.match(text[cut]):
        run = cut
        while run > 0 and _REGIONAL_INDICATORS.match(text[run - 1]):
            run -= 1
        if (cut - run) % 2:  # an odd number of indicators before: the cut splits a flag
            cut -= 1
    if cut == 0:
        cut = end
    return text[:cut] + TRUNCATION_MARK


def rfc3339_utc(ts: datetime) -> str:
    """`ts` as RFC 3339 UTC with exactly six fraction digits and `Z`, e.g. `...T08:26:10.000123Z`.

    The year always has four digits (also before year 1000). A naive datetime raises
    `EncodeError`: its instant is unknown.
    """
    if ts.tzinfo is UTC and ts.microsecond:  # orjson writes these exactly so, 4x faster
        return orjson.dumps(ts, option=_UTC_Z).decode()[1:-1]
    if ts.tzinfo is not UTC:
        offset = ts.utcoffset()
        if offset is None:
            raise EncodeError("timestamp", "is naive; an audit time must carry its UTC offset")
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            raise EncodeError("timestamp", "is out of range once converted to UTC") from None
    return ts.isoformat(timespec="microseconds")[:-6] + "Z"


def epoch_ms(ts: datetime) -> int:
    """Whole milliseconds since the Unix epoch, rounded down (towards the past)."""
    try:
        return to_epoch_us(ts) // 1000
    except TypeError:
        raise EncodeError(
            "timestamp", "is naive; an audit time must carry its UTC offset"
        ) from None
