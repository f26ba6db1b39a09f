"""The one small interface every transport implements, and the results it returns.

A transport speaks one protocol to one destination. It *classifies* what the peer said into
one of four results and never sleeps, retries, counts failures or opens a circuit: the
pipeline does that, once, for every transport. No exception from `ssl`, `socket` or the HTTP
library leaves a transport; peer answers are results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from xavyo_siem.speedups import to_epoch_us, uuid_text

if TYPE_CHECKING:
    from xavyo_siem.model import AuditEvent

__all__ = [
    "Delivered",
    "DeliveryResult",
    "Misconfigured",
    "NamedBatchTransport",
    "Record",
    "Rejected",
    "RetryLater",
    "Transport",
]


class Record(NamedTuple):
    """One event, already encoded, on its way to a destination.

    `text` is the formatted event (a CEF line, an RFC 5424 message, a JSON object, a CSV row);
    `event_id` and `timestamp_us` (epoch microseconds) travel beside it for transports whose
    envelope needs them (HEC `time`, webhook ids) and for dead letters. A named tuple, not a
    frozen dataclass: one is made per event, and a tuple is built several times faster.
    """

    event_id: str
    timestamp_us: int
    text: str

    @classmethod
    def of(cls, event: AuditEvent, text: str) -> Record:
        """The record of `event`, encoded as `text`."""
        return cls(uuid_text(event.event_id), to_epoch_us(event.timestamp), text)


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination accepted every record of the batch (HEC: and acknowledged it).

    `detail` says what the peer made of it where that is worth showing (S3: the objects
    written and their SHA-256); empty for most transports.
    """

    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Nothing of the batch is known to be accepted; send the same batch again later.

    `after_s` is the delay the peer asked for (Retry-After), if it asked for one.
    """

    reason: str
    after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """The destination refused some records for good; every record not listed was accepted.

    `by_index` maps the position of each refused record in the batch to the reason.
    """

    by_index: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Misconfigured:
    """The destination cannot accept anything until someone fixes its settings.

    A revoked token, a certificate that does not verify, an index the token may not write.
    `disable` says the endpoint declared itself gone for good (a webhook's 410 Gone, a
    disabled HEC token): the destination is switched off with the reason rather than probed.
    """

    reason: str
    disable: bool = False


DeliveryResult = Delivered | RetryLater | Rejected | Misconfigured


class NamedBatchTransport(Protocol):
    """A transport that names what it writes after the batch (S3 object keys): the pipeline
    hands it the batch's span in the store's order, `<after>-<through>`, beside the records,
    so that sending the same batch again writes the same names."""

    async def send_named(self, records: Sequence[Record], *, name: str | None) -> DeliveryResult:
        """Send `records` as one batch named `name` (None: no span, e.g. a replay)."""
        ...


class Transport(Protocol):
    """Sends batches of records to one destination and says what happened to each batch."""

    async def send(self, records: Sequence[Record]) -> DeliveryResult:
        """Send `records` in order, as one batch, and classify the outcome."""
        ...

    async def check(self) -> DeliveryResult:
        """Probe the destination without sending an event (connect, handshake, health)."""
        ...

    async def aclose(self) -> None:
        """Flush what is in flight and close cleanly (TLS: close_notify); never raises."""
        ...
