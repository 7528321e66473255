"""The S3 store: s3://bucket/prefix through boto3 (Store's contract).

Conditional writes use PutObject's If-None-Match/If-Match, atomic on S3. Every put carries a
SHA-256 checksum, so S3 keeps each object's full SHA-256 and the publisher verifies an artifact
without downloading it (stored_sha256).
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

from buildfarm.aws_errors import aws_errors
from buildfarm.layout import BUCKET_NAME
from buildfarm.store.base import (
    ObjectInfo,
    Store,
    StoreConflict,
    StoreError,
    StoreNotFound,
    Write,
    check_key,
    check_prefix,
)

NOT_FOUND = ("NoSuchKey", "404", "NotFound")  # error codes of an absent object
# What a user changes when the store's bucket does not exist.
BUCKET_HINT = "check the bucket of the store (--store s3://BUCKET/PREFIX, or BUILDFARM_STORE)"


class S3Store(Store):
    """s3://bucket/prefix through boto3 (client created lazily; thread-safe)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        super().__init__()
        if not BUCKET_NAME.fullmatch(bucket or ""):
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

                    retries: dict[str, Any] = {"mode": "standard"}
                    if "AWS_MAX_ATTEMPTS" not in os.environ:  # the user's setting wins
                        retries["max_attempts"] = 5
                    self._client = boto3.client("s3", config=Config(retries=retries, max_pool_connections=64))
        return self._client

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def _aws(self, key: str = "") -> contextlib.AbstractContextManager[None]:
        """AWS failures (credentials, region, endpoint, permissions, bucket) as one AwsError
        naming the object; ClientErrors handled inside (absent object, lost condition) are not."""
        where = "/".join(part for part in (self.prefix, key) if part)
        return aws_errors(f"s3://{self.bucket}/{where}", hint=BUCKET_HINT)

    @staticmethod
    def _code(error: Exception) -> str:
        return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))

    @staticmethod
    def _etag(response: dict[str, Any]) -> str:
        return str(response.get("ETag", "")).strip('"')

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        with self._aws(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                self._count("list")
                for obj in page.get("Contents", []):
                    key, etag = self._relative(obj["Key"]), str(obj["ETag"]).strip('"')
                    yield ObjectInfo(key, int(obj["Size"]), etag)

    def list_children(self, prefix: str) -> set[str]:
        folder = self._full(prefix) + "/"
        names: set[str] = set()
        with self._aws(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/"):
                self._count("list")
                for common in page.get("CommonPrefixes", []):
                    names.add(common["Prefix"][len(folder) :].rstrip("/"))
                for obj in page.get("Contents", []):
                    names.add(obj["Key"][len(folder) :])
        return names

    def _get_object(self, key: str) -> dict[str, Any]:
        """GetObject's response (its Body still unread); StoreNotFound if absent."""
        self._count("read")
        from botocore.exceptions import ClientError

        with self._aws(key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            except ClientError as error:
                if self._code(error) in NOT_FOUND:
                    raise StoreNotFound(f"{self.url(key)} not found") from None
                raise

    def read(self, key: str) -> tuple[bytes, str]:
        response = self._get_object(key)
        with self._aws(key), contextlib.closing(response["Body"]) as body:
            return body.read(), self._etag(response)

    def open_read(self, key: str) -> BinaryIO:
        return self._get_object(key)["Body"]

    def head(self, key: str) -> ObjectInfo | None:
        self._count("head")
        from botocore.exceptions import ClientError

        with self._aws(key):
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            except ClientError as error:
                if self._code(error) in NOT_FOUND:
                    return None
                raise
        return ObjectInfo(key, int(response["ContentLength"]), self._etag(response))

    def _put(self, key: str, data: bytes, write: Write) -> str:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._full(key),
            "Body": data,
            "ChecksumAlgorithm": "SHA256",
        }
        if write.content_type:
            params["ContentType"] = write.content_type
        if write.if_none_match:
            params["IfNoneMatch"] = "*"
        if write.if_match is not None:
            params["IfMatch"] = f'"{write.if_match}"'
        with self._aws(key):
            return self._etag(self._conditional(key, "put_object", params, creating=write.if_none_match))

    def _conditional(self, key: str, operation: str, params: dict[str, Any], *, creating: bool) -> Any:
        """Call put_object/delete_object; a lost condition becomes StoreConflict."""
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, operation)(**params)
        except ClientError as error:
            code = self._code(error)
            # 412 PreconditionFailed: condition false. 409 ConditionalRequestConflict: a
            # concurrent conditional write won. 404 NoSuchKey: If-Match on a deleted object.
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                reason = "already exists" if creating else "changed since it was read"
                raise StoreConflict(key, reason) from None
            if "IfMatch" in params and code in ("NoSuchKey", "404"):
                raise StoreConflict(key, "no longer exists") from None
            raise

    def stored_sha256(self, key: str) -> tuple[str, int] | None:
        self._count("head")
        from botocore.exceptions import ClientError

        with self._aws(key):
            try:
                response = self.client.head_object(
                    Bucket=self.bucket, Key=self._full(key), ChecksumMode="ENABLED"
                )
            except ClientError as error:
                if self._code(error) in NOT_FOUND:
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
        with self._aws(key):
            try:
                self._conditional(key, "delete_object", params, creating=False)
            except ClientError as error:
                if self._code(error) not in ("NoSuchKey", "404"):
                    raise  # an absent object is deleted already (without If-Match)

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
