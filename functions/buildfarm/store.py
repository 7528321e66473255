"""The store: S3 (s3://bucket/prefix) or a local directory, with the same layout and semantics.

Keys are '/'-separated paths relative to the store root ("versions.json",
"builds/3.13.5/debian-12/x86_64/1/manifest.json"). ETags are opaque strings
(unquoted). Conditional writes:

- put(key, data, if_none_match=True): create-only; StoreConflict if the key exists.
- put(key, data, if_match=etag): update only if the object still has that ETag;
  StoreConflict if it changed or is gone.

S3 uses PutObject's If-None-Match/If-Match (atomic on S3). The directory store writes a
temp file in the target directory and os.replace()s it (readers never see half a file);
conditional writes hold an flock on the key's lock file, which excludes other threads and
other processes alike (flock locks belong to the open file description).
"""

from __future__ import annotations

import abc
import base64
import collections
import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import quote

CHUNK = 1024 * 1024
SINGLE_PUT_LIMIT = 5 * 1024**3
LOCK_DIR = ".locks"  # directory store: lock files for conditional writes, never listed
LOCK_STRIPES = 64
_TEMP_PREFIX = ".tmp-"
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9._+@=,-]+")  # fullmatch: no trailing newline
_BUILD_NUMBER = re.compile(r"[1-9][0-9]{0,8}")  # as artifact_dir writes it: no sign, no leading 0


class StoreError(Exception):
    """The store failed or was used wrongly (bad key, bad location)."""


