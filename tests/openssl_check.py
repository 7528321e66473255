"""The signature check the farm's readers run (install.sh, the issue's): `openssl dgst -sha256
-verify` of data against its detached signature and a public key (PEM), in a scratch directory.
Shared by the signing, publishing, handler and workflow tests."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def openssl_verifies(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Whether openssl verifies the signature; openssl failing otherwise (not 0 "Verified OK" or
    1 "Verification failure") fails the test instead of reading as a bad signature."""
    with tempfile.TemporaryDirectory(prefix="openssl-check-") as scratch:
        directory = Path(scratch)
        (directory / "farm.pub").write_bytes(public_key)
        (directory / "data").write_bytes(data)
        (directory / "data.sig").write_bytes(signature)
        command = ["openssl", "dgst", "-sha256", "-verify", "farm.pub", "-signature", "data.sig", "data"]
        result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0 and result.stdout.strip() == "Verified OK"
