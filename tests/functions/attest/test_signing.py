"""Signing with a key file and with KMS (moto); every signature checked by openssl itself."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto_patches import kms_signs_digests_as_aws
from openssl_check import openssl_verifies

from buildfarm.attest.signing import (
    KeyFileSigner,
    KmsSigner,
    SigningError,
    fingerprint,
    init_key,
    sign_file,
    verify_signature,
)
from buildfarm.errors import UsageError

# Larger than KMS's 4096-byte RAW message limit: the DIGEST path is what makes this work.
DATA = b"".join(b"%064x  python-3.13.5-debian-12-x86_64.tar.gz\n" % n for n in range(100))


def test_init_key_makes_a_private_file_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "config" / "buildfarm" / "signing-key.pem"
    shown = init_key(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    signer = KeyFileSigner(key)
    assert shown == fingerprint(signer.public_key_pem())
    assert shown.startswith("SHA256:") and len(shown) == len("SHA256:") + 64
    before = key.read_bytes()
    with pytest.raises(UsageError, match="already there"):
        init_key(key)
    assert key.read_bytes() == before


def test_init_key_refuses_the_store(tmp_path: Path) -> None:
    store = tmp_path / "dist"
    with pytest.raises(UsageError, match="inside the store"):
        init_key(store / "keys" / "farm.pem", store_root=store)
    assert not store.exists()


def test_fingerprint_is_the_sha256_of_the_der_public_key(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    init_key(key)
    pem = KeyFileSigner(key).public_key_pem()
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem, capture_output=True, check=True
    ).stdout
    assert fingerprint(pem) == "SHA256:" + hashlib.sha256(der).hexdigest()


def test_key_file_signature_verifies_with_openssl_and_here(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    init_key(key)
    signer = KeyFileSigner(key)
    signature = signer.sign(DATA)
    pem = signer.public_key_pem()
    assert openssl_verifies(pem, DATA, signature)
    assert verify_signature(DATA, signature, [pem]) == fingerprint(pem)
    assert not openssl_verifies(pem, DATA + b"x", signature)
    assert verify_signature(DATA + b"x", signature, [pem]) is None
    assert verify_signature(DATA, b"\x30\x00garbage", [pem]) is None


def test_rotation_any_listed_key_verifies(tmp_path: Path) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    init_key(old)
    init_key(new)
    old_signer, new_signer = KeyFileSigner(old), KeyFileSigner(new)
    keys = [new_signer.public_key_pem(), old_signer.public_key_pem()]
    assert verify_signature(DATA, old_signer.sign(DATA), keys) == fingerprint(keys[1])
    assert verify_signature(DATA, new_signer.sign(DATA), keys) == fingerprint(keys[0])
    assert verify_signature(DATA, old_signer.sign(DATA), keys[:1]) is None


def test_sign_file_writes_the_sig_beside_it_once(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    init_key(key)
    signer = KeyFileSigner(key)
    sums = tmp_path / "SHA256SUMS"
    sums.write_bytes(DATA)
    signature_path = sign_file(signer, sums)
    assert signature_path == tmp_path / "SHA256SUMS.sig"
    assert openssl_verifies(signer.public_key_pem(), DATA, signature_path.read_bytes())
    with pytest.raises(FileExistsError):
        sign_file(signer, sums)


def test_bad_key_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="keys init"):
        KeyFileSigner(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a key\n")
    with pytest.raises(SigningError, match=r"junk\.pem"):
        KeyFileSigner(tmp_path / "junk.pem")
    rsa_pub = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
        capture_output=True,
        check=True,
    ).stdout
    (tmp_path / "rsa.pem").write_bytes(rsa_pub)
    with pytest.raises(SigningError, match="not an ECDSA P-256"):
        KeyFileSigner(tmp_path / "rsa.pem")
    with pytest.raises(SigningError, match="not a PEM public key"):
        fingerprint(b"nope")


# -- KMS under moto --------------------------------------------------------------------------


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch):
    """moto's KMS, whose Sign honours MessageType=DIGEST as AWS does
    (moto_patches.kms_signs_digests_as_aws), so the request this code sends (checked below) is
    signed as AWS signs it."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with kms_signs_digests_as_aws(), mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def test_kms_signature_verifies_with_openssl(kms, tmp_path: Path) -> None:
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    sent: list[dict] = []
    kms.meta.events.register("provide-client-params.kms.Sign", lambda params, **_: sent.append(dict(params)))
    signer = KmsSigner(kms, key_id)
    signature = signer.sign(DATA)
    assert sent == [
        {
            "KeyId": key_id,
            "Message": hashlib.sha256(DATA).digest(),
            "MessageType": "DIGEST",
            "SigningAlgorithm": "ECDSA_SHA_256",
        }
    ]
    pem = signer.public_key_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert openssl_verifies(pem, DATA, signature)
    assert verify_signature(DATA, signature, [pem]) == fingerprint(pem)
    # KMS's own Verify agrees (moto's verify hashes the message: give it the data).
    assert kms.verify(KeyId=key_id, Message=DATA, Signature=signature, SigningAlgorithm="ECDSA_SHA_256")[
        "SignatureValid"
    ]


def test_kms_and_key_file_keys_rotate_together(kms, tmp_path: Path) -> None:
    """A store that moved from a key file to KMS keeps both public keys listed."""
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    init_key(tmp_path / "old.pem")
    old, new = KeyFileSigner(tmp_path / "old.pem"), KmsSigner(kms, key_id)
    keys = [new.public_key_pem(), old.public_key_pem()]
    assert verify_signature(DATA, old.sign(DATA), keys) == fingerprint(keys[1])
    assert verify_signature(DATA, new.sign(DATA), keys) == fingerprint(keys[0])


def test_kms_refuses_a_key_of_another_spec(kms) -> None:
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    with pytest.raises(SigningError, match=r"not an ECDSA P-256 public key.*ECC_NIST_P256"):
        KmsSigner(kms, key_id).public_key_pem()