class StoreNotFound(StoreError, KeyError):
    """No object under that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


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


def check_key(key: str) -> str:
    """A relative store key of safe segments; anything else raises StoreError naming it."""
    if not isinstance(key, str) or not key or key.startswith("/") or key.endswith("/"):
        raise StoreError(f"invalid store key {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _KEY_SEGMENT.fullmatch(segment):
            raise StoreError(f"invalid store key {key!r} (bad segment {segment!r})")
    return key


def _check_prefix(prefix: str) -> str:
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

    @abc.abstractmethod
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

    @abc.abstractmethod
    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> str:
        """Upload a (possibly large) local file; return its ETag."""

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
        for top in ("builds", "logs"):
            for name in self.list_children(f"{top}/{version}/{platform}/{arch}"):
                if _BUILD_NUMBER.fullmatch(name):
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


class LocalStore(Store):
    """A directory laid out exactly like the bucket."""

    def __init__(self, directory: Path | str) -> None:
        super().__init__()
        self.root = Path(directory).expanduser().resolve()
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        lock_dir = self.root / LOCK_DIR
        lock_dir.mkdir(parents=True, exist_ok=True)
        # A fixed set of striped lock files (not one per key): keys hash onto LOCK_STRIPES files.
        stripe = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % LOCK_STRIPES
        name = f"{stripe:02d}.lock"
        with open(lock_dir / name, "a+b") as handle:
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
        _check_prefix(prefix)
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
            entries = list(os.scandir(self._path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return set()
        hidden = (LOCK_DIR, _TEMP_PREFIX)
        return {entry.name for entry in entries if not entry.name.startswith(hidden)}

    def read(self, key: str) -> tuple[bytes, str]:
        self._count("read")
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StoreNotFound(f"{self.url(key)} not found") from None
        return data, self._etag_of(data)

    def head(self, key: str) -> ObjectInfo | None:
        self._count("head")
        path = self._path(key)
        if not path.is_file():
            return None
        return ObjectInfo(key, path.stat().st_size, self._file_etag(path))

    def exists(self, key: str) -> bool:
        self._count("head")
        return self._path(key).is_file()

    def open_read(self, key: str) -> BinaryIO:
        self._count("read")
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StoreNotFound(f"{self.url(key)} not found") from None

    def _write_atomically(self, path: Path, writer: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str | None = None,
    ) -> str:
        self._count("put")
        path = self._path(key)
        if if_match is None and not if_none_match:
            self._write_atomically(path, lambda handle: handle.write(data))
            return self._etag_of(data)
        with self._key_lock(key):
            if if_none_match and path.exists():
                raise StoreConflict(key, "already exists")
            if if_match is not None:
                if not path.is_file():
                    raise StoreConflict(key, "no longer exists")
                if self._file_etag(path) != if_match:
                    raise StoreConflict(key, "changed since it was read")
            self._write_atomically(path, lambda handle: handle.write(data))
        return self._etag_of(data)

    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> str:
        self._count("put")
        source = Path(path)
        digest = hashlib.md5(usedforsecurity=False)

        def copy(handle: BinaryIO) -> None:
            with open(source, "rb") as reader:
                while chunk := reader.read(CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)

        self._write_atomically(self._path(key), copy)
        return digest.hexdigest()

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self._count("delete")
        path = self._path(key)
        if if_match is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        with self._key_lock(key):
            if not path.is_file():
                raise StoreConflict(key, "no longer exists")
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


class S3Store(Store):
    """s3://bucket/prefix through boto3 (client created lazily; thread-safe)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        super().__init__()
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket or ""):
            raise StoreError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client(
                        "s3",
                        config=Config(
                            retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64
                        ),
                    )
        return self._client

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    @staticmethod
    def _code(error: Exception) -> str:
        return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))

    @staticmethod
    def _etag(response: dict[str, Any]) -> str:
        return str(response.get("ETag", "")).strip('"')

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            self._count("list")
            for obj in page.get("Contents", []):
                yield ObjectInfo(self._relative(obj["Key"]), int(obj["Size"]), str(obj["ETag"]).strip('"'))

    def list_children(self, prefix: str) -> set[str]:
        folder = self._full(prefix) + "/"
        names: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/"):
            self._count("list")
            for common in page.get("CommonPrefixes", []):
                names.add(common["Prefix"][len(folder) :].rstrip("/"))
            for obj in page.get("Contents", []):
                names.add(obj["Key"][len(folder) :])
        return names

    def read(self, key: str) -> tuple[bytes, str]:
        self._count("read")
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as error:
            if self._code(error) in ("NoSuchKey", "404", "NotFound"):
                raise StoreNotFound(f"{self.url(key)} not found") from None
            raise
        with contextlib.closing(response["Body"]) as body:
            return body.read(), self._etag(response)

    def open_read(self, key: str) -> BinaryIO:
        self._count("read")
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as error:
            if self._code(error) in ("NoSuchKey", "404", "NotFound"):
                raise StoreNotFound(f"{self.url(key)} not found") from None
            raise
        return response["Body"]

    def head(self, key: str) -> ObjectInfo | None:
        self._count("head")
        from botocore.exceptions import ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as error:
            if self._code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return ObjectInfo(key, int(response["ContentLength"]), self._etag(response))

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str | None = None,
    ) -> str:
        self._count("put")
        from botocore.exceptions import ClientError

        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._full(key),
            "Body": data,
            "ChecksumAlgorithm": "SHA256",
        }
        if content_type:
            params["ContentType"] = content_type
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if if_match is not None:
            params["IfMatch"] = f'"{if_match}"'
        try:
            response = self.client.put_object(**params)
        except ClientError as error:
            code = self._code(error)
            # 412 PreconditionFailed: condition false. 409 ConditionalRequestConflict: a
            # concurrent conditional write won. 404 NoSuchKey: If-Match on a deleted object.
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise StoreConflict(
                    key, "already exists" if if_none_match else "changed since it was read"
                ) from None
            if if_match is not None and code in ("NoSuchKey", "404"):
                raise StoreConflict(key, "no longer exists") from None
            raise
        return self._etag(response)

    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> str:
        """One PutObject (up to S3's 5 GB single-PUT limit) with a SHA-256 checksum, so S3 keeps
        the full-object SHA-256 and the publisher can verify without downloading the file."""
        self._count("put")
        from boto3.s3.transfer import TransferConfig

        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
        if content_type:
            extra["ContentType"] = content_type
        single_put = TransferConfig(multipart_threshold=SINGLE_PUT_LIMIT, max_concurrency=4)
        self.client.upload_file(str(path), self.bucket, self._full(key), ExtraArgs=extra, Config=single_put)
        info = self.head(key)
        return info.etag if info else ""

    def stored_sha256(self, key: str) -> tuple[str, int] | None:
        self._count("head")
        from botocore.exceptions import ClientError

        try:
            response = self.client.head_object(
                Bucket=self.bucket, Key=self._full(key), ChecksumMode="ENABLED"
            )
        except ClientError as error:
            if self._code(error) in ("NoSuchKey", "404", "NotFound"):
                raise StoreNotFound(f"{self.url(key)} not found") from None
            raise
        checksum = response.get("ChecksumSHA256")
        # Multipart uploads carry a checksum of part checksums ("...-N", COMPOSITE): not usable.
        if not checksum or "-" in checksum or response.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None
        return base64.b64decode(checksum).hex(), int(response["ContentLength"])

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self._count("delete")
        from botocore.exceptions import ClientError

        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full(key)}
        if if_match is not None:
            params["IfMatch"] = f'"{if_match}"'
        try:
            self.client.delete_object(**params)
        except ClientError as error:
            code = self._code(error)
            if code in ("PreconditionFailed", "412"):
                raise StoreConflict(key, "changed since it was read") from None
            if code in ("NoSuchKey", "404"):
                if if_match is not None:
                    raise StoreConflict(key, "no longer exists") from None
                return
            raise

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def default_public_url(self, key: str) -> str:
        return f"https://{self.bucket}.s3.amazonaws.com/{quote(self._full(key))}"

    def location_of(self, key: str) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self._full(key)}

    def key_from_location(self, location: dict[str, str]) -> str:
        bucket, full_key = location.get("bucket", ""), location.get("key", "")
        if bucket != self.bucket:
            raise StoreError(f"location {location!r} is not in bucket {self.bucket!r}")
        if self.prefix:
            if not full_key.startswith(self.prefix + "/"):
                raise StoreError(f"location {location!r} is outside the store prefix {self.prefix!r}")
            full_key = full_key[len(self.prefix) + 1 :]
        return check_key(full_key)


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
