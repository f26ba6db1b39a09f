"""Key rotation end to end: rotate with the CLI, restart with only the new key, and the
destinations still authenticate to their peers; a key that cannot be used changes nothing."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from xavyo_siem import destinations as manage
from xavyo_siem.cli import app
from xavyo_siem.credentials import count_credentials_by_key, rotate_credentials
from xavyo_siem.crypto import CryptoError, KeyRing, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.sample import generate_events
from xavyo_siem.store import append_events, make_engine, upgrade
from xavyo_siem.store.tables import destinations

from peers.hec_server import HecServer

TOKEN = "9b0c6d52-3a1e-4f7d-8c2b-0e7a7103c0de"
LOOPBACK = ("127.0.0.0/8",)


async def cli(*args: str, env: Mapping[str, str], timeout: float = 120) -> tuple[int, str, str]:
    """Run `xavyo-siem ARGS` without blocking the loop that serves the test's peers."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xavyo_siem", *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def add_hec(engine: Engine, tenant: object, url: str, keys: KeyRing, name: str) -> SiemDestination:
    return manage.add_destination(
        engine,
        tenant_id=tenant,  # type: ignore[arg-type]
        spec=DestinationSpec(
            name=name,
            delivery_type=DeliveryType.SPLUNK_HEC,
            format=ExportFormat.JSON,
            endpoint=url,
            options={"start": "beginning"},
        ),
        secret=TOKEN,
        keyring=keys,
        development=True,
        egress=EgressGuard(allow=LOOPBACK),
    )


def sealed_key_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(destinations.c.secret).where(destinations.c.secret.is_not(None)))
        return sorted(sealed.split(".")[1] for (sealed,) in rows)


async def test_rotate_restart_with_only_the_new_key_and_deliveries_still_authenticate(
    store_url: str,
) -> None:
    """After `keys rotate` every credential is under the new key; a worker that holds only
    the new key delivers to HEC with the same token (each tenant's events, and the audit
    event of the rotation), and `keys status` without it fails."""
    engine = make_engine(store_url)
    upgrade(engine)
    old_key, new_key = new_key_text(), new_key_text()
    old_id, new_id = old_key.split(":")[0], new_key.split(":")[0]
    events = list(generate_events(300, 2, seed=42))
    with engine.begin() as conn:
        append_events(conn, events)
    tenants = sorted({e.tenant_id for e in events})
    base = {"XAVYO_SIEM_DATABASE_URL": store_url}
    async with HecServer(token=TOKEN) as hec:
        for number, tenant in enumerate(tenants):
            add_hec(engine, tenant, hec.url, KeyRing.parse(old_key), f"hec-{number}")
        assert sealed_key_ids(engine) == [old_id, old_id]

        ring = f"{old_key},{new_key}"
        code, _, err = await cli("keys", "rotate", env={**base, "XAVYO_SIEM_SECRET_KEY": ring})
        assert code == 0, err
        assert f"re-encrypted 2 credential(s) from key {old_id} to key {new_id}" in err
        assert sealed_key_ids(engine) == [new_id, new_id]
        code, out, _ = await cli(
            "keys", "status", "--json", env={**base, "XAVYO_SIEM_SECRET_KEY": new_key}
        )
        assert code == 0
        assert f'"key_id":"{new_id}"' in out
        assert '"credentials":2' in out
        code, _, err = await cli(
            "run", "--drain", "--poll-interval", "0.05",
            env={**base, "XAVYO_SIEM_SECRET_KEY": new_key, "XAVYO_SIEM_ENV": "development",
                 "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.0/8"},
        )  # fmt: skip
        assert code == 0, err
    received = [e["event"] for e in hec.received]
    rotated = [e for e in received if e["event_type"] == "SIEM_CREDENTIAL_KEY_ROTATED"]
    assert sorted(e["tenant_id"] for e in rotated) == [str(t) for t in tenants]
    assert sorted(e["event_id"] for e in received if e not in rotated) == sorted(
        str(e.event_id) for e in events
    )
    assert {r.status for r in hec.requests} == {200}
    engine.dispose()


def test_a_credential_no_key_opens_aborts_the_rotation_and_changes_nothing(engine: Engine) -> None:
    """Rotation is one transaction: one credential under a lost key leaves all as they were."""
    lost, kept, newest = new_key_text(), new_key_text(), new_key_text()
    tenant = uuid4()
    add_hec(engine, tenant, "http://127.0.0.1:9", KeyRing.parse(kept), "a")
    add_hec(engine, tenant, "http://127.0.0.1:9", KeyRing.parse(lost), "b")
    before = sealed_key_ids(engine)
    ring = KeyRing.parse(f"{kept},{newest}")
    with pytest.raises(CryptoError, match="nothing was rotated"):
        rotate_credentials(engine, ring)
    assert sealed_key_ids(engine) == before
    assert count_credentials_by_key(engine, ring) == dict.fromkeys(
        (lost.split(":")[0], kept.split(":")[0]), 1
    )


def test_production_refuses_to_start_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve`, `run` and `run --api` in production without a key stop before serving,
    naming the settings; `keys status` and `keys rotate` need the ring too."""
    for name in ("XAVYO_SIEM_ENV", "XAVYO_SIEM_SECRET_KEY", "XAVYO_SIEM_SECRET_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    commands = (["serve"], ["run", "--drain"], ["run", "--api"], ["keys", "status"])
    for number, command in enumerate(commands):
        db = f"sqlite:///{tmp_path}/store-{number}.db"
        result = CliRunner().invoke(app, [*command, "--db", db])
        assert isinstance(result.exception, CryptoError), (command, result.output)
        assert "XAVYO_SIEM_SECRET_KEY" in str(result.exception)
    assert not (tmp_path / ".xavyo-siem.key").exists()
