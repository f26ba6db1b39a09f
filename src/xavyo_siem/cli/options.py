"""The options commands share and how their text is read: `--db`, `--json`, `--tenant`,
filters, times, `KEY=VALUE` options, rate limits, secrets; and the settings and key ring a
command loads. A bad value is a usage error (exit 2) naming the option."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from xavyo_siem.crypto import KeyRing, load_key_ring
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidFilter, SiemError
from xavyo_siem.model import DEFAULT_RATE_LIMIT, EventFilter, RateLimit
from xavyo_siem.settings import Settings

__all__ = [
    "AnyTenantOption",
    "CategoryOption",
    "DbOption",
    "DestinationArg",
    "EventTypeOption",
    "JsonOption",
    "MinSeverityOption",
    "OptionOption",
    "RateOption",
    "SecretOption",
    "TenantOption",
    "load_keyring",
    "load_settings",
    "parse_filters",
    "parse_options",
    "parse_rate",
    "parse_time",
    "read_secret",
    "startup_secrets",
]

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="XAVYO_SIEM_DATABASE_URL",
        help="Store URL: sqlite:///path.db (default) or postgresql://user@host/db.",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")]
TenantOption = Annotated[UUID, typer.Option("--tenant", help="The tenant (UUID).")]
AnyTenantOption = Annotated[
    UUID | None, typer.Option("--tenant", help="Only this tenant (default: every tenant).")
]
DestinationArg = Annotated[str, typer.Argument(help="The destination's name or id.")]
CategoryOption = Annotated[
    list[str] | None,
    typer.Option("--category", help="Only events of this category (repeatable)."),
]
EventTypeOption = Annotated[
    list[str] | None,
    typer.Option("--event-type", help="Only events of this type (repeatable)."),
]
MinSeverityOption = Annotated[
    int | None, typer.Option("--min-severity", min=0, max=10, help="Only events this severe.")
]
RateOption = Annotated[
    str | None,
    typer.Option(
        "--rate-limit",
        help="At most EVENTS_PER_S[:BURST] events to this destination, or none for no limit"
        " (default 1000:2000).",
    ),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="A per-type setting KEY=VALUE (repeatable)."),
]
SecretOption = Annotated[
    str | None,
    typer.Option(
        "--secret-file",
        help="Read the credential (HEC token, webhook secrets) from this file, or - for stdin.",
    ),
]


def parse_time(name: str, text: str | None) -> datetime | None:
    """The ISO 8601 time of option `name` (None when not given); it must carry an offset."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"must be an ISO 8601 time, got {text!r}", param_hint=name
        ) from None
    if value.tzinfo is None:
        raise typer.BadParameter(
            "must carry a UTC offset, e.g. 2026-03-01T00:00:00Z", param_hint=name
        )
    return value


def parse_options(pairs: list[str]) -> dict[str, str]:
    """`--option KEY=VALUE` pairs as a mapping (a later KEY wins)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"must be KEY=VALUE, got {pair!r}", param_hint="--option")
        options[key.strip()] = value
    return options


# Options that name a file the worker reads (TLS trust and client certificates).
_FILE_OPTIONS = ("ca_file", "cert_file", "key_file")


def check_local_files(options: dict[str, str]) -> dict[str, str]:
    """Refuse a file option (`ca_file`, `cert_file`, `key_file`) naming a file that cannot be
    read on this machine, rather than learn it at the first batch."""
    for key in _FILE_OPTIONS:
        path = options.get(key)
        if not path:
            continue
        problem = None
        if not os.path.exists(path):
            problem = "does not exist"
        elif not os.path.isfile(path):
            problem = "is not a file"
        elif not os.access(path, os.R_OK):
            problem = "cannot be read by this user"
        if problem is not None:
            raise typer.BadParameter(f"{key}: {path} {problem}", param_hint="--option")
    return options


def parse_rate(text: str | None) -> RateLimit | None:
    """`--rate-limit EVENTS_PER_S[:BURST]` (the burst defaults to one second's events), or
    `none` for no limit; not given, the default limit (`DEFAULT_RATE_LIMIT`)."""
    if text is None:
        return DEFAULT_RATE_LIMIT
    if text.strip().lower() == "none":
        return None
    rate, _, burst = text.partition(":")
    try:
        events_per_s = float(rate)
        size = int(burst) if burst else max(1, int(events_per_s))
    except ValueError:
        raise typer.BadParameter(
            "must be EVENTS_PER_S or EVENTS_PER_S:BURST, e.g. 500:1000", param_hint="--rate-limit"
        ) from None
    return RateLimit(events_per_s, size)


def parse_filters(
    categories: list[str] | None, event_types: list[str] | None, min_severity: int | None
) -> EventFilter | None:
    """The filter of `--category`, `--event-type` and `--min-severity`; None when none given."""
    if categories is None and event_types is None and min_severity is None:
        return None
    try:
        return EventFilter.from_dict(
            {
                "categories": categories or [],
                "event_types": event_types or [],
                "min_severity": min_severity or 0,
            }
        )
    except InvalidFilter as exc:
        raise typer.BadParameter(exc.reason, param_hint=exc.field) from None


def read_secret(path: str | None) -> str | None:
    """The credential from a file or standard input (`-`); never from the command line."""
    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror or exc}", param_hint="--secret-file"
        ) from None
    except UnicodeDecodeError:
        raise typer.BadParameter(f"{path} is not UTF-8 text", param_hint="--secret-file") from None
    secret = text.strip()
    if not secret:
        raise typer.BadParameter("the secret is empty", param_hint="--secret-file")
    return secret


def load_settings() -> Settings:
    """The settings of the environment; a bad one is an error naming it."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise SiemError(str(exc)) from None


def load_keyring(settings: Settings, *, required: bool) -> KeyRing | None:
    """The credential key ring; with no key configured, an error when `required`, else
    None. A key that is configured but cannot be used is always an error."""
    if required or settings.secret_key or settings.secret_key_file or settings.development:
        return load_key_ring(settings)
    return None


def startup_secrets(settings: Settings) -> tuple[KeyRing, EgressGuard]:
    """The key ring and SSRF guard a long-running process needs, or a clear refusal.

    In production a missing key is an error (`CryptoError` names the settings); in
    development a key file is made on first use.
    """
    return load_key_ring(settings), EgressGuard.from_settings(settings)
