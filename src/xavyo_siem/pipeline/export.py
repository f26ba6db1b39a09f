"""Bridge: the destination loop's old module name, for cli.py until it imports pipeline.loop.

Delete this module once the command line imports `xavyo_siem.pipeline` (or
`xavyo_siem.runtime`) directly.
"""

from xavyo_siem.pipeline.loop import DestinationLoop, PipelineSettings

__all__ = ["DestinationLoop", "PipelineSettings"]
