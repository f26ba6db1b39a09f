"""The delivery machinery: the destination loop, rate limit, retry, circuit, health reports.

It works over small protocols (`BatchSource`, `LaneStore`, `Transport`) and knows no store:
the worker (xavyo_siem.runtime) hands its lanes a store, and batch exports (xavyo_siem.batch)
plug their sources into the loop.
"""

from xavyo_siem.pipeline.circuit import CircuitBreaker
from xavyo_siem.pipeline.loop import (
    BatchSource,
    DestinationComponents,
    DestinationLoop,
    Formatter,
    OpenComponents,
    PipelineSettings,
    SourcePage,
    SourceStart,
)
from xavyo_siem.pipeline.rate_limit import TokenBucket
from xavyo_siem.pipeline.retry import RetryPolicy

__all__ = [
    "BatchSource",
    "CircuitBreaker",
    "DestinationComponents",
    "DestinationLoop",
    "Formatter",
    "OpenComponents",
    "PipelineSettings",
    "RetryPolicy",
    "SourcePage",
    "SourceStart",
    "TokenBucket",
]
