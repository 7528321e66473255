"""The store root's signed files (COMMON contract):

    versions.json.sig   the catalog's detached signature, rewritten after every versions.json write
    keys/<hex>.pub      each public key (PEM SubjectPublicKeyInfo); hex = its fingerprint
    keys/keys.json      {"schema_version": 1, "current": "SHA256:<hex>",
                         "keys": [{"fingerprint": "SHA256:<hex>", "file": "keys/<hex>.pub"}, ...]}

A key, once listed, stays listed (rotation: old signatures keep verifying). Two publishers may
write versions.json and its signature in crossing order: sign_versions_json signs again until
versions.json did not change meanwhile, and Finalize (ensure_catalog_signed) re-signs a
signature that does not verify, so the last word is always a good signature.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from buildfarm.keys_index import read_keys_index
from buildfarm.layout import KEYS_INDEX_KEY, VERSIONS_KEY, VERSIONS_SIGNATURE_KEY, public_key_key
from buildfarm.store import Store, StoreConflict, StoreError, StoreNotFound

from .build_files import AttestationError, put_create_only
from .signing import Signer, SigningError, fingerprint, verify_signature

log = logging.getLogger(__name__)

MAX_ROUNDS = 20
_published: set[tuple[str, str]] = set()  # (store location, fingerprint) listed by this process
_published_lock = threading.Lock()


def listed_public_keys(store: Store) -> list[bytes]:
    """The PEM of every key keys/keys.json lists, each checked against its fingerprint."""
    try:
        index, _ = read_keys_index(store)
    except StoreError as error:  # a malformed list fails the cell being attested, named
        raise AttestationError(str(error)) from None
    keys = []
    for listed in index.fingerprints():
        try:
            pem, _ = store.read(public_key_key(listed))
            if fingerprint(pem) == listed:
                keys.append(pem)
        except (StoreError, SigningError):
            log.warning("%s: key %s is unreadable or does not match its fingerprint", KEYS_INDEX_KEY, listed)
    return keys


def publish_key(store: Store, signer: Signer) -> str:
    """keys/<hex>.pub of the signer's key and its entry in keys/keys.json as the current key
    (added if absent, none dropped; conditional writes, retried). Returns its fingerprint."""
    pem = signer.public_key_pem()
    key_fingerprint = fingerprint(pem)
    index, etag = read_keys_index(store)
    # Reads only when the key is published and current: Finalize runs this every time.
    if index.with_current(key_fingerprint) != index or not store.exists(public_key_key(key_fingerprint)):
        put_create_only(store, public_key_key(key_fingerprint), pem)
    for _ in range(MAX_ROUNDS):
        updated = index.with_current(key_fingerprint)
        if updated == index:
            break
        data = updated.as_json()
        try:
            if etag is None:
                store.put(KEYS_INDEX_KEY, data, if_none_match=True, content_type="application/json")
            else:
                store.put(KEYS_INDEX_KEY, data, if_match=etag, content_type="application/json")
            break
        except StoreConflict:
            index, etag = read_keys_index(store)  # another publisher listed a key: merge again
    else:
        raise AttestationError(f"{KEYS_INDEX_KEY}: gave up after {MAX_ROUNDS} conflicting writes")
    with _published_lock:
        _published.add((store.location, key_fingerprint))
    return key_fingerprint


def _sign_current_versions(store: Store, signer: Signer) -> bool:
    """Sign versions.json as it is now; True when it did not change meanwhile."""
    try:
        data, etag = store.read(VERSIONS_KEY)
    except StoreNotFound:
        return True
    store.put(VERSIONS_SIGNATURE_KEY, signer.sign(data), content_type="application/octet-stream")
    info = store.head(VERSIONS_KEY)
    return info is not None and info.etag == etag


def sign_versions_json(store: Store, signer: Signer) -> None:
    """versions.json.sig for versions.json as it is now (after a write), signed again while
    versions.json changes under it; the signer's key listed under keys/ (once per process)."""
    with _published_lock:
        listed = (store.location, fingerprint(signer.public_key_pem())) in _published
    if not listed:
        publish_key(store, signer)
    for _ in range(MAX_ROUNDS):
        if _sign_current_versions(store, signer):
            return
    log.warning("versions.json kept changing while it was signed; Finalize signs it again")


def _catalog_signature_holds(store: Store, public_keys: Callable[[], list[bytes]]) -> bool:
    """Whether versions.json.sig verifies versions.json as it is now with one of public_keys()
    (asked only when there is a signature to check); True when there is no versions.json."""
    try:
        data, _ = store.read(VERSIONS_KEY)
    except StoreNotFound:
        return True
    try:
        signature, _ = store.read(VERSIONS_SIGNATURE_KEY)
    except StoreNotFound:
        return False
    return bool(signature) and verify_signature(data, signature, public_keys()) is not None


def catalog_signed_by(store: Store, signer: Signer) -> bool:
    """Whether versions.json.sig is the signer's signature of versions.json as it is now (True
    when there is no versions.json): two reads, and no key list read."""
    return _catalog_signature_holds(store, lambda: [signer.public_key_pem()])


def ensure_catalog_signed(store: Store, signer: Signer) -> list[str]:
    """Finalize's check: the signer's key is listed, and versions.json.sig verifies with a
    listed key (signed again if not: two publishers' writes crossed). Returns the keys written."""
    publish_key(store, signer)
    if _catalog_signature_holds(store, lambda: listed_public_keys(store)):
        return []
    sign_versions_json(store, signer)
    return [VERSIONS_SIGNATURE_KEY]
