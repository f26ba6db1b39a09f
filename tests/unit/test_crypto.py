"""Credential encryption: AES-256-GCM bound to the destination and where its credential
goes, with a key ring; `v1` secrets (sealed before bindings) open only unbound."""

from __future__ import annotations

import base64
import logging
import os
import re
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xavyo_siem.crypto import CryptoError, KeyRing, binding_of, load_key_ring, new_key_text
from xavyo_siem.settings import Settings

TENANT, DESTINATION = uuid4(), uuid4()
BINDING = ("splunk_hec", "https://hec.example.com:8088")
WHERE = {"tenant_id": TENANT, "destination_id": DESTINATION, "binding": BINDING}


def seal_v1(key_text: str, secret: str, tenant_id: UUID, destination_id: UUID) -> str:
    """A secret as versions before bindings sealed it (written here from the old format,
    sharing no code with crypto.py)."""
    kid, _, encoded = key_text.partition(":")
    nonce = os.urandom(12)
    aad = f"xavyo-siem/destination/{tenant_id}/{destination_id}".encode()
    sealed = AESGCM(base64.b64decode(encoded)).encrypt(nonce, secret.encode(), aad)
    return f"v1.{kid}." + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def test_sealed_secret_opens_for_its_destination_and_hides_the_plaintext() -> None:
    """A sealed secret decrypts for the same destination, and its text does not contain it."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("hec-token-123", **WHERE)
    assert "hec-token-123" not in sealed
    assert sealed.startswith("v2.")
    assert ring.open(sealed, **WHERE) == "hec-token-123"


def test_sealing_twice_gives_different_ciphertexts() -> None:
    """Each seal uses a fresh nonce, so equal secrets are not recognisable at rest."""
    ring = KeyRing.parse(new_key_text())
    first = ring.seal("s", **WHERE)
    assert first != ring.seal("s", **WHERE)


@pytest.mark.parametrize("moved_to", ["tenant", "destination"])
def test_ciphertext_moved_to_another_destination_does_not_open(moved_to: str) -> None:
    """The tenant and destination are authenticated data: a copied ciphertext is refused."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("secret", **WHERE)
    tenant = uuid4() if moved_to == "tenant" else TENANT
    destination = uuid4() if moved_to == "destination" else DESTINATION
    with pytest.raises(CryptoError, match="moved or tampered"):
        ring.open(sealed, tenant_id=tenant, destination_id=destination, binding=BINDING)


@pytest.mark.parametrize(
    "binding",
    [
        ("webhook", "https://hec.example.com:8088"),  # another delivery type
        ("splunk_hec", "https://attacker.example:8088"),  # another host
        ("splunk_hec", "https://hec.example.com:443"),  # another port
        ("splunk_hec", "http://hec.example.com:8088"),  # another scheme
        ("splunk_hec", "https://hec.example.com:8088", "https://x.example:443"),  # one more
        ("splunk_hec",),  # one fewer
        ("splunk_hec\nhttps://hec.example.com:8088",),  # the same text, parts run together
    ],
)
def test_credential_does_not_open_under_another_binding(binding: tuple[str, ...]) -> None:
    """The delivery type and every origin are authenticated data: any other binding fails."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("secret", **WHERE)
    with pytest.raises(CryptoError):
        ring.open(sealed, tenant_id=TENANT, destination_id=DESTINATION, binding=binding)


def test_a_secret_given_for_another_binding_says_where_it_was_given_for() -> None:
    """Opened for another binding, the error names the one it was given for and the one
    asked for (origins, never the secret)."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("hec-token-123", **WHERE)
    elsewhere = ("splunk_hec", "https://attacker.example:443")
    with pytest.raises(CryptoError) as caught:
        ring.open(sealed, tenant_id=TENANT, destination_id=DESTINATION, binding=elsewhere)
    message = str(caught.value)
    assert "given for splunk_hec https://hec.example.com:8088" in message
    assert "now sends to splunk_hec https://attacker.example:443" in message
    assert "hec-token-123" not in message


def test_a_binding_edited_in_the_sealed_text_does_not_open() -> None:
    """The binding written in the text is authenticated: put another one there and ask for
    it, and the secret does not open."""
    ring = KeyRing.parse(new_key_text())
    version, kid, _, body = ring.seal("secret", **WHERE).split(".")
    elsewhere = ("splunk_hec", "https://attacker.example:443")
    label = base64.urlsafe_b64encode("\n".join(elsewhere).encode()).decode().rstrip("=")
    forged = f"{version}.{kid}.{label}.{body}"
    assert binding_of(forged) == elsewhere
    with pytest.raises(CryptoError, match="moved or tampered"):
        ring.open(forged, tenant_id=TENANT, destination_id=DESTINATION, binding=elsewhere)


def test_reseal_moves_to_the_primary_key_and_keeps_the_binding() -> None:
    """Rotation re-seals under the newest key and the secret's own binding, never another."""
    old = new_key_text()
    sealed = KeyRing.parse(old).seal("s1", **WHERE)
    ring = KeyRing.parse(f"{old},{new_key_text()}")
    fresh = ring.reseal(sealed, tenant_id=TENANT, destination_id=DESTINATION)
    assert ring.key_id_of(fresh) == ring.primary != ring.key_id_of(sealed)
    assert binding_of(fresh) == BINDING
    assert ring.open(fresh, **WHERE) == "s1"


