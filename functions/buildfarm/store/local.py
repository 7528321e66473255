"""The directory store: a directory laid out exactly like the bucket (Store's contract).

Writes go to a temp file in the target directory and are os.replace()d into place (readers
never see half a file); conditional writes hold an flock on the key's lock file, which excludes
other threads and other processes alike (flock locks belong to the open file description).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from buildfarm.layout import LOCAL_TEMP_PREFIX
from buildfarm.store.base import (
    CHUNK,
    ObjectInfo,
    Store,
    StoreConflict,
    StoreError,
    StoreIOError,
    StoreNotFound,
    Write,
    check_key,
    check_prefix,
)

LOCK_DIR = ".locks"  # lock files for conditional writes, never listed
LOCK_STRIPES = 64
_TEMP_PREFIX = LOCAL_TEMP_PREFIX


@contextlib.contextmanager
def _io(doing: str, key: str) -> Iterator[None]:
    """An OSError of the storage (disk full, read-only, permission) as one StoreIOError line
    naming what was being done: "No space left on device (writing versions.json)"."""
    try:
        yield
    except OSError as error:
        raise StoreIOError(f"{error.strerror or error} ({doing} {key or '/'})") from error


class LocalStore(Store):
    """A directory laid out exactly like the bucket."""

    def __init__(self, directory: Path | str) -> None:
        super().__init__()
        self.root = Path(directory).expanduser().resolve()
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def create(self) -> None:
        """Make the store's directory (and its parents) if missing; StoreIOError if it cannot be."""
        with _io("creating", "the directory"):
            self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        lock_dir = self.root / LOCK_DIR
        # A fixed set of striped lock files (not one per key): keys hash onto LOCK_STRIPES files.
        stripe = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % LOCK_STRIPES
        with _io("locking", key):
            lock_dir.mkdir(parents=True, exist_ok=True)
            handle = open(lock_dir / f"{stripe:02d}.lock", "a+b")  # noqa: SIM115 - closed below
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _etag_of(data: bytes) -> str:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def _file_etag(self, path: Path) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._count("list")
        check_prefix(prefix)
        # Walk only the directory that can contain the prefix.
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root.joinpath(*base_key.split("/")) if base_key else self.root
        if not base.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if rel_dir == ".":
                rel_dir = ""
                dirnames[:] = [d for d in dirnames if d != LOCK_DIR]
            for name in filenames:
                if name.startswith(_TEMP_PREFIX):
                    continue
                key = f"{rel_dir}/{name}" if rel_dir else name
                if key.startswith(prefix):
                    found.append(key)
        for key in sorted(found):
            path = self._path(key)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            # ETag is left empty in listings (computing it would read every file).
            yield ObjectInfo(key, size, "")

    def list_children(self, prefix: str) -> set[str]:
        self._count("list")
        try:
            with _io("listing", prefix):
                entries = list(os.scandir(self._path(prefix)))
        except StoreIOError as error:
            if isinstance(error.__cause__, FileNotFoundError | NotADirectoryError):
                return set()
            raise
        hidden = (LOCK_DIR, _TEMP_PREFIX)
        return {entry.name for entry in entries if not entry.name.startswith(hidden)}

    def read(self, key: str) -> tuple[bytes, str]:
        self._count("read")
        try:
            with _io("reading", key):
                data = self._path(key).read_bytes()
        except StoreIOError as error:
            if isinstance(error.__cause__, FileNotFoundError | IsADirectoryError | NotADirectoryError):
                raise StoreNotFound(f"{self.url(key)} not found") from None
            raise
        return data, self._etag_of(data)

    def head(self, key: str) -> ObjectInfo | None:
        self._count("head")
        path = self._path(key)
        if not path.is_file():
            return None
        with _io("reading", key):
            return ObjectInfo(key, path.stat().st_size, self._file_etag(path))

    def exists(self, key: str) -> bool:
        self._count("head")
        return self._path(key).is_file()

    def open_read(self, key: str) -> BinaryIO:
        self._count("read")
        try:
            with _io("reading", key):
                return open(self._path(key), "rb")
        except StoreIOError as error:
            if isinstance(error.__cause__, FileNotFoundError | IsADirectoryError | NotADirectoryError):
                raise StoreNotFound(f"{self.url(key)} not found") from None
            raise

    def _write_atomically(self, key: str, data: bytes) -> None:
        """Write to a temp file beside the target, then rename it into place: readers never see
        half a file, and a failed write (disk full, interrupted) leaves no temp file behind."""
        path = self._path(key)
        with _io("writing", key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temp, 0o644)
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise

    def _put(self, key: str, data: bytes, write: Write) -> str:
        path = self._path(key)
        if write.if_match is None and not write.if_none_match:
            self._write_atomically(key, data)
            return self._etag_of(data)
        with self._key_lock(key):
            if write.if_none_match and path.exists():
                raise StoreConflict(key, "already exists")
            if write.if_match is not None:
                if not path.is_file():
                    raise StoreConflict(key, "no longer exists")
                with _io("reading", key):
                    current = self._file_etag(path)
                if current != write.if_match:
                    raise StoreConflict(key, "changed since it was read")
            self._write_atomically(key, data)
        return self._etag_of(data)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self._count("delete")
        path = self._path(key)
        if if_match is None:
            with _io("deleting", key), contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        with self._key_lock(key):
            if not path.is_file():
                raise StoreConflict(key, "no longer exists")
            with _io("deleting", key):
                if self._file_etag(path) != if_match:
                    raise StoreConflict(key, "changed since it was read")
                path.unlink()

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def default_public_url(self, key: str) -> str:
        return self.url(key)

    def location_of(self, key: str) -> dict[str, str]:
        return {"bucket": "", "key": check_key(key)}

    def key_from_location(self, location: dict[str, str]) -> str:
        if location.get("bucket", ""):
            raise StoreError(
                f"location {location!r} is in a bucket, not in the directory store {self.location}"
            )
        return check_key(location.get("key", ""))
