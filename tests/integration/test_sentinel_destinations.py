"""Managing a sentinel destination: the formats it takes, its client secret sealed and bound
to both of its hosts, the SSRF guard on both hosts, and `destination test` walking the token
step then the ingestion step. Both store backends; contract peers from tests/peers/."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine

from xavyo_siem import destinations as manage
from xavyo_siem.crypto import CryptoError, KeyRing, new_key_text
from xavyo_siem.destinations import DestinationSpec
from xavyo_siem.egress import EgressGuard
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType, ExportFormat, SiemDestination
from xavyo_siem.runtime import open_destination
from xavyo_siem.runtime import test_destination as walk_destination_test
from xavyo_siem.settings import Settings
from xavyo_siem.store import destinations as rows
from xavyo_siem.store import writing

from peers.azure_peer import AzurePeer, TlsFiles, make_tls

KEYS = KeyRing.parse(new_key_text())
LOOPBACK = ("127.0.0.0/8", "localhost")
SETTINGS = Settings(env="production", egress_allow=LOOPBACK)
TENANT = UUID("6a1f0c3e-1b2d-4c5e-8f90-112233445566")
DCE = "https://dce-1.westeurope-1.ingest.monitor.azure.com"
RULE = {
    "dcr_immutable_id": "dcr-" + "0123456789abcdef" * 2,
    "stream": "Custom-XavyoAudit_CL",
    "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "client_id": "00000000-0000-4000-8000-000000000002",
}
SECRET = "Qx8Q~client.secret-of-the_app~0123456789"


def spec(
    endpoint: str, options: dict[str, Any], fmt: ExportFormat = ExportFormat.JSON
) -> DestinationSpec:
    return DestinationSpec(
        name=f"sentinel-{uuid4().hex[:8]}",
        delivery_type=DeliveryType.SENTINEL,
        format=fmt,
        endpoint=endpoint,
        options=options,
    )


def add(
    engine: Engine,
    endpoint: str,
    options: dict[str, Any],
    *,
    secret: str | None = SECRET,
    egress: EgressGuard | None = None,
    fmt: ExportFormat = ExportFormat.JSON,
) -> SiemDestination:
    return manage.add_destination(
        engine,
        tenant_id=TENANT,
        spec=spec(endpoint, options, fmt),
        secret=secret,
        keyring=KEYS,
        development=False,
        egress=egress or EgressGuard(allow=LOOPBACK),
    )


def resolver(answers: dict[str, str]) -> Any:
    """A `getaddrinfo` that answers each name from `answers` and refuses the rest."""

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    return getaddrinfo


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for localhost."""
    return make_tls(tmp_path_factory.mktemp("azure-tls"))


@pytest.fixture
async def peer(tls_files: TlsFiles) -> AsyncIterator[AzurePeer]:
    """The token and ingestion endpoints over HTTPS, on two ports."""
    async with AzurePeer(tls=tls_files, client_secret=SECRET) as server:
        yield server


@pytest.mark.parametrize("fmt", [ExportFormat.CEF, ExportFormat.SYSLOG])
def test_text_formats_are_refused_naming_the_format(engine: Engine, fmt: ExportFormat) -> None:
    """A stream takes JSON objects: cef and syslog are refused on `format`, naming the
    formats it takes; nothing is stored."""
    with pytest.raises(InvalidDestination) as caught:
        add(engine, DCE, RULE, fmt=fmt, egress=EgressGuard(getaddrinfo=resolver({})))
    assert caught.value.field == "format"
    assert "json" in caught.value.reason
    with engine.connect() as conn:
        assert rows.list_destinations(conn, tenant_id=TENANT) == []


@pytest.mark.parametrize("secret", [None, "", "two words", "line\nbreak"])
def test_a_missing_or_malformed_client_secret_is_refused(
    engine: Engine, secret: str | None
) -> None:
    """The client secret is required and must be printable without spaces; the refusal
    names `secret` and never quotes it."""
    with pytest.raises(InvalidDestination) as caught:
        add(engine, DCE, RULE, secret=secret, egress=EgressGuard(getaddrinfo=resolver({})))
    assert caught.value.field == "secret"
    assert "words" not in caught.value.reason


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"dce-1.westeurope-1.ingest.monitor.azure.com": "10.1.2.3"}, "endpoint"),
        (
            {
                "dce-1.westeurope-1.ingest.monitor.azure.com": "20.50.1.2",
                "login.microsoftonline.com": "169.254.169.254",
            },
            "options.authority_host",
        ),
    ],
)
def test_the_ssrf_guard_checks_both_hosts(
    engine: Engine, answers: dict[str, str], field: str
) -> None:
    """An internal address for the ingestion endpoint, or for the token endpoint, is refused
    at save time, naming the setting that points there; nothing is stored."""
    with pytest.raises(InvalidDestination) as caught:
        add(engine, DCE, RULE, egress=EgressGuard(getaddrinfo=resolver(answers)))
    assert caught.value.field == field
    assert "internal" in caught.value.reason
    with engine.connect() as conn:
        assert rows.list_destinations(conn, tenant_id=TENANT) == []


def test_both_public_hosts_are_accepted(engine: Engine) -> None:
    """With both hosts resolving to public addresses the destination is stored, its secret
    sealed (never in clear)."""
    answers = {
        "dce-1.westeurope-1.ingest.monitor.azure.com": "20.50.1.2",
        "login.microsoftonline.com": "20.190.160.1",
    }
    created = add(engine, DCE, RULE, egress=EgressGuard(getaddrinfo=resolver(answers)))
    with engine.connect() as conn:
        found = rows.get_destination_with_secret(conn, tenant_id=TENANT, destination_id=created.id)
    assert found is not None
    assert found[1] is not None
    assert SECRET not in found[1]


