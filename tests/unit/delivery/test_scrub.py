"""Scrubbing what a peer says: the destination's own secret and common credential shapes are
removed, the text is one line and capped, and ordinary reasons stay readable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xavyo_siem.delivery import Delivered, Misconfigured, Rejected, RetryLater
from xavyo_siem.delivery.scrub import (
    REASON_MAX_CHARS,
    SECRET_MIN_CHARS,
    scrub_reason,
    scrub_result,
)

TOKEN = "5e1f0c2a-7d3b-4c8e-9f10-8ec5ec2e7c01"

SHAPES = [
    (f"Authorization: Splunk {TOKEN}\r\nHost: x", TOKEN),
    ('{"headers": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}}', "dXNlcjpwYXNzd29yZA"),
    ("{'authorization': 'Bearer eyJhbGciOi.eyJzdWIi.c2ln'}", "eyJhbGciOi"),
    ("proxy-authorization=Negotiate YIIGhgYJKoZIhvcS", "YIIGhgYJKoZIhvcS"),
    ("echo: Bearer abc.def.ghi-jkl", "abc.def.ghi-jkl"),
    ("got Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    (f"Splunk {TOKEN}", TOKEN),
    (f"invalid token {TOKEN.upper()} for index main", TOKEN.upper()),
    (f"{TOKEN} is not a valid HEC token", TOKEN),
    ("hec token: 1234abcd5678efgh", "1234abcd5678efgh"),
    ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw failed", "MfKQ9r8GKYqrTwjUPD8"),
    ("login?user=a&password=hunter2&x=1", "hunter2"),
    ('{"client_secret": "s3cr3t-value", "ok": 1}', "s3cr3t-value"),
    ("api_key=AKIAEXAMPLE123", "AKIAEXAMPLE123"),
    ("X-Api-Key: 0123456789abcdef", "0123456789abcdef"),
    ("token=abcdefgh", "abcdefgh"),
]


@pytest.mark.parametrize(("text", "credential"), SHAPES, ids=[c[:16] for _, c in SHAPES])
def test_credential_shapes_are_removed(text: str, credential: str) -> None:
    """Authorization values, Bearer/Basic/Splunk credentials, GUIDs next to token words,
    whsec_ secrets and password=/token=/secret= pairs are removed without knowing them."""
    scrubbed = scrub_reason(text)
    assert credential not in scrubbed
    assert "[redacted]" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "HEC code 4 (Invalid token): check the HEC token",
        "HEC code 9 (Server is busy)",
        "webhook receiver answered HTTP 401: authentication failed",
        "event 12345678-1234-1234-1234-123456789012 was refused: field too long",
        "token expired",
        "connection to siem.example:8088 failed (Connection refused)",
    ],
)
def test_ordinary_reasons_stay_as_they_are(text: str) -> None:
    """Reasons without credentials pass unchanged, event ids included."""
    assert scrub_reason(text) == text


def test_a_reason_is_one_line_and_capped() -> None:
    """Controls become spaces and a long answer is cut to the limit with an ellipsis."""
    scrubbed = scrub_reason("a\r\nb\x00c\x1b[31m" + "x" * 5000)
    assert scrubbed.startswith("a  b c [31m")
    assert len(scrubbed) == REASON_MAX_CHARS
    assert scrubbed.endswith("…")


def test_a_long_answer_costs_a_window_and_shows_its_start() -> None:
    """Of a 64 KiB answer only a window is scrubbed: the reason is its start, cut, and
    a secret straddling the window's end leaves no prefix."""
    text = "Service unavailable. " + "z" * 1500 + TOKEN + "w" * 64_000
    scrubbed = scrub_reason(text, [TOKEN], limit=300)
    assert scrubbed.startswith("Service unavailable. zzz")
    assert scrubbed.endswith("…")
    assert len(scrubbed) == 300
    assert TOKEN[:6] not in scrubbed


def test_the_secret_is_removed_before_the_cut() -> None:
    """A secret that straddles the cut is removed whole, so no prefix of it survives."""
    text = "x" * 290 + TOKEN + "y" * 100
    scrubbed = scrub_reason(text, [TOKEN], limit=300)
    assert TOKEN[:8] not in scrubbed


def test_results_have_every_reason_scrubbed() -> None:
    """RetryLater (keeping after_s), Misconfigured and each Rejected reason are scrubbed."""
    said = f"proxy said: {TOKEN}"
    assert scrub_result(RetryLater(said, 5.0), [TOKEN]) == RetryLater("proxy said: [redacted]", 5.0)
    assert scrub_result(Misconfigured(said), [TOKEN]) == Misconfigured("proxy said: [redacted]")
    assert scrub_result(Rejected({0: said, 3: "ok"}), [TOKEN]) == Rejected(
        {0: "proxy said: [redacted]", 3: "ok"}
    )
    assert scrub_result(Delivered(), [TOKEN]) == Delivered()


_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"), st.sampled_from("ab-_=:\"' \r\n\\%{}[]"), st.just("…")
    ),
    max_size=300,
)
_SECRETS = st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=SECRET_MIN_CHARS, max_size=40),
    st.text(alphabet="ab", min_size=SECRET_MIN_CHARS, max_size=8),  # self-overlapping
    st.uuids().map(str),
)


@given(
    secret=_SECRETS,
    before=_TEXT,
    after=_TEXT,
    copies=st.integers(min_value=1, max_value=3),
    limit=st.integers(min_value=1, max_value=600),
    pad=st.integers(min_value=0, max_value=3000),
)
def test_an_embedded_secret_never_survives(
    secret: str, before: str, after: str, copies: int, limit: int, pad: int
) -> None:
    """Whatever surrounds it, however often it repeats and wherever the cut (or the end of
    the scrubbed window of a long text) falls, the secret given is not in the scrubbed
    text, which is at most `limit` characters."""
    text = "y" * pad + before + secret * copies + after + secret
    scrubbed = scrub_reason(text, [secret], limit=limit)
    assert secret not in scrubbed
    assert len(scrubbed) <= limit


@given(secret=_SECRETS, text=_TEXT)
def test_a_secret_inside_a_result_never_survives(secret: str, text: str) -> None:
    """Any result quoting the secret comes out of `scrub_result` without it."""
    for result in (
        RetryLater(text + secret),
        Misconfigured(secret + text),
        Rejected({0: text[:5] + secret + text}),
    ):
        scrubbed = scrub_result(result, [secret])
        reasons = scrubbed.by_index.values() if isinstance(scrubbed, Rejected) else []
        if isinstance(scrubbed, RetryLater | Misconfigured):
            reasons = [scrubbed.reason]
        assert reasons
        assert all(secret not in reason for reason in reasons)
