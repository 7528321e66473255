"""The fetch and verify phases: the source tarball, downloaded (or copied from file://)
and checked against the spec's sha256, then its OpenPGP signature when the mirror has one
(signature.py). Standard library only, Python 3.6+."""

import os
import shutil
import time

from . import signature
from .errors import BuildError
from .files import sha256_of

ATTEMPTS = 3
NOT_RETRIED = (403, 404)  # HTTP statuses that another attempt will not change


def fetch(build):
    url = build.spec["source"]["url"]
    build.tarball = os.path.join(build.work, url.rstrip("/").rsplit("/", 1)[-1] or "source.tar.xz")
    build.log.write("fetching {}\n".format(url))
    if url.startswith("file://"):
        try:
            shutil.copyfile(url[len("file://") :], build.tarball)
        except OSError as error:  # no such file, a directory, unreadable: named, not a traceback
            raise BuildError("fetch", "cannot copy {}: {}".format(url, error.strerror or error)) from None
    else:
        download(url, build.tarball, build.log)
    fetch_signature(build)


def fetch_signature(build):
    """Python-<v>.<ext>.asc from beside the tarball into build.signature (None: the mirror
    has none; HTTP 404 or 403, as a bucket answers for a key it does not have)."""
    build.signature_url = build.spec["source"]["url"] + ".asc"
    target = build.tarball + ".asc"
    if build.signature_url.startswith("file://"):
        path = build.signature_url[len("file://") :]
        if os.path.isfile(path):
            shutil.copyfile(path, target)
            build.signature = target
    elif download(build.signature_url, target, build.log, missing_ok=True):
        build.signature = target
    build.log.write("signature {}: {}\n".format(build.signature_url, "found" if build.signature else "none"))


def download(url, target, log, missing_ok=False):
    """url (http or https, checked by spec.py) into target; BuildError after ATTEMPTS tries.
    missing_ok: False instead of the error when the server says the file is not there."""
    import urllib.request  # not in Debian's python3-minimal; only needed here

    last_error = None
    for attempt in range(ATTEMPTS):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "python-build-farm"})  # noqa: S310
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - http(s) only
            with response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            return True
        except Exception as error:  # network errors and HTTP errors alike; retried
            last_error = error
            log.write("attempt {} failed: {}\n".format(attempt + 1, error))
            if getattr(error, "code", None) in NOT_RETRIED:
                if missing_ok:
                    return False
                break
            time.sleep(2 * (attempt + 1))
    raise BuildError("fetch", "cannot download {}: {}".format(url, last_error))


def verify(build):
    expected = build.spec["source"]["sha256"]
    actual = sha256_of(build.tarball)
    build.log.write("sha256 {} (expected {})\n".format(actual, expected))
    if actual != expected:
        raise BuildError(
            "verify", "sha256 mismatch for {}: expected {}, got {}".format(build.tarball, expected, actual)
        )
    signature.check(build)
