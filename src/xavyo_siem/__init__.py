"""xavyo-siem: exports an identity provider's audit events to its tenants' SIEM systems."""

from xavyo_siem.model import AuditEvent

__all__ = ["AuditEvent", "__version__"]

__version__ = "0.1.0"
