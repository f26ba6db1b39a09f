"""The exceptions xavyo-siem raises for misuse and bad input.

Peer answers (a refused connection, an HTTP 503, a revoked token) are *results* of a
transport, never exceptions. Exceptions are for our own misuse and for bad input, and each
message names the field and the rule, never a secret::

    SiemError
    ├── InvalidEvent(field, reason)        an audit event breaks a rule of the model
    ├── InvalidDestination(field, reason)  a destination's settings break a rule
    ├── InvalidFilter(field, reason)       an event filter breaks a rule
    ├── InvalidSource(field, reason)       a source's settings or its peer table break a rule
    ├── EncodeError(field, reason)         an event cannot be written in a format
    ├── TenantRequired                     a read was attempted without a tenant
    ├── StoreError                         the store is unreachable or not migrated
    └── ExportJobError                     a batch export cannot run as asked
        └── InvalidExport(field, reason)   an export request breaks a rule (bad input)
"""

from __future__ import annotations

__all__ = [
    "EncodeError",
    "ExportJobError",
    "InvalidDestination",
    "InvalidEvent",
    "InvalidExport",
    "InvalidFilter",
    "InvalidSource",
    "SiemError",
    "StoreError",
    "TenantRequired",
]


class SiemError(Exception):
    """Root of every exception xavyo-siem raises on purpose."""


class _FieldError(SiemError):
    """An error about one named field; the message names the field and the rule."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InvalidEvent(_FieldError):
    """An audit event breaks a rule of the model (bad UUID, naive timestamp, ...)."""

    def __init__(self, field: str, reason: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(field, reason)
        if line is not None:
            self.args = (f"line {line}: {field}: {reason}",)

    def at_line(self, line: int) -> InvalidEvent:
        """The same error, located at `line` of an input file (1-based)."""
        return InvalidEvent(self.field, self.reason, line=line)


class InvalidSource(_FieldError):
    """A source's settings, or the peer table it names, break a rule (`xavyo-siem source`)."""


class InvalidDestination(_FieldError):
    """A destination's settings break a rule (unknown option, bad endpoint, ...)."""


class InvalidFilter(_FieldError):
    """An event filter (of a destination or an export) breaks a rule."""


class EncodeError(_FieldError):
    """An event cannot be written in the requested format."""


class TenantRequired(SiemError):
    """A read of audit events was attempted without a tenant."""

    def __init__(self) -> None:
        super().__init__("tenant_id: required; audit events are only ever read per tenant")


class StoreError(SiemError):
    """The store cannot be used: unreachable, unknown URL scheme, or not migrated."""


class ExportJobError(SiemError):
    """A batch export cannot run as requested."""


class InvalidExport(_FieldError, ExportJobError):
    """An export request breaks a rule (end before start, unknown tenant, unwritable path)."""
