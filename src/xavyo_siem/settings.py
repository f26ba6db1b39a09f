"""Process settings read from the environment (fixed names: scripts and operators use them)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal

__all__ = [
    "DEFAULT_API_RATE_LIMIT",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_EXPORT_RETENTION",
    "Settings",
    "parse_api_rate_limit",
    "parse_duration",
]

DEFAULT_DATABASE_URL: Final = "sqlite:///./xavyo-siem.db"
DEFAULT_API_RATE_LIMIT: Final = (50.0, 100)
DEFAULT_EXPORT_RETENTION: Final = timedelta(days=7)
_DURATION: Final = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Settings:
    """What the operator configured for this process."""

    database_url: str = DEFAULT_DATABASE_URL
    env: Literal["production", "development"] = "production"
    secret_key: str | None = None
    secret_key_file: str | None = None
    egress_allow: tuple[str, ...] = ()
    api_rate_limit: tuple[float, int] = DEFAULT_API_RATE_LIMIT
    export_retention: timedelta = DEFAULT_EXPORT_RETENTION
    api_docs: bool | None = None  # None: on in development, off in production

    @property
    def serve_api_docs(self) -> bool:
        """Whether the API serves its interactive reference (`/docs`): as
        XAVYO_SIEM_API_DOCS says, else only in development."""
        return self.development if self.api_docs is None else self.api_docs

    @property
    def development(self) -> bool:
        """True only when XAVYO_SIEM_ENV=development; production is the default."""
        return self.env == "development"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read XAVYO_SIEM_* variables; an unknown XAVYO_SIEM_ENV value, or a malformed
        XAVYO_SIEM_API_RATE_LIMIT, XAVYO_SIEM_EXPORT_RETENTION or XAVYO_SIEM_API_DOCS, is
        refused."""
        env = os.environ if environ is None else environ
        mode = env.get("XAVYO_SIEM_ENV", "production").strip().lower() or "production"
        if mode not in ("production", "development"):
            raise ValueError(
                f"XAVYO_SIEM_ENV: must be production or development, got {mode[:40]!r}"
            )
        allow = env.get("XAVYO_SIEM_EGRESS_ALLOW", "")
        return cls(
            database_url=env.get("XAVYO_SIEM_DATABASE_URL") or DEFAULT_DATABASE_URL,
            env="development" if mode == "development" else "production",
            secret_key=env.get("XAVYO_SIEM_SECRET_KEY") or None,
            secret_key_file=env.get("XAVYO_SIEM_SECRET_KEY_FILE") or None,
            egress_allow=tuple(part.strip() for part in allow.split(",") if part.strip()),
            api_rate_limit=parse_api_rate_limit(env.get("XAVYO_SIEM_API_RATE_LIMIT", "")),
            export_retention=parse_duration(
                "XAVYO_SIEM_EXPORT_RETENTION",
                env.get("XAVYO_SIEM_EXPORT_RETENTION", ""),
                default=DEFAULT_EXPORT_RETENTION,
            ),
            api_docs=_parse_switch("XAVYO_SIEM_API_DOCS", env.get("XAVYO_SIEM_API_DOCS", "")),
        )


def _parse_switch(name: str, text: str) -> bool | None:
    """`on`/`off` (or true/false, yes/no, 1/0); empty is None (the default)."""
    value = text.strip().lower()
    if not value:
        return None
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"{name}: must be on or off, got {text[:40]!r}")


def parse_api_rate_limit(text: str) -> tuple[float, int]:
    """`XAVYO_SIEM_API_RATE_LIMIT`: `REQUESTS_PER_S[:BURST]` per API token (the burst
    defaults to one second's requests); empty means the default, 50:100."""
    if not text.strip():
        return DEFAULT_API_RATE_LIMIT
    rate, _, burst = text.strip().partition(":")
    try:
        per_s = float(rate)
        size = int(burst) if burst else max(1, int(per_s))
    except ValueError:
        per_s, size = 0.0, 0
    if not (0 < per_s < float("inf")) or size < 1:
        raise ValueError(
            "XAVYO_SIEM_API_RATE_LIMIT: must be REQUESTS_PER_S or REQUESTS_PER_S:BURST with a"
            f" positive rate and a burst of at least 1, e.g. 50:100; got {text[:40]!r}"
        )
    return per_s, size


def parse_duration(name: str, text: str, *, default: timedelta) -> timedelta:
    """A positive duration `NUMBER UNIT`, the unit one of s, m, h, d (`7d`, `12h`, `90m`);
    empty means `default`. `name` (the setting or flag) names the value in the error."""
    if not text.strip():
        return default
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"{name}: must be a positive whole number followed by s, m, h or d, e.g. 7d;"
            f" got {text[:40]!r}"
        )
    return timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])
