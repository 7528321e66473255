"""The source's OpenPGP signature (driver/signature.py): gpgv's status read into a verdict, the
decision table, the armored key, and real checks with the 3.13 release manager's key.

Nothing here compiles: the failures happen in the verify phase, before configure."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from builder_helpers import BUILD_PY, BUILDER_IMAGE, cli_build_on_host, host_platform
from driver import signature

CPYTHON_SRC = BUILD_PY.parents[2] / "shared" / "cpython-src"
TARBALL = CPYTHON_SRC / "Python-3.13.5.tar.xz"
KEY = BUILDER_IMAGE / "keys" / "3.13.asc"
FINGERPRINT = "7169605F62C751356D054A26A821E680E5FA6305"
HOST_PLATFORM = host_platform()
needs_gpgv = pytest.mark.skipif(shutil.which("gpgv") is None, reason="no gpgv on this machine")
needs_source = pytest.mark.skipif(not (TARBALL.with_name(TARBALL.name + ".asc")).is_file(), reason="no .asc")

# gpgv 2.2's status lines for Python-3.13.5.tar.xz.asc, after the key expired (2026-07-02):
SIGNED = 1749663954  # 2025-06-11T17:45:54Z
EXPIRES = 1782998657
EXPIRED_KEY_STATUS = f"""\
[GNUPG:] NEWSIG
[GNUPG:] KEYEXPIRED {EXPIRES}
[GNUPG:] KEY_CONSIDERED {FINGERPRINT} 0
[GNUPG:] SIG_ID 70NlS1OaYV1r1Z2Lg4p0fV2C8Rg 2025-06-11 {SIGNED}
[GNUPG:] EXPKEYSIG A821E680E5FA6305 Thomas Wouters <thomas@python.org>
[GNUPG:] VALIDSIG {FINGERPRINT} 2025-06-11 {SIGNED} 0 4 0 1 10 00 {FINGERPRINT}
"""
# ...and before it expired.
GOOD_STATUS = f"""\
[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED {FINGERPRINT} 0
[GNUPG:] GOODSIG A821E680E5FA6305 Thomas Wouters <thomas@python.org>
[GNUPG:] VALIDSIG {FINGERPRINT} 2025-06-11 {SIGNED} 0 4 0 1 10 00 {FINGERPRINT}
"""
BAD_STATUS = f"""\
[GNUPG:] NEWSIG
[GNUPG:] KEYEXPIRED {EXPIRES}
[GNUPG:] BADSIG A821E680E5FA6305 Thomas Wouters <thomas@python.org>
"""
NO_KEY_STATUS = f"""\
[GNUPG:] NEWSIG
[GNUPG:] ERRSIG A821E680E5FA6305 1 10 00 {SIGNED} 9 {FINGERPRINT}
[GNUPG:] NO_PUBKEY A821E680E5FA6305
"""


def test_a_good_signature_is_verified():
    assert signature.verdict(GOOD_STATUS, 0) == (
        True,
        {"fingerprint": FINGERPRINT, "signed_at": "2025-06-11T17:45:54Z", "key_expired": False},
    )


def test_a_signature_made_while_the_key_was_valid_stays_verified():
    accepted, details = signature.verdict(EXPIRED_KEY_STATUS, 0)
    assert accepted and details["key_expired"] and details["fingerprint"] == FINGERPRINT


def test_a_signature_made_after_the_key_expired_is_refused():
    late = EXPIRED_KEY_STATUS.replace(f"KEYEXPIRED {EXPIRES}", f"KEYEXPIRED {SIGNED - 1}")
    assert signature.verdict(late, 0) == (False, "the signature was made after the key expired")


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (BAD_STATUS, 1, "gpgv says BADSIG"),
        (NO_KEY_STATUS, 2, "gpgv says ERRSIG NO_PUBKEY"),
        (GOOD_STATUS.replace("GOODSIG", "REVKEYSIG"), 0, "gpgv says REVKEYSIG"),
        (GOOD_STATUS + "[GNUPG:] EXPSIG A821E680E5FA6305 x\n", 0, "gpgv says EXPSIG"),
        (GOOD_STATUS, 1, "gpgv exited 1 without a valid signature"),
        (GOOD_STATUS.replace("[GNUPG:] VALIDSIG", "VALIDSIG"), 0, "gpgv exited 0 without a valid signature"),
        ("[GNUPG:] NEWSIG\n" + GOOD_STATUS, 0, "gpgv exited 0 without a valid signature"),  # 2 sigs, 1 valid
        ("", 0, "gpgv exited 0 without a valid signature"),
    ],
)
def test_refused_signatures(status, code, reason):
    assert signature.verdict(status, code) == (False, reason)


def test_unreadable_timestamps_are_refused():
    odd = EXPIRED_KEY_STATUS.replace(f"KEYEXPIRED {EXPIRES}", "KEYEXPIRED 2026-07-02T00:00:00")
    accepted, reason = signature.verdict(odd, 0)
    assert not accepted and reason.startswith("unreadable timestamps")


def test_status_lines_are_parsed_in_order():
    assert signature.parse_status("gpgv: noise\n[GNUPG:] NEWSIG\n[GNUPG:] KEYEXPIRED 12\n") == [
        ("NEWSIG", []),
        ("KEYEXPIRED", ["12"]),
    ]


@pytest.mark.parametrize(
    ("has_signature", "has_key", "has_gpgv", "status"),
    [
        (False, True, True, "missing"),
        (False, False, False, "missing"),
        (True, False, True, "no-key"),
        (True, True, False, "no-gpgv"),
        (True, True, True, None),  # gpgv decides: verified, or the build fails
    ],
)
def test_status_before_gpgv(has_signature, has_key, has_gpgv, status):
    assert signature.status_before_gpgv(has_signature, has_key, has_gpgv) == status


@pytest.mark.parametrize("status", ["missing", "no-key", "no-gpgv"])
def test_only_a_verified_signature_passes_when_required(status):
    assert signature.allowed(status, required=False)
    assert not signature.allowed(status, required=True)
    assert signature.allowed("verified", required=True)


def test_keys_are_kept_per_series():
    assert signature.key_file("3.13.5") == str(KEY)
    assert signature.key_file("3.13.15") == str(KEY)
    assert signature.key_file("3.11.2") is None


@pytest.mark.skipif(shutil.which("gpg") is None, reason="no gpg to compare with")
def test_dearmor_matches_gpg():
    text = KEY.read_text()
    expected = subprocess.run(["gpg", "--dearmor"], input=text.encode(), capture_output=True, check=True)
    assert signature.dearmor(text) == expected.stdout
    assert signature.crc24(b"") == 0xB704CE


def test_a_damaged_key_file_is_refused():
    text = KEY.read_text()
    lines = text.splitlines()
    lines[5] = lines[5][:-4] + ("AAAA" if not lines[5].endswith("AAAA") else "BBBB")
    with pytest.raises(signature.ArmorError, match="checksum mismatch"):
        signature.dearmor("\n".join(lines))
    with pytest.raises(signature.ArmorError, match="no PGP PUBLIC KEY BLOCK"):
        signature.dearmor("not a key")


class _Log:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


@needs_gpgv
@needs_source
def test_the_3_13_5_source_verifies_with_the_repository_key(tmp_path):
    """gpgv on this machine, the key as kept in the repository, the upstream .asc."""
    log = _Log()
    asc = str(TARBALL) + ".asc"
    accepted, details = signature.gpgv_verify(shutil.which("gpgv"), str(KEY), asc, str(TARBALL), None, log)
    assert accepted, log.text
    assert details["fingerprint"] == FINGERPRINT and details["signed_at"] == "2025-06-11T17:45:54Z"
    # A modified tarball with the same .asc does not.
    modified = tmp_path / TARBALL.name
    modified.write_bytes(TARBALL.read_bytes() + b"\0")
    assert signature.gpgv_verify(shutil.which("gpgv"), str(KEY), asc, str(modified), None, _Log()) == (
        False,
        "gpgv says BADSIG",
    )


def _mirror(tmp_path: Path, modified: bool, with_signature: bool = True) -> tuple[str, str]:
    """A file:// mirror with 3.13.5 (one byte appended when modified) and, if asked, its .asc."""
    directory = tmp_path / "mirror" / "3.13.5"
    directory.mkdir(parents=True)
    tarball = directory / TARBALL.name
    if modified:
        tarball.write_bytes(TARBALL.read_bytes() + b"\0")
    else:
        tarball.symlink_to(TARBALL)
    if with_signature:
        (directory / (TARBALL.name + ".asc")).symlink_to(str(TARBALL) + ".asc")
    return f"file://{tmp_path / 'mirror'}", hashlib.sha256(tarball.read_bytes()).hexdigest()


@needs_gpgv
@needs_source
@pytest.mark.skipif(HOST_PLATFORM is None, reason="this machine is not a registered platform")
def test_a_modified_tarball_with_its_signature_fails_before_configure(tmp_path):
    """The sha256 matches (the spec says the modified tarball's), the signature does not."""
    mirror, digest = _mirror(tmp_path, modified=True)
    store = tmp_path / "store"
    store.mkdir()  # `build` refuses a named store that does not exist
    code, output = cli_build_on_host(store, mirror, "--optimization", "none", "--source-sha256", digest)
    assert code == 1, output
    assert "phase verify FAILED: OpenPGP signature of Python-3.13.5.tar.xz: gpgv says BADSIG" in output
    assert "phase configure" not in output
    assert not (store / "builds").exists()
    failure = json.loads((store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/1/failure.json").read_text())
    assert failure["phase"] == "verify" and "BADSIG" in failure["reason"]


def _driver_to_verify(tmp_path: Path, mirror: str, digest: str, **env: str) -> subprocess.CompletedProcess:
    """build.py up to the verify phase (BUILDFARM_STOP_AFTER), publishing nothing."""
    spec = {
        "version": "3.13.5", "platform": HOST_PLATFORM, "arch": "x86_64", "build": 1,
        "source": {"url": f"{mirror}/3.13.5/Python-3.13.5.tar.xz", "sha256": digest},
        "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(tmp_path / "store"),
        "artifact_dir": f"builds/3.13.5/{HOST_PLATFORM}/x86_64/1",
    }  # fmt: skip
    environment = {name: value for name, value in os.environ.items() if name != signature.REQUIRE_ENV}
    environment.update(BUILD_SPEC=json.dumps(spec), BUILDFARM_STOP_AFTER="verify", **env)
    return subprocess.run([sys.executable, str(BUILD_PY)], env=environment, capture_output=True, text=True)


@needs_gpgv
@needs_source
@pytest.mark.skipif(HOST_PLATFORM is None, reason="this machine is not a registered platform")
def test_the_driver_verifies_the_signature_or_records_it_missing(tmp_path):
    mirror, digest = _mirror(tmp_path / "signed", modified=False)
    verified = _driver_to_verify(tmp_path / "signed", mirror, digest, **{signature.REQUIRE_ENV: "1"})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"buildfarm: source signature: verified ({FINGERPRINT})" in verified.stdout
    assert "stopped after phase verify" in verified.stdout
    mirror, digest = _mirror(tmp_path / "unsigned", modified=False, with_signature=False)
    unsigned = _driver_to_verify(tmp_path / "unsigned", mirror, digest)
    assert unsigned.returncode == 0, unsigned.stdout + unsigned.stderr
    assert "buildfarm: source signature: missing" in unsigned.stdout
    required = _driver_to_verify(tmp_path / "required", mirror, digest, **{signature.REQUIRE_ENV: "1"})
    assert required.returncode == 1
    assert (
        "phase verify FAILED: source signature missing and BUILDFARM_REQUIRE_SOURCE_SIGNATURE=1"
        in required.stdout
    )
    assert not (tmp_path / "required" / "store" / "builds").exists()


SUBKEY = "2770054CA07604BEC801EE7222EF7ACB211508C5"  # 3.13.asc's subkey


def test_the_key_files_fingerprints_are_computed_from_its_packets(tmp_path):
    assert signature.key_fingerprints(signature.dearmor(KEY.read_text())) == [FINGERPRINT, SUBKEY]
    if shutil.which("gpg"):
        argv = ["gpg", "--homedir", str(tmp_path), "--with-colons", "--show-keys", str(KEY)]
        listed = subprocess.run(argv, capture_output=True, text=True)
        assert [line.split(":")[9] for line in listed.stdout.splitlines() if line.startswith("fpr:")] == [
            FINGERPRINT,
            SUBKEY,
        ]


def test_a_signature_by_a_key_not_in_the_key_file_is_refused():
    assert signature.verdict(GOOD_STATUS, 0, [FINGERPRINT, SUBKEY])[0]
    other = "ABCD" * 10
    assert signature.verdict(GOOD_STATUS, 0, [other]) == (
        False,
        f"signed by {FINGERPRINT}, which is not the series' key",
    )


def _fake_gpgv(directory: Path, status: str, marker: Path | None = None) -> None:
    """A gpgv that prints status on its status fd (1), and touches marker when given."""
    directory.mkdir()
    (directory / "status").write_text(status)
    touch = f"/usr/bin/touch {marker}\n" if marker else ""
    (directory / "gpgv").write_text(f"#!/bin/sh\n{touch}exec /bin/cat {directory / 'status'}\n")
    (directory / "gpgv").chmod(0o755)


def _build_to_verify(tmp_path: Path, path: str) -> SimpleNamespace:
    (tmp_path / "Python-3.13.5.tar.xz").write_bytes(b"source")
    (tmp_path / "Python-3.13.5.tar.xz.asc").write_bytes(b"signature")
    return SimpleNamespace(
        version="3.13.5", env={"PATH": path}, log=_Log(), signature_url="file:///x.asc",
        signature=str(tmp_path / "Python-3.13.5.tar.xz.asc"), tarball=str(tmp_path / "Python-3.13.5.tar.xz"),
    )  # fmt: skip


def test_the_gpgv_on_the_build_environments_path_checks_not_the_callers(tmp_path, monkeypatch):
    marker = tmp_path / "callers-gpgv-ran"
    _fake_gpgv(tmp_path / "caller", "", marker)
    _fake_gpgv(tmp_path / "system", GOOD_STATUS)
    monkeypatch.setenv("PATH", f"{tmp_path / 'caller'}:{os.environ['PATH']}")
    monkeypatch.delenv(signature.REQUIRE_ENV, raising=False)
    build = _build_to_verify(tmp_path, str(tmp_path / "system"))
    signature.check(build)
    assert build.source_signature["status"] == "verified", build.log.text
    assert not marker.exists()


def test_a_valid_signature_by_another_key_fails_the_verify_phase(tmp_path, monkeypatch):
    other = "ABCD" * 10
    _fake_gpgv(tmp_path / "system", GOOD_STATUS.replace(FINGERPRINT, other))
    monkeypatch.delenv(signature.REQUIRE_ENV, raising=False)
    with pytest.raises(signature.BuildError, match=f"signed by {other}, which is not the series' key"):
        signature.check(_build_to_verify(tmp_path, str(tmp_path / "system")))
