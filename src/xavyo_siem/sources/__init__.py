"""Sources: tables of the identity provider's own database, tailed into the store.

`manage` adds, lists and removes them (the connection string sealed, the peer table
checked), `peer` connects to the peer and reads its table in an order that never skips a
row, `mapping` makes a row the JSON form of an event, and `tail` is the worker's part: one
task per source, each page of events stored with the source's cursor in one transaction.
See docs/sources.md.
"""

from xavyo_siem.sources.manage import (
    SOURCE_OPTIONS,
    SOURCE_TYPES,
    SourceSpec,
    add_source,
    find_source,
    list_sources,
    remove_source,
)
from xavyo_siem.sources.mapping import parse_mapping
from xavyo_siem.sources.peer import PeerError
from xavyo_siem.sources.tail import SourceTailer, TailSettings

__all__ = [
    "SOURCE_OPTIONS",
    "SOURCE_TYPES",
    "PeerError",
    "SourceSpec",
    "SourceTailer",
    "TailSettings",
    "add_source",
    "find_source",
    "list_sources",
    "parse_mapping",
    "remove_source",
]
