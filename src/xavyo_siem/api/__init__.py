"""The HTTP API (FastAPI): tenant-scoped management of destinations, health, dead letters
and audit events, over the same functions as the command line."""

from xavyo_siem.api.app import create_app
from xavyo_siem.api.limits import ApiLimits

__all__ = ["ApiLimits", "create_app"]
