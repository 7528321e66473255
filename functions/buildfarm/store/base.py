"""The store's contract: one small interface (Store) over S3 and a directory, the same layout
and semantics from both backends (buildfarm.store.local, buildfarm.store.s3).

Keys are '/'-separated paths relative to the store root ("versions.json",
"builds/3.13.5/debian-12/x86_64/1/manifest.json"; buildfarm.layout names them all). ETags are
opaque strings (unquoted). Conditional writes:

- put(key, data, if_none_match=True): create-only; StoreConflict if the key exists.
- put(key, data, if_match=etag): update only if the object still has that ETag;
  StoreConflict if it changed or is gone.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from buildfarm.layout import BUILD_NUMBER, cell_build_dirs

__all__ = [
    "CHUNK",
    "ObjectInfo",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreIOError",
    "StoreNotFound",
    "Write",
    "check_key",
    "check_prefix",
]

CHUNK = 1024 * 1024
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9._+@=,-]+")  # fullmatch: no trailing newline


class StoreError(Exception):
    """The store failed or was used wrongly (bad key, bad location)."""


class StoreNotFound(StoreError, KeyError):
    """No object under that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class StoreIOError(StoreError):
    """The storage under the store failed: a full disk, a read-only or unreadable directory.
    The message is the system's reason and what was being done: "No space left on device
    (writing builds/...)"."""


class StoreConflict(StoreError):
    """A conditional write lost: the object exists (create-only) or changed (If-Match)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"conflict writing {key!r}: {reason}")
        self.key = key
        self.reason = reason


class ObjectInfo(NamedTuple):
    key: str
    size: int
    etag: str


class Write(NamedTuple):
    """How Store.put writes an object: its conditions and its content type (put's arguments,
    handed to the backend's _put as one value)."""

    if_match: str | None  # update only if the object still has this ETag
    if_none_match: bool  # create-only
    content_type: str | None


def check_key(key: str) -> str:
    """A relative store key of safe segments; anything else raises StoreError naming it."""
    if not isinstance(key, str) or not key or key.startswith("/") or key.endswith("/"):
        raise StoreError(f"invalid store key {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _KEY_SEGMENT.fullmatch(segment):
            raise StoreError(f"invalid store key {key!r} (bad segment {segment!r})")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: "" (everything), a key, or a key followed by '/'."""
    if prefix == "":
        return prefix
    if prefix.endswith("/"):
        check_key(prefix.rstrip("/"))
    else:
        check_key(prefix)
    return prefix


class Store(abc.ABC):
    """One small interface over S3 and a directory. `calls` counts operations by name."""

    location: str  # "s3://bucket/prefix" or an absolute directory path

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._calls_lock = threading.Lock()

    def _count(self, operation: str) -> None:
        with self._calls_lock:
            self.calls[operation] += 1

    # -- primitives ---------------------------------------------------------------------
    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix (paginated underneath), sorted by key."""

    @abc.abstractmethod
    def list_children(self, prefix: str) -> set[str]:
        """Names of what lies directly under the folder `prefix` (sub-folders and objects, one
        level, like `ls`): one delimited listing, not a walk of everything below."""

    @abc.abstractmethod
    def read(self, key: str) -> tuple[bytes, str]:
        """(content, etag); StoreNotFound if absent."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size and ETag of an object, or None if absent."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str | None = None,
    ) -> str:
        """Write an object (atomically); return its new ETag. StoreConflict if a condition fails."""
        self._count("put")
        return self._put(key, data, Write(if_match, if_none_match, content_type))

    @abc.abstractmethod
    def _put(self, key: str, data: bytes, write: Write) -> str:
        """The backend's put: write `data` atomically under `write`'s conditions; its new ETag."""

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A binary stream of the object (for hashing big artifacts); StoreNotFound if absent."""

    @abc.abstractmethod
    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete an object (absent is fine unless if_match is given)."""

    @abc.abstractmethod
    def url(self, key: str) -> str:
        """Where the object lives: s3://bucket/prefix/key or file:///abs/path."""

    @abc.abstractmethod
    def location_of(self, key: str) -> dict[str, str]:
        """{"bucket", "key"} as the Step Functions ItemReader needs it (bucket "" locally)."""

    @abc.abstractmethod
    def key_from_location(self, location: dict[str, str]) -> str:
        """Inverse of location_of; StoreError if it does not point into this store."""

    @abc.abstractmethod
    def default_public_url(self, key: str) -> str:
        """An absolute URL for the object when no public base URL is configured."""

    # -- conveniences -------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def read_json(self, key: str) -> tuple[Any, str]:
        data, etag = self.read(key)
        try:
            return json.loads(data), etag
        except ValueError as error:
            raise StoreError(f"{self.url(key)} is not valid JSON: {error}") from None

    def build_numbers(self, version: str, platform: str, arch: str) -> set[int]:
        """Every build number of a cell that left anything in the store, under builds/ (made,
        published or not) or logs/ (failed): a new build must be numbered past all of them."""
        numbers: set[int] = set()
        for folder in cell_build_dirs(version, platform, arch):
            for name in self.list_children(folder):
                if BUILD_NUMBER.fullmatch(name):
                    numbers.add(int(name))
        return numbers

    def put_json(self, key: str, value: Any, **conditions: Any) -> str:
        # Compact: json's C encoder only runs without indent. versions.json is rewritten by
        # every PublishCell; indented, encoding a 2,000-cell catalog took ~20x longer.
        data = json.dumps(value, separators=(",", ":")).encode() + b"\n"
        return self.put(key, data, content_type="application/json", **conditions)

    def sha256_and_size(self, key: str) -> tuple[str, int]:
        """Stream the object once: (sha256 hex, size). StoreNotFound if absent."""
        digest = hashlib.sha256()
        size = 0
        with contextlib.closing(self.open_read(key)) as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def stored_sha256(self, key: str) -> tuple[str, int] | None:
        """(sha256 hex, size) if the store already knows the object's full SHA-256 (S3 keeps the
        checksum it verified at upload); None if it has to be computed by reading the object."""
        return None

    def verify_sha256_and_size(self, key: str) -> tuple[str, int]:
        """The object's (sha256, size): the store's own checksum if it has one, else streamed."""
        return self.stored_sha256(key) or self.sha256_and_size(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"