def test_v1_secret_opens_only_unbound() -> None:
    """A secret sealed before bindings is refused by `open` (saying how to bind it) and
    read only by `open_unbound`, for its own tenant and destination."""
    key = new_key_text()
    ring = KeyRing.parse(key)
    old = seal_v1(key, "legacy-token", TENANT, DESTINATION)
    with pytest.raises(CryptoError, match="keys rotate"):
        ring.open(old, **WHERE)
    assert ring.open_unbound(old, tenant_id=TENANT, destination_id=DESTINATION) == "legacy-token"
    with pytest.raises(CryptoError):
        ring.open_unbound(old, tenant_id=TENANT, destination_id=uuid4())
    with pytest.raises(CryptoError, match="unknown format"):
        ring.open_unbound(ring.seal("s", **WHERE), tenant_id=TENANT, destination_id=DESTINATION)


def test_tampered_ciphertext_is_refused() -> None:
    """Changing one character of the ciphertext makes it fail authentication."""
    ring = KeyRing.parse(new_key_text())
    sealed = ring.seal("secret", **WHERE)
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(CryptoError):
        ring.open(flipped, **WHERE)


def test_old_key_still_opens_after_a_new_key_is_added() -> None:
    """During rotation the newest key seals and the older one still opens its secrets."""
    old = new_key_text()
    sealed_old = KeyRing.parse(old).seal("s1", **WHERE)
    ring = KeyRing.parse(f"{old},{new_key_text()}")
    assert ring.open(sealed_old, **WHERE) == "s1"
    sealed_new = ring.seal("s2", **WHERE)
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


def private_key_file(tmp_path: Path, mode: int = 0o600, content: bytes | None = None) -> Path:
    """A key file holding a fresh key ring (or `content`), with `mode`."""
    path = tmp_path / "ring"
    path.write_bytes(new_key_text().encode() + b"\n" if content is None else content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666, 0o660, 0o622])
def test_a_key_file_others_may_write_is_refused_naming_it_and_the_fix(
    tmp_path: Path, mode: int
) -> None:
    """A key file its group or others may write is refused with its path, its mode and
    `chmod 600`, since whoever can replace the key gets new credentials sealed with theirs."""
    path = private_key_file(tmp_path, mode)
    with pytest.raises(CryptoError) as caught:
        load_key_ring(Settings(secret_key_file=str(path)))
    message = str(caught.value)
    assert "XAVYO_SIEM_SECRET_KEY_FILE" in message
    assert str(path) in message
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {path}" in message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o444])
def test_a_key_file_others_may_read_is_used_with_a_warning(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A key file its group or others may read is used, and a warning names it, its mode
    and `chmod 600`; a private one (0600, 0400) gives no warning."""
    path = private_key_file(tmp_path, mode)
    with caplog.at_level(logging.WARNING, logger="xavyo_siem.crypto"):
        load_key_ring(Settings(secret_key_file=str(path)))
    (record,) = caplog.records
    assert str(path) in record.getMessage()
    assert f"mode {mode:04o}" in record.getMessage()
    assert "chmod 600" in record.getMessage()
    caplog.clear()
    for private in (0o600, 0o400):
        path.chmod(private)
        with caplog.at_level(logging.WARNING, logger="xavyo_siem.crypto"):
            load_key_ring(Settings(secret_key_file=str(path)))
        assert caplog.records == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    """A key file owned by a user that is neither the process's nor root is refused naming
    its owner, however private its mode: its owner could replace the key."""
    path = private_key_file(tmp_path)
    os.chown(path, 54321, 54321)
    with pytest.raises(CryptoError, match=r"belongs to uid 54321, neither this process's user"):
        load_key_ring(Settings(secret_key_file=str(path)))


def test_a_key_file_owned_by_root_is_accepted(tmp_path: Path) -> None:
    """Root may own the key file (a mounted secret); the check is on who else may write."""
    path = private_key_file(tmp_path)
    if os.geteuid() == 0:
        assert path.stat().st_uid == 0
    assert load_key_ring(Settings(secret_key_file=str(path))).primary


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe" + "k".encode("utf-16-le"), "is not UTF-8 text (byte 0 cannot be decoded)"),
        (b"a2V5\xc3(", "is not UTF-8 text (byte 4 cannot be decoded)"),
        (b"\x00" * 40, "secret key 1: is not base64"),
    ],
)
def test_a_key_file_that_is_not_utf8_text_gives_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """Bytes that are not UTF-8 are a CryptoError naming the setting, the file and the byte,
    never a traceback and never the file's content."""
    path = private_key_file(tmp_path, content=content)
    with pytest.raises(CryptoError, match=re.escape(message)) as caught:
        load_key_ring(Settings(secret_key_file=str(path)))
    assert str(caught.value).startswith(f"XAVYO_SIEM_SECRET_KEY_FILE: {path}")


def test_a_key_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A directory or a pipe named as the key file is refused at once, never read or
    waited on."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe, 0o600)
    for path in (tmp_path, pipe):
        with pytest.raises(CryptoError, match=f"{re.escape(str(path))} is not a regular file"):
            load_key_ring(Settings(secret_key_file=str(path)))


def test_a_key_file_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    """A UTF-8 byte order mark (left by some editors) before the keys is ignored."""
    text = new_key_text()
    path = private_key_file(tmp_path, content=b"\xef\xbb\xbf" + text.encode())
    assert load_key_ring(Settings(secret_key_file=str(path))) == KeyRing.parse(text)


def test_both_key_settings_at_once_are_refused_naming_both(tmp_path: Path) -> None:
    """The key in the environment and a key file together are refused, even when they hold
    the same key: neither silently wins."""
    text = new_key_text()
    path = private_key_file(tmp_path, content=text.encode())
    with pytest.raises(CryptoError) as caught:
        load_key_ring(Settings(secret_key=text, secret_key_file=str(path)))
    assert "XAVYO_SIEM_SECRET_KEY and XAVYO_SIEM_SECRET_KEY_FILE are both set" in str(caught.value)
    assert text not in str(caught.value)
