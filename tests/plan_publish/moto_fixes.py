"""The one place with fixes to moto for these tests, pinned to the moto version they were made for.

moto 5.2.5 honours PutObject If-None-Match / If-Match (412 PreconditionFailed; If-Match on a
missing key gives 404 NoSuchKey, like S3) and DeleteObject If-Match — checked by
test_store.py against both the in-process mock and ThreadedMotoServer. But its check and
its write are two steps without a lock (moto/s3/responses.py S3Response.put_object), so
under concurrent requests two conditional writes can both pass the check, which real S3
never allows. Serialising conditional PutObjects restores S3's atomicity; unconditional
writes are untouched.
"""

from __future__ import annotations

import functools
import threading

import moto
from moto.s3.responses import S3Response

MOTO_VERSION = "5.2.5"
_lock = threading.Lock()
_installed = False


def make_conditional_puts_atomic() -> None:
    global _installed
    if _installed:
        return
    assert moto.__version__ == MOTO_VERSION, (
        f"moto_fixes.py was written for moto {MOTO_VERSION}, found {moto.__version__}: re-check whether "
        "conditional PutObject is atomic now and drop or adapt the fix"
    )
    original = S3Response.put_object

    @functools.wraps(original)
    def put_object(self: S3Response, *args, **kwargs):
        if self.headers.get("If-Match") or self.headers.get("If-None-Match"):
            with _lock:
                return original(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    S3Response.put_object = put_object
    _installed = True
