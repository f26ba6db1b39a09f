"""Credentials bound to where they go, from the command line and across the upgrade:
`destination update` refuses to move a credential without it, migration 0006 (or `keys
rotate`) binds credentials sealed by earlier versions, and `keys status` / `keys rotate`
name the destinations whose credential does not open. Both store backends, real HEC peers.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, select, text, update

import xavyo_siem.store
from xavyo_siem import destinations as manage
from xavyo_siem.credentials import CredentialBinder, check_credentials, rotate_credentials
from xavyo_siem.crypto import CryptoError, KeyRing, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination, to_epoch_us
from xavyo_siem.runtime import open_destination
from xavyo_siem.settings import Settings
from xavyo_siem.store import destinations as rows
from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.tables import destinations

from peers.hec_server import HecServer

TOKEN = "3c1d9e0a-5b7f-4e2d-8a6c-0b1dd1a6b0c7"
ATTACKER = "a77ac4e2-0000-4000-8000-00000000beef"
KEY = new_key_text()
RING = KeyRing.parse(KEY)
LOOPBACK = ("127.0.0.0/8",)
SETTINGS = Settings(env="development", egress_allow=LOOPBACK)


async def cli(*args: str, store_url: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Run `xavyo-siem ARGS` (development mode, loopback allowed, the test's key ring)
    without blocking the loop that serves the peers; (exit status, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xavyo_siem", *args,
        env={**os.environ, "COLUMNS": "300", "XAVYO_SIEM_DATABASE_URL": store_url,
             "XAVYO_SIEM_ENV": "development", "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.0/8",
             "XAVYO_SIEM_SECRET_KEY": KEY, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, err.decode()


def add_hec(engine: Engine, tenant: UUID, url: str, name: str = "splunk") -> SiemDestination:
    return manage.add_destination(
        engine,
        tenant_id=tenant,
        spec=DestinationSpec(
            name=name,
            delivery_type=DeliveryType.SPLUNK_HEC,
            format=ExportFormat.JSON,
            endpoint=url,
            options={"start": "beginning"},
        ),
        secret=TOKEN,
        keyring=RING,
        development=True,
        egress=EgressGuard(allow=LOOPBACK),
    )


def stored(engine: Engine, ident: UUID) -> tuple[str, str | None]:
    """The destination's stored endpoint and sealed credential."""
    with engine.connect() as conn:
        endpoint, secret = conn.execute(
            select(destinations.c.endpoint, destinations.c.secret).where(
                destinations.c.id == str(ident)
            )
        ).one()
    return endpoint, secret


def point_elsewhere_in_the_store(engine: Engine, ident: UUID, url: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(destinations).where(destinations.c.id == str(ident)).values(endpoint=url)
        )


def seal_v1(secret: str, tenant_id: UUID, destination_id: UUID) -> str:
    """A credential as versions before 0006 sealed it (from the old format, not crypto.py)."""
    kid, _, encoded = KEY.partition(":")
    nonce = os.urandom(12)
    aad = f"xavyo-siem/destination/{tenant_id}/{destination_id}".encode()
    sealed = AESGCM(base64.b64decode(encoded)).encrypt(nonce, secret.encode(), aad)
    return f"v1.{kid}." + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def store_at_0005_with_a_v1_credential(store_url: str, url: str) -> tuple[Engine, UUID]:
    """A store migrated to 0005 holding one HEC destination whose token was sealed as
    version 0005 sealed it."""
    engine = make_engine(store_url)
    config = Config()
    config.set_main_option(
        "script_location", str(Path(xavyo_siem.store.__file__).with_name("migrations"))
    )
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    tenant, ident = uuid4(), uuid4()
    now = to_epoch_us(datetime.now(UTC))
    # The rows as version 0005 wrote them: its columns only (today's code writes more).
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO destinations (id, tenant_id, name, delivery_type, format, endpoint,"
                " options, filters, enabled, secret, created_us, updated_us) VALUES (:id,"
                " :tenant, 'legacy', 'splunk_hec', 'json', :url, '{\"start\":\"beginning\"}',"
                " '{}', true, :secret, :now, :now)"
            ),
            {"id": str(ident), "tenant": str(tenant), "url": url, "now": now,
             "secret": seal_v1(TOKEN, tenant, ident)},
        )  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO destination_state (destination_id, tenant_id, cursor_txid,"
                " cursor_seq, circuit_state, successes, failures, consecutive_failures,"
                " throughput_eps, updated_us) VALUES (:id, :tenant, 0, 0, 'closed', 0, 0, 0,"
                " 0.0, :now)"
            ),
            {"id": str(ident), "tenant": str(tenant), "now": now},
        )
    return engine, ident


