"""The fetch and verify phases: the source tarball, downloaded (or copied from file://)
and checked against the spec's sha256. Standard library only, Python 3.6+."""

import os
import shutil
import time

from .errors import BuildError
from .files import sha256_of

ATTEMPTS = 3
NOT_RETRIED = (403, 404)  # HTTP statuses that another attempt will not change


def fetch(build):
    url = build.spec["source"]["url"]
    build.tarball = os.path.join(build.work, url.rstrip("/").rsplit("/", 1)[-1] or "source.tar.xz")
    build.log.write("fetching {}\n".format(url))
    if url.startswith("file://"):
        shutil.copyfile(url[len("file://") :], build.tarball)
        return
    download(url, build.tarball, build.log)


def download(url, target, log):
    """url (http or https, checked by spec.py) into target; BuildError after ATTEMPTS tries."""
    import urllib.request  # not in Debian's python3-minimal; only needed here

    last_error = None
    for attempt in range(ATTEMPTS):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "python-build-farm"})  # noqa: S310
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - http(s) only
            with response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            return
        except Exception as error:  # network errors and HTTP errors alike; retried
            last_error = error
            log.write("attempt {} failed: {}\n".format(attempt + 1, error))
            if getattr(error, "code", None) in NOT_RETRIED:
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
