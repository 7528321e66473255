"""The upload phase and the stores it writes: a directory or S3, with the same layout
(builds/<cell>/<build>/ for a build, logs/<cell>/<build>/ for a failure record), create-only
in both. Standard library only, Python 3.6+; boto3 is imported only for an s3:// store."""

import base64
import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile

from .errors import SpecError, WouldOverwrite
from .files import sha256_digest


def upload(build):
    """manifest.json (with the timings up to here) last: publish treats a cell without a
    manifest as not built."""
    with open(build.manifest_path, "w") as handle:
        json.dump(build.manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
    build.log.write("publishing to {}/{}\n".format(build.store.describe(), build.spec["artifact_dir"]))
    build.log.handle.flush()
    files = [(os.path.basename(path), path) for _, path in build.artifacts]
    files += [
        ("build.log", build.log.path),
        ("manifest.json", build.manifest_path),
    ]
    build.store.publish(build.spec["artifact_dir"], files)


def store_kind(store):
    return "s3" if store.startswith("s3://") else "local"


def split_s3_url(url):
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise SpecError("malformed S3 store {!r} (expected s3://bucket/prefix)".format(url))
    return bucket, prefix.strip("/")


def open_store(store):
    """The store of a spec's "store": LocalStore or S3Store, the same four methods:
    describe() (for messages), cell_exists(artifact_dir), publish(artifact_dir, files) and
    write_logs(log_dir, files), files being [(name, local path)] (write_logs also takes the
    content as bytes: a failure record made when the work directory's disk is full); both never
    overwrite."""
    return S3Store(store) if store_kind(store) == "s3" else LocalStore(store)


class LocalStore(object):
    """A directory (or file://) store: a cell appears in one rename, complete."""

    def __init__(self, root):
        if root.startswith("file://"):
            root = root[len("file://") :]
        self.root = os.path.abspath(root)

    def describe(self):
        return self.root

    def cell_exists(self, artifact_dir):
        return os.path.lexists(os.path.join(self.root, artifact_dir))

    def publish(self, artifact_dir, files):
        """Copy files (name -> local path; manifest.json last) into a hidden staging
        directory next to the target, then rename it into place in one step."""
        final = os.path.join(self.root, artifact_dir)
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-{}-".format(os.path.basename(final)), dir=parent)
        try:
            for name, path in files:
                shutil.copyfile(path, os.path.join(staging, name))
                with open(os.path.join(staging, name), "rb") as handle:
                    os.fsync(handle.fileno())
            os.chmod(staging, 0o755)  # noqa: S103 - a published cell is world-readable
            # Taken since preflight: no failure record over it either. The check gives the
            # message; rename() is what refuses a build that appears after it (it replaces
            # only an empty directory, never a file or a directory holding one).
            try:
                if os.path.lexists(final):
                    raise FileExistsError(errno.EEXIST, "exists")
                os.rename(staging, final)
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
                raise WouldOverwrite(
                    "upload", "{} already exists; builds are never overwritten".format(final)
                ) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def write_logs(self, log_dir, files):
        """Create-only, as S3's: each file copied beside its name, then hard-linked to it (a
        link never replaces a file); WouldOverwrite when the name is taken."""
        target = os.path.join(self.root, log_dir)
        os.makedirs(target, exist_ok=True)
        for name, path in files:
            tmp = os.path.join(target, ".{}.{}.tmp".format(name, os.getpid()))
            try:
                if isinstance(path, bytes):
                    with open(tmp, "wb") as handle:
                        handle.write(path)
                else:
                    shutil.copyfile(path, tmp)
                os.link(tmp, os.path.join(target, name))
            except FileExistsError:
                raise WouldOverwrite(
                    "upload",
                    "{} already exists; failure records are never overwritten".format(
                        os.path.join(target, name)
                    ),
                ) from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)


