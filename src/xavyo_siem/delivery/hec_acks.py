"""Splunk HEC indexer acknowledgement: the ackIds one batch still awaits, and polling `/ack`
until HEC reports them indexed.

With `ack` on, HEC answers each accepted request with an ackId, and the events of that
request count as delivered only once `/ack` reports the ackId indexed. The transport caps
how many requests of a batch may await their ack at once (`ack_max_pending`, the way Vector
caps them with a semaphore); an ackId older than `ack_timeout_s` ends the batch as
`RetryLater`, and the pipeline resends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import orjson

from xavyo_siem.delivery.base import Misconfigured, RetryLater
from xavyo_siem.delivery.hec_replies import HecReply, classify_hec_ack

__all__ = ["PendingAcks"]


class PendingAcks:
    """The ackIds of one batch not yet reported indexed, each with the time it was issued.

    `post_ack` sends an `/ack` request body and returns HEC's answer; `monotonic` is the
    clock the ages are measured with; `secrets` (the token) never appear in a reason.
    """

    def __init__(
        self,
        *,
        post_ack: Callable[[bytes], Awaitable[HecReply]],
        timeout_s: float,
        poll_interval_s: float,
        monotonic: Callable[[], float],
        secrets: Sequence[str] = (),
    ) -> None:
        self._secrets = secrets
        self._post_ack = post_ack
        self._timeout_s = timeout_s
        self._poll_interval_s = poll_interval_s
        self._monotonic = monotonic
        self._issued: dict[int, float] = {}  # ackId -> when HEC issued it

    def __len__(self) -> int:
        return len(self._issued)

    def add(self, ack_id: int) -> None:
        """Await `ack_id`, issued now."""
        self._issued[ack_id] = self._monotonic()

    async def wait(self, *, keep: int) -> RetryLater | Misconfigured | None:
        """Poll `/ack` until at most `keep` ackIds are pending; None when done.

        Waiting between polls is pacing, not retrying: nothing is resent here. An ackId
        older than `ack_timeout_s` makes the batch `RetryLater` (the pipeline resends it).
        """
        issued = self._issued
        while len(issued) > keep:
            asked = sorted(issued)
            status, answer, headers = await self._post_ack(orjson.dumps({"acks": asked}))
            outcome = classify_hec_ack(status, answer, headers, asked=asked, secrets=self._secrets)
            if not isinstance(outcome, frozenset):
                return outcome
            for ack_id in outcome:
                del issued[ack_id]
            if len(issued) <= keep:
                break
            if self._monotonic() - min(issued.values()) >= self._timeout_s:
                return RetryLater(
                    f"HEC did not acknowledge {len(issued)} request(s) within "
                    f"ack_timeout_s={self._timeout_s:g}"
                )
            await asyncio.sleep(self._poll_interval_s)
        return None
