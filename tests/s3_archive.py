"""What the S3 tests share: a worker over the store with quick pacing, S3 destinations
pointed at the moto server, and reading back what the bucket holds."""

from __future__ import annotations

import gzip
import json
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Engine

from xavyo_siem import destinations as manage
from xavyo_siem.crypto import KeyRing, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import AuditEvent, DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.pipeline import DestinationComponents, PipelineSettings, RetryPolicy
from xavyo_siem.runtime import Worker, WorkerSettings, open_destination
from xavyo_siem.sample import generate_events
from xavyo_siem.settings import Settings
from xavyo_siem.store import append_events

from peers.s3_server import MotoS3

__all__ = ["DEV", "KEYS", "add_s3", "archived_ids", "lines_of", "stored", "worker"]

# Loopback peers: the SSRF guard refuses 127.0.0.1 unless the operator allows it.
DEV = Settings(env="development", egress_allow=("127.0.0.0/8", "::1/128", "localhost"))
KEYS = KeyRing.parse(new_key_text())
_QUICK = WorkerSettings(
    lease_ttl_s=5,
    scan_interval_s=0.1,
    listen_poll_s=0.05,
    pipeline=PipelineSettings(
        poll_interval_s=0.05,
        retry=RetryPolicy(base_s=0.01, cap_s=0.2, misconfigured_cap_s=0.2),
        lag_refresh_s=0.2,
    ),
)


def stored(engine: Engine, count: int, seed: int) -> list[AuditEvent]:
    """`count` sample events of one tenant, appended to the store."""
    events = list(generate_events(count, 1, seed=seed))
    with engine.begin() as conn:
        append_events(conn, events)
    return events


def add_s3(
    engine: Engine,
    tenant: UUID,
    moto: MotoS3,
    *,
    secret: str | None = None,
    export_format: ExportFormat = ExportFormat.JSON,
    prefix: str = "audit",
    **options: Any,
) -> SiemDestination:
    """An S3 destination writing JSON (or `export_format`) to `moto`'s bucket under
    `prefix`, from the beginning and without waiting for fuller objects, unless `options`
    say otherwise."""
    assert moto.key is not None
    return manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=DestinationSpec(
            name=f"archive-{uuid4().hex[:6]}",
            delivery_type=DeliveryType.S3,
            format=export_format,
            endpoint=f"s3://{moto.bucket}/{prefix}",
            options={
                "endpoint_url": moto.url,
                "start": "beginning",
                "object_max_age_s": "0",
                **options,
            },
        ),
        secret=secret or moto.key.secret(),
        keyring=KEYS,
        development=True,
        egress=EgressGuard.from_settings(DEV),
    )


def worker(engine: Engine) -> Worker:
    """A worker that delivers every destination of the store through its real transport."""

    async def open_components(destination: SiemDestination) -> DestinationComponents:
        return await open_destination(engine, destination, settings=DEV, keyring=KEYS)

    return Worker(engine=engine, open_components=open_components, settings=_QUICK)


def lines_of(moto: MotoS3, key: str) -> list[dict[str, Any]]:
    """The JSON lines of one object."""
    return [json.loads(line) for line in gzip.decompress(moto.read(key)).splitlines()]


def archived_ids(moto: MotoS3) -> list[str]:
    """Every event id in every object of the bucket (objects in key order)."""
    return [line["event_id"] for key in moto.object_keys() for line in lines_of(moto, key)]
