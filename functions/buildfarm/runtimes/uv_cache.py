"""uv's download cache shared through an S3 store by runtime builds: opt-in, off by default
(FarmConfig.runtime_uv_cache: BUILDFARM_RUNTIME_UV_CACHE; the stack's runtimeUvCache, which
also grants the job roles cache/uv/).

Why off: uv checks a distribution's hash when it downloads it, not the files it unpacked into
its cache; `uv pip install --require-hashes` from a cache whose archive-v0/ entry was edited
installs the edited code. A shared archive (layout.uv_cache_key: cache/uv/<platform>-<arch>.tar.gz)
is restored and saved by every runtime job of that platform and arch, which run locked sdists'
build code as root under one job role: one runtime's build code could change what every later
runtime of the platform and arch installs, and the farm would sign it. Enable it only when every
runtime built on the farm is trusted as much as every other. Off, a job of an S3 store starts
with an empty cache and saves nothing.

On: a fresh (empty) cache beside an S3 store is restored from the archive and saved back when
uv added to it. The cache only saves downloads: a missing, unreadable or unsafe archive is
logged and the build goes on with an empty cache; a failed save is logged and the runtime,
already published, stands.

A directory store keeps the cache directory itself (layout.RUNTIME_CACHE_DIR), and a machine's
warm local cache is used as it is and never uploaded (it may hold other platforms' wheels).
That is another trust situation: local runs build as the user who runs them, whose build code
can already write that user's store, cache and signing key, so an edited cache gives it nothing
it did not have; the S3 archive instead carries one cloud job's writes into the next job's build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tarfile
import tempfile
from pathlib import Path

from buildfarm.aws_errors import AwsError
from buildfarm.config import FarmConfig
from buildfarm.layout import uv_cache_key
from buildfarm.store import LocalStore, Store, StoreError, StoreNotFound

log = logging.getLogger(__name__)

# Store.put takes the archive in memory; a cache past this is not saved (the next build
# downloads again: slower, never wrong).
MAX_ARCHIVE_BYTES = 1024**3

Snapshot = dict[str, int]
"""A cache directory's files (relative path -> size; a symlink -> -1): what uv added shows."""


def snapshot(cache: Path) -> Snapshot:
    files: Snapshot = {}
    for directory, _, names in os.walk(cache):
        for name in names:
            path = Path(directory, name)
            files[str(path.relative_to(cache))] = -1 if path.is_symlink() else path.stat().st_size
    return files


def restore(store: Store, platform: str, arch: str, cache: Path) -> bool:
    """Unpack the cell's saved cache into `cache` (an empty or absent directory); False if there
    is none or it cannot be used (then `cache` is left empty)."""
    key = uv_cache_key(platform, arch)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".uv-cache-", dir=cache.parent) as temp:
        unpacked = Path(temp, "uv")
        try:
            stream = store.open_read(key)
            with contextlib.closing(stream), tarfile.open(fileobj=stream, mode="r|gz") as archive:
                # "data": no absolute or escaping paths or links, no devices (the archive is
                # written by a builder; the filter keeps a bad one from writing outside).
                archive.extractall(unpacked, filter="data")
        except StoreNotFound:
            log.info("no uv cache at %s yet: the build downloads its requirements", store.url(key))
            return False
        except Exception as error:  # a cache: whatever broke (a truncated or unsafe archive, a
            # dropped S3 stream), the build goes on without it.
            log.warning("uv cache %s not used: %s", store.url(key), error)
            return False
        if cache.exists():
            cache.rmdir()  # empty (the caller checked): replaced by the unpacked tree
        unpacked.rename(cache)
    log.info("restored the uv cache from %s", store.url(key))
    return True


def save(store: Store, platform: str, arch: str, cache: Path, before: Snapshot) -> bool:
    """Archive `cache` to the cell's key if uv added to it since `before`; False if unchanged,
    too large, or the store refused (logged: the cache is an optimisation)."""
    if snapshot(cache) == before:
        return False
    key = uv_cache_key(platform, arch)
    with tempfile.TemporaryDirectory(prefix=".uv-cache-", dir=cache.parent) as temp:
        archive_path = Path(temp, "uv.tar.gz")
        with tarfile.open(archive_path, "w:gz") as archive:
            archive.add(cache, arcname=".")
        size = archive_path.stat().st_size
        if size > MAX_ARCHIVE_BYTES:
            log.warning("uv cache not saved: %d bytes is over %d", size, MAX_ARCHIVE_BYTES)
            return False
        try:
            store.put(key, archive_path.read_bytes(), content_type="application/gzip")
        except (StoreError, AwsError) as error:  # e.g. AccessDenied: the grant is missing
            log.warning("uv cache not saved to %s: %s", store.url(key), error)
            return False
    log.info("saved the uv cache to %s (%d bytes)", store.url(key), size)
    return True


def shared(store: Store) -> bool:
    """Whether builds share the cache through `store`: an S3 store of a farm that enables it
    (BUILDFARM_RUNTIME_UV_CACHE; see the module docstring for why it is off by default)."""
    if isinstance(store, LocalStore):
        return False
    return FarmConfig.from_env(store=store.location).runtime_uv_cache


def prepare(store: Store, platform: str, arch: str, cache: Path, *, shared: bool) -> Snapshot | None:
    """Make `cache` ready for a build of the cell. When the store shares the cache (shared(),
    an S3 store), a fresh (empty) cache is filled from the store's archive, and its snapshot
    returned for save(). None: the cache is not the store's to fill (not shared: it starts
    empty; a directory store keeps its own; a warm local cache is left alone and never
    uploaded)."""
    fresh = not cache.exists() or not any(cache.iterdir())
    fill = fresh and shared and not isinstance(store, LocalStore)
    if fill:
        restore(store, platform, arch, cache)
    cache.mkdir(parents=True, exist_ok=True)
    return snapshot(cache) if fill else None
