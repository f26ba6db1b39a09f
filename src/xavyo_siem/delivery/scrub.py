"""Removing credentials from what a peer says before it becomes a reason that is kept,
logged or shown: `scrub_reason`, and `scrub_result` that applies it to a delivery result.

A peer's answer is not ours to trust: a proxy that echoes the request, a debug page, an
error that quotes the `Authorization` header would otherwise put the destination's own
credential into its stored health, its dead letters, the worker's log and the API. Two
passes, then a cap:

1. the transport's own secrets (the HEC token, a webhook's bearer token, basic password,
   signing secrets, custom header values; a syslog key password), exactly as given, as
   JSON would escape them and percent-encoded, wherever they appear and whatever their
   shape (a secret shorter than `SECRET_MIN_CHARS` is not searched for: it would erase
   ordinary words);
2. common credential shapes: an `Authorization`/`Proxy-Authorization` header's value (as a
   line, a JSON member or a Python repr), `Bearer`/`Basic`/`Digest`/`Negotiate` credentials,
   `Splunk <token>` and other token-looking words after `Splunk`/`token`/`api-key`, GUIDs
   (HEC tokens) next to `Splunk`, `HEC` or `token`, `whsec_` secrets, and `password=`,
   `token: …`, `client_secret="…"` style pairs;
3. control characters become spaces and the text is cut to `limit` characters.

Only a window of a long text is scrubbed (about four times `limit`, the work bounded for a
64 KiB error page), and its last characters are dropped with it, so that nothing cut in two
by the window is shown.

Removing a secret can join its neighbours into a new occurrence (`ab` + `abab` + `ab`), so
pass 1 repeats until nothing is found; a text that still holds a secret after a few rounds
is replaced whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Final
from urllib.parse import quote

import orjson

from xavyo_siem.delivery.base import DeliveryResult, Misconfigured, Rejected, RetryLater

__all__ = ["REASON_MAX_CHARS", "REDACTED", "SECRET_MIN_CHARS", "scrub_reason", "scrub_result"]

REASON_MAX_CHARS: Final = 500
SECRET_MIN_CHARS: Final = 4
REDACTED: Final = "[redacted]"
_ROUNDS: Final = 8
_SHAPE_MARGIN: Final = 128  # longer than a credential a shape could leave cut in two
_WITHHELD: Final = "[the peer's answer is withheld: it contained the destination's credential]"

_GUID: Final = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_TOKEN68: Final = r"[A-Za-z0-9._~+/-]"


def _keep_prefix(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def _token_looking(match: re.Match[str]) -> str:
    """Redact a word after `Splunk`/`token` only when it looks like a credential (a digit
    in it, or 20 characters and more), so that `token expired` stays readable."""
    value = match.group(2)
    if len(value) >= 20 or any(c.isdigit() for c in value):
        return match.group(1) + REDACTED
    return match.group(0)


_SHAPES: Final[tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]] = (
    # A header's whole value: `Authorization: Splunk x`, `"authorization": "Basic x"`, ...
    (
        re.compile(
            r"""(?i)(\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)"""
            r"""(?!\s|\[redacted\])[^"'\r\n,;})]+"""
        ),
        _keep_prefix,
    ),
    (re.compile(rf"(?i)(\b(?:bearer|basic|digest|negotiate)\s+){_TOKEN68}{{6,}}=*"), _keep_prefix),
    (
        re.compile(rf"(?i)(\b(?:splunk|token|api[-_]?key)\s+)({_TOKEN68}{{8,}}=*)"),
        _token_looking,
    ),
    (re.compile(rf"(?i)(\b(?:splunk|hec|token)\b[^\r\n]{{0,40}}?){_GUID}"), _keep_prefix),
    (re.compile(rf"{_GUID}(?=[^\r\n]{{0,20}}?\b(?:splunk|hec|token)\b)", re.I), REDACTED),
    (re.compile(r"(whsec_)[A-Za-z0-9+/=_-]*"), _keep_prefix),
    (
        re.compile(
            r"""(?i)(\b[\w-]*(?:password|passwd|pwd|secret|token|api[-_]?key|credentials?)"""
            r"""["']?\s*[:=]\s*["']?)[^\s"'&,;}<>]+"""
        ),
        _keep_prefix,
    ),
)


def _forms(secrets: Iterable[str | None]) -> list[str]:
    """Each secret as given, JSON-escaped and percent-encoded; longest first."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < SECRET_MIN_CHARS:
            continue
        forms.add(secret)
        forms.add(orjson.dumps(secret).decode()[1:-1])
        forms.add(quote(secret, safe=""))
    return sorted(forms, key=len, reverse=True)


def _without(text: str, forms: Sequence[str]) -> str | None:
    """`text` with every form removed (repeated until none is left), or None if that does
    not settle within a few rounds."""
    for _ in range(_ROUNDS):
        found = [form for form in forms if form in text]
        if not found:
            return text
        for form in found:
            text = text.replace(form, REDACTED)
    return None if any(form in text for form in forms) else text


def scrub_reason(
    text: str, secrets: Iterable[str | None] = (), *, limit: int = REASON_MAX_CHARS
) -> str:
    """`text` (what a peer said, or a reason quoting it) without `secrets` or anything
    shaped like a credential, on one line, at most `limit` characters."""
    forms = _forms(secrets)
    # Only the start of a long text can be shown: scrub a window of it (bounded work for a
    # 64 KiB error page), then drop the window's last characters, where a secret or a
    # credential cut in two by the window would sit.
    margin = max((len(form) for form in forms), default=0) + _SHAPE_MARGIN
    cut = len(text) > limit * 4 + 2 * margin
    if cut:
        text = text[: limit * 4 + 2 * margin]
    cleaned = _without(text, forms)
    if cleaned is not None:
        for pattern, replacement in _SHAPES:
            cleaned = pattern.sub(replacement, cleaned)
        cleaned = _without("".join(c if c.isprintable() else " " for c in cleaned).strip(), forms)
    if cleaned is not None and cut:
        cleaned = cleaned[: max(len(cleaned) - margin, 0)].rstrip() + "…"
    if cleaned is not None and len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    # The last word: what is returned holds no secret, even one made of our own "…".
    for candidate in (cleaned, _WITHHELD[:limit], REDACTED[:limit]):
        if candidate is not None and not any(form in candidate for form in forms):
            return candidate
    return ""


def scrub_result(result: DeliveryResult, secrets: Iterable[str | None] = ()) -> DeliveryResult:
    """`result` with each of its reasons passed through `scrub_reason`."""
    if isinstance(result, RetryLater | Misconfigured):
        return replace(result, reason=scrub_reason(result.reason, secrets))
    if isinstance(result, Rejected):
        kept = list(secrets)
        scrubbed: dict[str, str] = {}  # records refused for one reason share its text
        for why in result.by_index.values():
            if why not in scrubbed:
                scrubbed[why] = scrub_reason(why, kept)
        return Rejected({index: scrubbed[why] for index, why in result.by_index.items()})
    return result
