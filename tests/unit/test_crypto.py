"""Credential encryption: AES-256-GCM bound to the destination, with a key ring."""

from __future__ import annotations

import logging
from pathlib import Path
from uuid import uuid4

import pytest

from xavyo_siem.crypto import CryptoError, KeyRing, load_key_ring, new_key_text
from xavyo_siem.settings import Settings

TENANT, DESTINATION = uuid4(), uuid4()


def test_sealed_secret_opens_for_its_destination_and_hides_the_plaintext() -> None:
    """A sealed secret decrypts for the same destination, and its text does not contain it."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("hec-token-123", tenant_id=TENANT, destination_id=DESTINATION)
    assert "hec-token-123" not in sealed
    assert ring.open(sealed, tenant_id=TENANT, destination_id=DESTINATION) == "hec-token-123"


def test_sealing_twice_gives_different_ciphertexts() -> None:
    """Each seal uses a fresh nonce, so equal secrets are not recognisable at rest."""
    ring = KeyRing.parse(new_key_text())
    first = ring.seal("s", tenant_id=TENANT, destination_id=DESTINATION)
    assert first != ring.seal("s", tenant_id=TENANT, destination_id=DESTINATION)


@pytest.mark.parametrize("moved_to", ["tenant", "destination"])
def test_ciphertext_moved_to_another_destination_does_not_open(moved_to: str) -> None:
    """The tenant and destination are authenticated data: a copied ciphertext is refused."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("secret", tenant_id=TENANT, destination_id=DESTINATION)
    tenant = uuid4() if moved_to == "tenant" else TENANT
    destination = uuid4() if moved_to == "destination" else DESTINATION
    with pytest.raises(CryptoError, match="tampered or moved"):
        ring.open(sealed, tenant_id=tenant, destination_id=destination)


def test_tampered_ciphertext_is_refused() -> None:
    """Changing one character of the ciphertext makes it fail authentication."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("secret", tenant_id=TENANT, destination_id=DESTINATION)
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(CryptoError):
        ring.open(flipped, tenant_id=TENANT, destination_id=DESTINATION)


def test_old_key_still_opens_after_a_new_key_is_added() -> None:
    """During rotation the newest key seals and the older one still opens its secrets."""
    old = new_key_text()
    sealed_old = KeyRing.parse(old).seal("s1", tenant_id=TENANT, destination_id=DESTINATION)
    ring = KeyRing.parse(f"{old},{new_key_text()}")
    assert ring.open(sealed_old, tenant_id=TENANT, destination_id=DESTINATION) == "s1"
    sealed_new = ring.seal("s2", tenant_id=TENANT, destination_id=DESTINATION)
    assert ring.key_id_of(sealed_new) == ring.primary != ring.key_id_of(sealed_old)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("not base64!!", "not base64"),
        ("c2hvcnQ=", "must be 32 bytes"),
    ],
)
def test_malformed_key_ring_is_refused_without_echoing_it(text: str, message: str) -> None:
    """A bad key ring raises CryptoError that says what is wrong and never repeats the key."""
    with pytest.raises(CryptoError, match=message) as caught:
        KeyRing.parse(text)
    assert text.strip() == "" or text not in str(caught.value)


def test_production_without_a_key_refuses(tmp_path: Path) -> None:
    """Outside development mode there is no fallback key: loading the ring fails clearly."""
    with pytest.raises(CryptoError, match="XAVYO_SIEM_SECRET_KEY"):
        load_key_ring(Settings(env="production"), key_file=tmp_path / "k")
    assert not (tmp_path / "k").exists()


def test_development_makes_a_private_key_file_once_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In development the first use makes a 0600 key file and warns; later uses reuse it."""
    key_file = tmp_path / "dev.key"
    with caplog.at_level(logging.WARNING, logger="xavyo_siem.crypto"):
        first = load_key_ring(Settings(env="development"), key_file=key_file)
    assert "development mode" in caplog.text
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_key_ring(Settings(env="development"), key_file=key_file) == first


def test_key_file_setting_is_read(tmp_path: Path) -> None:
    """XAVYO_SIEM_SECRET_KEY_FILE names a file holding the key ring."""
    path = tmp_path / "ring"
    text = new_key_text()
    path.write_text(text + "\n")
    assert load_key_ring(Settings(secret_key_file=str(path))) == KeyRing.parse(text)
