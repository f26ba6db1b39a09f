"""JSON lines file destinations in tests: adding one, and the event ids it holds.

The worker appends a batch in one write, which a read may catch halfway: a last line without
its newline is still being written and is not counted yet.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import orjson
from sqlalchemy import Engine

from xavyo_siem import destinations as manage
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.model import DeliveryType, EventFilter, ExportFormat, RateLimit


def add_file_destination(
    engine: Engine,
    tenant: UUID,
    path: Path,
    *,
    batch: int | None = None,
    rate: RateLimit | None = None,
    filters: EventFilter | None = None,
) -> None:
    """A JSON lines file destination named after the file, from the tenant's first event
    (`start=beginning`), with `batch` events per batch (the type's default when None)."""
    options = {"start": "beginning"}
    if batch is not None:
        options["batch_max_events"] = str(batch)
    manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=DestinationSpec(
            name=path.stem,
            delivery_type=DeliveryType.FILE,
            format=ExportFormat.JSON,
            endpoint=f"file://{path}",
            options=options,
            filters=filters or EventFilter(),
            rate_limit=rate,
        ),
        secret=None,
        keyring=None,
        development=False,
    )


def delivered_ids(path: Path) -> list[str]:
    """The event ids in the file so far, in file order (empty when there is no file yet)."""
    if not path.exists():
        return []
    complete = path.read_bytes().rpartition(b"\n")[0]
    return [str(orjson.loads(line)["event_id"]) for line in complete.splitlines() if line.strip()]


def delivered_id_set(path: Path) -> set[str]:
    """The event ids in the file so far, as a set."""
    return set(delivered_ids(path))
