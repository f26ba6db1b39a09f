"""The worker's way of opening destinations, on both store backends: opens that start
together read their rows in one go, and each is still built from its own tenant's row."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, create_engine, event

from file_output import add_file_destination
from xavyo_siem import destinations as manage
from xavyo_siem.delivery.file import FileTransport
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import SiemError
from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.runtime.components import DestinationOpener
from xavyo_siem.runtime.store_gate import StoreUnavailable
from xavyo_siem.settings import Settings
from xavyo_siem.store.destinations import list_destinations
from xavyo_siem.store.engine import in_snapshot


def added(engine: Engine, tmp_path: Path, tenant: UUID, count: int) -> list[SiemDestination]:
    for number in range(count):
        add_file_destination(engine, tenant, tmp_path / f"t{tenant.int}-{number}.jsonl")
    return in_snapshot(engine, lambda conn: list_destinations(conn, tenant_id=tenant))


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    """The statements sent to the store meanwhile."""
    sent: list[str] = []

    def note(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def opener(engine: Engine) -> DestinationOpener:
    return DestinationOpener(engine, settings=Settings(), keyring=None, egress=EgressGuard())


async def test_opens_that_start_together_read_the_store_as_one(
    engine: Engine, tmp_path: Path
) -> None:
    """Twenty destinations of four tenants opened at once cost the statements of one open,
    and each gets a transport to its own endpoint."""
    many = [d for t in range(4) for d in added(engine, tmp_path, UUID(int=40 + t), 5)]
    open_components = opener(engine)
    with counted(engine) as one:
        await open_components(many[0])
    with counted(engine) as together:
        opened = await asyncio.gather(*(open_components(d) for d in many))
    assert len(together) == len(one)
    for destination, components in zip(many, opened, strict=True):
        assert isinstance(components.transport, FileTransport)
        assert f"file://{components.transport.config.path}" == destination.endpoint


async def test_a_destination_gone_or_of_another_tenant_does_not_open(
    engine: Engine, tmp_path: Path
) -> None:
    """Among opens that start together, a removed destination and one asked for under
    another tenant fail with `SiemError`; the others open."""
    kept, removed = added(engine, tmp_path, UUID(int=50), 2)
    (other,) = added(engine, tmp_path, UUID(int=51), 1)
    manage.remove_destination(engine, tenant_id=removed.tenant_id, destination_id=removed.id)
    posing = dataclasses.replace(other, tenant_id=kept.tenant_id)
    open_components = opener(engine)
    results = await asyncio.gather(
        open_components(kept),
        open_components(removed),
        open_components(posing),
        return_exceptions=True,
    )
    assert not isinstance(results[0], BaseException)
    for refused in results[1:]:
        assert isinstance(refused, SiemError)
        assert "no longer exists" in str(refused)


async def test_a_store_outage_reaches_every_open_waiting(tmp_path: Path) -> None:
    """When the store cannot be reached, every open that waited on the read fails with
    `StoreUnavailable` (not the destination's fault), and none is left waiting."""
    unreachable = create_engine(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
    destination = SiemDestination(
        id=UUID(int=1),
        tenant_id=UUID(int=2),
        name="x",
        delivery_type=DeliveryType.FILE,
        format=ExportFormat.JSON,
        endpoint=f"file://{tmp_path}/x.jsonl",
    )
    open_components = opener(unreachable)
    results = await asyncio.gather(
        open_components(destination),
        open_components(dataclasses.replace(destination, id=UUID(int=3))),
        return_exceptions=True,
    )
    assert [type(result) for result in results] == [StoreUnavailable, StoreUnavailable]
    with pytest.raises(StoreUnavailable):
        await open_components(destination)
