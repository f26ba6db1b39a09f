"""Bridge: the worker's old module name, for cli.py until it imports xavyo_siem.runtime.

The worker is the composition root's (xavyo_siem.runtime.worker); importing it from here
points up the layers. Delete this module once the command line imports the runtime.
"""

from xavyo_siem.runtime.worker import Worker, WorkerSettings, single_worker_lock

__all__ = ["Worker", "WorkerSettings", "single_worker_lock"]
