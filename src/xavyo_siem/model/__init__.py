"""The audit event, its enums, and the other records that flow through xavyo-siem."""

from xavyo_siem.model.event import *  # noqa: F403
from xavyo_siem.model.event import TEXT_FIELDS, __all__  # noqa: F401