def test_moving_the_authority_host_needs_the_secret_again(engine: Engine) -> None:
    """The secret is bound to both hosts: pointing `authority_host` elsewhere is refused
    without the secret, naming the option; the rule and stream change freely."""
    answers = {
        "dce-1.westeurope-1.ingest.monitor.azure.com": "20.50.1.2",
        "login.microsoftonline.com": "20.190.160.1",
        "login.attacker.example": "203.0.114.9",
    }
    guard = EgressGuard(getaddrinfo=resolver(answers))
    created = add(engine, DCE, RULE, egress=guard)

    def update(changes: dict[str, Any], secret: str | None = None) -> SiemDestination:
        return manage.update_destination(
            engine,
            tenant_id=TENANT,
            destination_id=created.id,
            changes=changes,
            secret=secret,
            keyring=KEYS,
            development=False,
            egress=guard,
        )

    with pytest.raises(InvalidDestination) as caught:
        update({"options": {"authority_host": "https://login.attacker.example"}})
    assert caught.value.field == "options.authority_host"
    assert "needs the secret again" in caught.value.reason
    changed = update({"options": {"stream": "Custom-Other_CL"}})
    assert changed.options["stream"] == "Custom-Other_CL"
    moved = update({"options": {"authority_host": "https://login.attacker.example"}}, SECRET)
    assert moved.options["authority_host"] == "https://login.attacker.example"


def test_a_changed_authority_host_reaches_the_ssrf_guard(engine: Engine) -> None:
    """An update that points the token endpoint at an internal address is refused, even
    with the secret, naming `options.authority_host`."""
    answers = {
        "dce-1.westeurope-1.ingest.monitor.azure.com": "20.50.1.2",
        "login.microsoftonline.com": "20.190.160.1",
        "metadata.internal": "169.254.169.254",
    }
    guard = EgressGuard(getaddrinfo=resolver(answers))
    created = add(engine, DCE, RULE, egress=guard)
    with pytest.raises(InvalidDestination) as caught:
        manage.update_destination(
            engine,
            tenant_id=TENANT,
            destination_id=created.id,
            changes={"options": {"authority_host": "https://metadata.internal"}},
            secret=SECRET,
            keyring=KEYS,
            development=False,
            egress=guard,
        )
    assert caught.value.field == "options.authority_host"


async def test_a_secret_rebound_to_another_authority_in_the_store_does_not_open(
    engine: Engine, peer: AzurePeer
) -> None:
    """A direct change of the store that moves the token endpoint leaves the sealed secret
    bound to the old one: opening the destination refuses it, nothing is sent."""
    created = add(engine, peer.endpoint, peer.options())
    moved = {**created.options, "authority_host": "https://localhost:1"}
    with writing(engine) as conn:
        current = rows.get_destination(conn, tenant_id=TENANT, destination_id=created.id)
        assert current is not None
        rows.update_destination(
            conn,
            destination=replace(current, options=moved),
            now=current.updated_at,
        )
    with pytest.raises(CryptoError):
        await open_destination(engine, created, settings=SETTINGS, keyring=KEYS)
    assert peer.token_requests == []


async def test_destination_test_walks_the_token_then_the_ingestion(
    engine: Engine, peer: AzurePeer
) -> None:
    """Against the peers every step passes: configuration, both hosts resolved, the token,
    the ingestion endpoint over verified TLS, and the test event ingested."""
    created = add(engine, peer.endpoint, peer.options())
    steps = await walk_destination_test(engine, created, settings=SETTINGS, keyring=KEYS)
    assert [(s.step, s.ok) for s in steps] == [
        ("configuration", True),
        ("resolve", True),
        ("resolve", True),
        ("token", True),
        ("connect", True),
        ("tls", True),
        ("ingest", True),
    ], steps
    assert [row["event_type"] for row in peer.received] == ["XAVYO_SIEM_TEST"]
    assert "TimeGenerated" in peer.received[0]


async def test_destination_test_stops_at_the_token_step_when_the_secret_is_refused(
    engine: Engine, peer: AzurePeer
) -> None:
    """A secret the directory refuses fails the token step with Entra's error (not the
    secret), and nothing is sent to the stream."""
    created = add(engine, peer.endpoint, peer.options())
    peer.client_secret = "rotated-elsewhere"
    steps = await walk_destination_test(engine, created, settings=SETTINGS, keyring=KEYS)
    assert [(s.step, s.ok) for s in steps][-1] == ("token", False)
    assert "invalid_client" in steps[-1].detail
    assert SECRET not in steps[-1].detail
    assert peer.requests == []


async def test_destination_test_fails_the_ingest_step_without_the_role(
    engine: Engine, peer: AzurePeer
) -> None:
    """A token the rule does not accept (no role on the rule) passes the token step and fails
    the ingest step, naming the role to assign."""
    created = add(engine, peer.endpoint, peer.options())
    peer.faults.forbid = 2
    steps = await walk_destination_test(engine, created, settings=SETTINGS, keyring=KEYS)
    assert [(s.step, s.ok) for s in steps][-2:] == [("tls", True), ("ingest", False)]
    assert "Monitoring Metrics Publisher" in steps[-1].detail