async def opens(engine: Engine, ident: UUID) -> bool:
    """Whether the worker can open the destination (its credential opens for it)."""
    with engine.connect() as conn:
        (destination,) = [d for d, _ in rows.all_credentials(conn) if d.id == ident]
    try:
        opened = await open_destination(engine, destination, settings=SETTINGS, keyring=RING)
    except CryptoError:
        return False
    await opened.transport.aclose()
    return True


async def test_cli_redirect_and_test_is_refused_and_reaches_no_one(store_url: str) -> None:
    """`destination update --endpoint` to another origin without `--secret-file` exits
    non-zero naming the field and changes nothing; `destination test` then reaches the real
    HEC only; with the secret file the move passes."""
    engine = make_engine(store_url)
    upgrade(engine)
    tenant = uuid4()
    async with HecServer(token=TOKEN) as hec, HecServer(token=ATTACKER) as evil:
        made = add_hec(engine, tenant, hec.url)
        before = stored(engine, made.id)
        code, err = await cli(
            "destination", "update", "--tenant", str(tenant), "splunk", "--endpoint", evil.url,
            store_url=store_url,
        )  # fmt: skip
        assert code == 2, err
        assert "endpoint" in err
        assert "needs the secret again" in err
        assert stored(engine, made.id) == before
        code, err = await cli(
            "destination", "test", "--tenant", str(tenant), "splunk", store_url=store_url
        )
        assert code == 0, err
        assert evil.requests == []
        assert len(hec.received) == 1
        secret_file = Path(f"/tmp/xavyo-binding-{uuid4().hex}")
        secret_file.write_text(ATTACKER)
        try:
            code, err = await cli(
                "destination", "update", "--tenant", str(tenant), "splunk",
                "--endpoint", evil.url, "--secret-file", str(secret_file), store_url=store_url,
            )  # fmt: skip
        finally:
            secret_file.unlink()
        assert code == 0, err
        code, err = await cli(
            "destination", "test", "--tenant", str(tenant), "splunk", store_url=store_url
        )
        assert code == 0, err
    assert len(evil.received) == 1  # accepted: it came with the new token
    assert len(hec.received) == 1
    engine.dispose()


async def test_keys_status_and_rotate_name_a_credential_pointed_elsewhere(store_url: str) -> None:
    """After a direct SQL change of one endpoint, `keys status` and `keys rotate` exit 1
    naming that destination (and only it); rotation still moves both to the new key, each
    bound to where it was given for, so pointing the row back makes all well again."""
    engine = make_engine(store_url)
    upgrade(engine)
    tenant = uuid4()
    kept = add_hec(engine, tenant, "http://127.0.0.1:9/", "kept")
    moved = add_hec(engine, tenant, "http://127.0.0.1:9/", "moved")
    point_elsewhere_in_the_store(engine, moved.id, "http://127.0.0.1:10/")
    assert [p.destination_id for p in check_credentials(engine, RING)] == [moved.id]
    code, err = await cli("keys", "status", store_url=store_url)
    assert code == 1
    assert "'moved'" in err
    assert "'kept'" not in err
    newer = new_key_text()
    ring = {"XAVYO_SIEM_SECRET_KEY": f"{KEY},{newer}"}
    code, err = await cli("keys", "rotate", store_url=store_url, env=ring)
    assert code == 1
    assert "'moved'" in err
    assert "'kept'" not in err
    assert "re-encrypted 2 credential(s)" in err
    after = [stored(engine, d.id)[1] or "" for d in (kept, moved)]
    assert [text.split(".")[1] for text in after] == [newer.split(":")[0]] * 2
    point_elsewhere_in_the_store(engine, moved.id, "http://127.0.0.1:9/")
    code, err = await cli("keys", "status", store_url=store_url, env=ring)
    assert code == 0, err
    engine.dispose()


