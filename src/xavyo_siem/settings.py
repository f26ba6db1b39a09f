"""Process settings read from the environment (fixed names: scripts and operators use them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["DEFAULT_DATABASE_URL", "Settings"]

DEFAULT_DATABASE_URL: Final = "sqlite:///./xavyo-siem.db"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the operator configured for this process."""

    database_url: str = DEFAULT_DATABASE_URL
    env: Literal["production", "development"] = "production"
    secret_key: str | None = None
    secret_key_file: str | None = None
    egress_allow: tuple[str, ...] = ()

    @property
    def development(self) -> bool:
        """True only when XAVYO_SIEM_ENV=development; production is the default."""
        return self.env == "development"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read XAVYO_SIEM_* variables; an unknown XAVYO_SIEM_ENV value is refused."""
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
        )
