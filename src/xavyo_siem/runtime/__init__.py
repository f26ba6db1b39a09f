"""The composition root: the worker, opening a destination's components, co-hosting the API.

Everything below it (batch exports, the delivery pipeline, delivery, format, the store) is
put together here; the command line and the HTTP API call into it and nothing below them
composes the others.
"""

from xavyo_siem.runtime.components import TestStep, open_destination, test_destination, test_event
from xavyo_siem.runtime.hosting import ApiServing, run_worker, serve_api, single_worker_lock
from xavyo_siem.runtime.worker import Worker
from xavyo_siem.runtime.worker_settings import WorkerSettings

__all__ = [
    "ApiServing",
    "TestStep",
    "Worker",
    "WorkerSettings",
    "open_destination",
    "run_worker",
    "serve_api",
    "single_worker_lock",
    "test_destination",
    "test_event",
]