async def test_keys_status_names_a_hec_destination_without_its_token(engine: Engine) -> None:
    """An HEC destination whose credential was removed in the store is named as missing it."""
    made = add_hec(engine, uuid4(), "http://127.0.0.1:9/")
    with engine.begin() as conn:
        conn.execute(
            update(destinations).where(destinations.c.id == str(made.id)).values(secret=None)
        )
    (problem,) = check_credentials(engine, RING)
    assert problem.name == "splunk"
    assert "has none" in problem.reason


async def test_migration_0006_binds_a_v1_credential_so_it_opens(store_url: str) -> None:
    """Upgraded with the key ring, a credential sealed by 0005 is re-sealed under its
    destination's binding: it opens for the worker and `keys status` is clean."""
    engine, ident = store_at_0005_with_a_v1_credential(store_url, "http://127.0.0.1:9/")
    binder = CredentialBinder(RING)
    upgrade(engine, bind_credential=binder)
    assert (binder.bound, binder.left) == (1, [])
    _, sealed = stored(engine, ident)
    assert sealed is not None
    assert sealed.startswith("v2.")
    assert await opens(engine, ident)
    assert check_credentials(engine, RING) == []
    engine.dispose()


async def test_db_upgrade_with_the_key_binds_v1_credentials(store_url: str) -> None:
    """`xavyo-siem db upgrade` with the key ring configured runs the binding and says so."""
    engine, ident = store_at_0005_with_a_v1_credential(store_url, "http://127.0.0.1:9/")
    code, err = await cli("db", "upgrade", store_url=store_url)
    assert code == 0, err
    assert "bound 1 credential(s)" in err
    assert await opens(engine, ident)
    engine.dispose()


async def test_without_the_key_v1_stays_refused_until_keys_rotate_binds_it(
    store_url: str,
) -> None:
    """Migrated without the key ring, a `v1` credential is refused by the worker and named by
    `keys status` (saying `keys rotate`); `keys rotate` binds it and it opens."""
    engine, ident = store_at_0005_with_a_v1_credential(store_url, "http://127.0.0.1:9/")
    upgrade(engine)
    _, sealed = stored(engine, ident)
    assert sealed is not None
    assert sealed.startswith("v1.")
    assert not await opens(engine, ident)
    (problem,) = check_credentials(engine, RING)
    assert "keys rotate" in problem.reason
    report = rotate_credentials(engine, RING)
    assert report.bound == 1
    assert await opens(engine, ident)
    assert check_credentials(engine, RING) == []
    engine.dispose()


async def test_a_v1_credential_moved_in_the_store_before_binding_is_bound_where_it_points(
    store_url: str,
) -> None:
    """What `v1` cannot say: binding takes the endpoint the destination has at that moment,
    so a row pointed elsewhere before the upgrade is bound there (why the binding must run
    right at the upgrade: security.md)."""
    engine, ident = store_at_0005_with_a_v1_credential(store_url, "http://127.0.0.1:9/")
    point_elsewhere_in_the_store(engine, ident, "http://127.0.0.1:10/")
    upgrade(engine, bind_credential=CredentialBinder(RING))
    assert await opens(engine, ident)
    point_elsewhere_in_the_store(engine, ident, "http://127.0.0.1:9/")
    assert not await opens(engine, ident)
    engine.dispose()


@pytest.mark.parametrize("kind", ["binder", "rotate"])
async def test_a_v1_credential_that_does_not_open_is_left_and_named(
    store_url: str, kind: str
) -> None:
    """A `v1` credential no key of the ring opens stays as it is: the binder counts it as
    left, rotation refuses to run; nothing is half-written."""
    engine, ident = store_at_0005_with_a_v1_credential(store_url, "http://127.0.0.1:9/")
    other = KeyRing.parse(new_key_text())
    before = stored(engine, ident)
    if kind == "binder":
        binder = CredentialBinder(other)
        upgrade(engine, bind_credential=binder)
        assert binder.bound == 0
        assert len(binder.left) == 1
    else:
        upgrade(engine)
        with pytest.raises(CryptoError, match="nothing was rotated"):
            rotate_credentials(engine, other)
    assert stored(engine, ident) == before
    engine.dispose()
