"""The store: S3 (s3://bucket/prefix) or a local directory, with the same layout and semantics.

- base.py: the contract, Store, and its errors. Keys are '/'-separated paths relative to the
  store root, named by buildfarm.layout; ETags are opaque strings (unquoted). Conditional
  writes: put(key, data, if_none_match=True) is create-only (StoreConflict if the key exists);
  put(key, data, if_match=etag) updates only if the object still has that ETag (StoreConflict
  if it changed or is gone).
- local.py: LocalStore, a directory (atomic replace; flock for conditional writes).
- s3.py: S3Store (PutObject's If-None-Match/If-Match, atomic on S3).

open_store() picks the backend from a location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The contract's names (base.__all__) are the package's: `from buildfarm.store import Store`.
from buildfarm.store import base
from buildfarm.store.base import *  # noqa: F403
from buildfarm.store.base import Store, StoreError
from buildfarm.store.local import LocalStore
from buildfarm.store.s3 import S3Store

__all__ = [*base.__all__, "LocalStore", "S3Store", "open_store"]


def open_store(spec: str | Path, s3_client: Any = None) -> Store:
    """'s3://bucket/prefix' -> S3Store; anything else is a directory -> LocalStore."""
    text = str(spec).strip()
    if not text:
        raise StoreError("empty store location")
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        try:
            return S3Store(bucket, prefix, client=s3_client)
        except StoreError as error:
            raise StoreError(f"invalid store location {text!r}: {error}") from None
    if "://" in text:
        if text.startswith("file://"):
            return LocalStore(text[len("file://") :])
        raise StoreError(f"unsupported store location {text!r} (use a directory or s3://bucket/prefix)")
    return LocalStore(text)
