"""Detached ECDSA P-256 signatures over SHA-256 that stock tools verify:

    openssl dgst -sha256 -verify farm.pub -signature SHA256SUMS.sig SHA256SUMS

A signature is DER (ASN.1 SEQUENCE of r, s), as openssl writes and reads it; a public key is a
PEM SubjectPublicKeyInfo. Two signers: a local key file (`buildfarm keys init`) and an AWS KMS
asymmetric key (ECC_NIST_P256, SIGN_VERIFY), which signs the SHA-256 digest (MessageType
DIGEST), so KMS never sees the file and its 4 KiB message limit does not apply.

A key is named by its fingerprint: the SHA-256 of its DER SubjectPublicKeyInfo, shown as
"SHA256:<hex>". Rotation: verify_signature accepts any of several public keys, so signatures
made with an older key stay verifiable while its public key is listed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from buildfarm.errors import BuildfarmError, UsageError
from buildfarm.layout import SIGNATURE_SUFFIX

FINGERPRINT_PREFIX = "SHA256:"
KMS_SIGNING_ALGORITHM = "ECDSA_SHA_256"
KMS_KEY_SPEC = "ECC_NIST_P256"


class SigningError(BuildfarmError):
    """A key that cannot be read, made or used."""


class Signer(Protocol):
    """Whatever signs for the farm: sign(data) -> DER ECDSA signature over SHA-256(data)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key_pem(self) -> bytes: ...


def fingerprint(public_key_pem: bytes) -> str:
    """The key's name: "SHA256:" + hex SHA-256 of its DER SubjectPublicKeyInfo."""
    der = load_public_key(public_key_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def load_public_key(public_key_pem: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from PEM SubjectPublicKeyInfo; SigningError for anything else."""
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except ValueError as error:
        raise SigningError(f"not a PEM public key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningError("not an ECDSA P-256 public key")
    return key


def verify_signature(data: bytes, signature: bytes, public_keys: Iterable[bytes]) -> str | None:
    """The fingerprint of the first of public_keys (PEM) whose key made signature over data,
    or None when none did (a malformed signature is not made by any key)."""
    for pem in public_keys:
        key = load_public_key(pem)
        try:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            continue
        return fingerprint(pem)
    return None


# -- a local key file ------------------------------------------------------------------------


def key_path_problem(path: Path) -> str | None:
    """Why no key file can be made at path (None: nothing in the way), said before anything is
    created: the mkdir and exclusive open of init_key would report a file or directory in the
    way as "File exists". Also for a key path that exists as a directory, which is no key."""
    if path.is_dir():
        return f"{path}: a directory, not a key file (name a file in it)"
    blocker = next((parent for parent in path.parents if parent.exists() or parent.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        return f"{path}: cannot create it: {blocker} is not a directory"
    return None


def init_key(path: Path, *, store_root: Path | None = None) -> str:
    """Create a new P-256 private key at path (PEM PKCS#8, mode 0600, directories 0700 as
    needed) and return its fingerprint. Refuses to overwrite a file, and to write inside the
    store (whatever is in the store may be served); UsageError or SigningError (one line naming
    path) when the file cannot be made, for `keys init` and `run`'s automatic key alike."""
    path = path.expanduser()
    if store_root is not None and path.resolve().is_relative_to(store_root.resolve()):
        raise UsageError(f"{path}: inside the store {store_root}; keep the signing key outside it")
    if problem := key_path_problem(path):
        raise UsageError(problem)
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        _create_private(path, pem)
    except FileExistsError:
        raise UsageError(f"{path}: a key is already there (not overwritten)") from None
    except OSError as error:  # no permission, a read-only or full disk, ...
        raise SigningError(f"{path}: cannot create the key file: {error.strerror or error}") from None
    return fingerprint(public_key_pem_of(private_key))


def _create_private(path: Path, data: bytes) -> None:
    """A new file at path holding data, mode 0600 (its new directories 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_EXCL: never replace a key (its signatures would stop verifying with the old .pub).
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def public_key_pem_of(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class KeyFileSigner:
    """Signs with the P-256 private key in a PEM file (made by init_key)."""

    def __init__(self, path: Path) -> None:
        path = path.expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{path}: no signing key there (create one: buildfarm keys init)") from None
        except OSError as error:
            raise SigningError(f"{path}: cannot read the signing key: {error.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise SigningError(f"{path}: not an unencrypted PEM private key: {error}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise SigningError(f"{path}: not an ECDSA P-256 private key")
        self.path = path
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key_pem(self) -> bytes:
        return public_key_pem_of(self._key)


# -- AWS KMS ---------------------------------------------------------------------------------


class KmsSigner:
    """Signs with an AWS KMS key (KeySpec ECC_NIST_P256, KeyUsage SIGN_VERIFY): the private key
    never leaves KMS; the caller needs kms:Sign (and kms:GetPublicKey for the public key)."""

    def __init__(self, kms_client: Any, key_id: str) -> None:
        self._kms = kms_client
        self.key_id = key_id
        self._public_key_pem: bytes | None = None

    def sign(self, data: bytes) -> bytes:
        response = self._kms.sign(
            KeyId=self.key_id,
            Message=hashlib.sha256(data).digest(),
            MessageType="DIGEST",
            SigningAlgorithm=KMS_SIGNING_ALGORITHM,
        )
        return bytes(response["Signature"])

    def public_key_pem(self) -> bytes:
        if self._public_key_pem is None:  # one GetPublicKey per signer, however often asked
            self._public_key_pem = self._fetch_public_key()
        return self._public_key_pem

    def _fetch_public_key(self) -> bytes:
        response = self._kms.get_public_key(KeyId=self.key_id)
        key = serialization.load_der_public_key(bytes(response["PublicKey"]))
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        try:
            load_public_key(pem)
        except SigningError as error:
            hint = f"create it with KeySpec {KMS_KEY_SPEC}"
            raise SigningError(f"KMS key {self.key_id}: {error} ({hint})") from None
        return pem


def sign_file(signer: Signer, path: Path) -> Path:
    """Write the detached signature of a file beside it (<file>.sig, DER); never replaces one."""
    signature_path = path.with_name(path.name + SIGNATURE_SUFFIX)
    signature = signer.sign(path.read_bytes())
    with signature_path.open("xb") as handle:
        handle.write(signature)
    return signature_path
