"""keys/keys.json, the store's list of signing keys (the signing contract, issue 15):

    {"schema_version": 1, "current": "SHA256:<hex>",
     "keys": [{"fingerprint": "SHA256:<hex>", "file": "keys/<hex>.pub"}, ...]}

One model and one reader for everything that reads it: the publish side (attest.store_keys,
which writes it), install.sh's baked keys, `buildfarm status` and the status page. A key, once
listed, stays listed: signatures made with a rotated-out key keep verifying."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from buildfarm.digests import SHA256_HEX
from buildfarm.errors import first_error
from buildfarm.layout import KEYS_INDEX_KEY, public_key_key
from buildfarm.store import Store, StoreError, StoreNotFound

SCHEMA_VERSION = 1
FINGERPRINT_PATTERN = f"^SHA256:{SHA256_HEX}$"  # pydantic's (Rust) regex: $ is the very end


class ListedKey(BaseModel):
    model_config = ConfigDict(extra="ignore")
    fingerprint: str = Field(pattern=FINGERPRINT_PATTERN)
    file: str = ""


class KeysIndex(BaseModel):
    model_config = ConfigDict(extra="ignore")
    schema_version: int = SCHEMA_VERSION
    current: str | None = Field(pattern=FINGERPRINT_PATTERN)  # required: None only when no keys
    keys: list[ListedKey] = []

    def fingerprints(self) -> list[str]:
        """Every listed key, the current one first (the others verify older signatures)."""
        listed = dict.fromkeys(key.fingerprint for key in self.keys)
        first = [self.current] if self.current else []
        return first + [name for name in listed if name != self.current]

    def with_current(self, key_fingerprint: str) -> KeysIndex:
        """This list with key_fingerprint added (if absent) and made current; none dropped."""
        keys = list(self.keys)
        if all(key.fingerprint != key_fingerprint for key in keys):
            keys.append(ListedKey(fingerprint=key_fingerprint, file=public_key_key(key_fingerprint)))
        return KeysIndex(schema_version=SCHEMA_VERSION, current=key_fingerprint, keys=keys)

    def as_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode() + b"\n"


def read_keys_index(store: Store) -> tuple[KeysIndex, str | None]:
    """(keys/keys.json, its etag); an empty list and None when the store has none (unsigned).
    StoreError naming the file and the problem when it is not a key list."""
    try:
        document, etag = store.read_json(KEYS_INDEX_KEY)
    except StoreNotFound:
        return KeysIndex(current=None, keys=[]), None
    try:
        return KeysIndex.model_validate(document), etag
    except ValidationError as error:
        raise StoreError(
            f"{store.url(KEYS_INDEX_KEY)}: {first_error(error, sep='/', whole='the document')}"
        ) from None