class S3Store(object):
    """Every PutObject is create-only (If-None-Match: *): S3 refuses to replace an existing key
    with 412, and the bucket policy refuses any write under builds/ without the header."""

    def __init__(self, url):
        self.bucket, self.prefix = split_s3_url(url)
        import boto3  # only builds that upload to S3 need it
        from botocore.config import Config

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        # S3 honours conditional writes only on SigV4-signed requests: pin it rather than rely
        # on the default of whichever botocore the image has.
        self.client = boto3.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))
        if "IfNoneMatch" not in self._put_object_fields():
            # botocore < 1.35 (the boto3 pip gives Python 3.6 on rhel-8 / openSUSE 15) has no
            # IfNoneMatch parameter: add the header to the request before it is signed.
            events = getattr(self.client.meta, "events", None)
            if events is None:
                raise WouldOverwrite("upload", "this boto3 cannot send If-None-Match: refusing to upload")
            events.register("before-sign.s3.PutObject", _add_if_none_match)

    def describe(self):
        return "s3://{}/{}".format(self.bucket, self.prefix)

    def key(self, relative):
        return "{}/{}".format(self.prefix, relative) if self.prefix else relative

    def cell_exists(self, artifact_dir):
        """Whether the build directory holds a file of its own. Only its direct keys count
        (Delimiter "/"): a key nested deeper below it is no file of this build (and the bucket
        refuses such keys), so it cannot make a free build number look taken. Paged: the
        listing returns subfolders (CommonPrefixes) and files in one sorted stream."""
        request = {"Bucket": self.bucket, "Prefix": self.key(artifact_dir) + "/", "Delimiter": "/"}
        while True:
            response = self.client.list_objects_v2(**request)
            if response.get("Contents"):
                return True
            if not response.get("IsTruncated"):
                return False
            request["ContinuationToken"] = response["NextContinuationToken"]

    def _put(self, key, path):
        """Upload a file (a path) or content (bytes) create-only."""
        members = self._put_object_fields()
        extra = {"IfNoneMatch": "*"} if "IfNoneMatch" in members else {}
        if "ChecksumSHA256" in members:
            # S3 verifies the upload and keeps the full-object SHA-256 (publish reads it back).
            digest = hashlib.sha256(path).digest() if isinstance(path, bytes) else sha256_digest(path)
            extra["ChecksumSHA256"] = base64.b64encode(digest).decode()
            extra["ChecksumAlgorithm"] = "SHA256"
        try:
            if isinstance(path, bytes):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=path, **extra)
            else:
                with open(path, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        except Exception as error:  # botocore ClientError: 412 = the key exists
            error_info = getattr(error, "response", {}).get("Error", {})
            if error_info.get("Code") in ("PreconditionFailed", "412"):
                raise WouldOverwrite(
                    "upload",
                    "s3://{}/{} already exists; builds are never overwritten".format(self.bucket, key),
                ) from None
            raise

    def _put_object_fields(self):
        # Conditional writes arrived in botocore 1.35 and checksums in 1.24; the boto3 that
        # pip installs for Python 3.6 may lack them.
        return set(self.client.meta.service_model.operation_model("PutObject").input_shape.members)

    def publish(self, artifact_dir, files):
        """Upload every file create-only, manifest.json last: publish treats a cell without a
        manifest as not built. The HEAD first fails fast, before the large uploads."""
        manifest_key = self.key(artifact_dir + "/manifest.json")
        try:
            self.client.head_object(Bucket=self.bucket, Key=manifest_key)
            raise WouldOverwrite(
                "upload", "{} already exists; builds are never overwritten".format(manifest_key)
            )
        except WouldOverwrite:
            raise
        except Exception as error:  # botocore ClientError 404 = free
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code not in ("404", "NoSuchKey", "NotFound"):
                raise
        for name, path in files:
            self._put(self.key(artifact_dir + "/" + name), path)

    def write_logs(self, log_dir, files):
        # Create-only too: a build number's failure record is written once.
        for name, path in files:
            self._put(self.key(log_dir + "/" + name), path)


def _add_if_none_match(request, **kwargs):
    """botocore before-sign hook: the If-None-Match header that an old botocore cannot model."""
    if "If-None-Match" not in request.headers:
        request.headers["If-None-Match"] = "*"
