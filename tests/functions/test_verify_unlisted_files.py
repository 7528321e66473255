"""`buildfarm verify` of a local build directory reports a file the build does not account for
(neither listed in SHA256SUMS nor one of the files beside it): a published build is
immutable, and whatever is in its directory is served. The stores are the real publisher's,
from fake builds, so the files a clean build has are exactly what the farm writes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from buildfarm.attest.signing import KeyFileSigner, sign_file
from buildfarm.attest.verify_build import HttpBuild, LocalBuild, unlisted_files
from buildfarm.cli import main
from buildfarm.layout import artifact_dir
from buildfarm.models import Attestations
from buildfarm.store import LocalStore

from .conftest import publish_fake_cell

BUILD_DIR = artifact_dir("3.13.5", "debian-12", "x86_64", 1)
EXTRA = "not listed in SHA256SUMS, and not a file of the build"


@pytest.fixture
def store(tmp_path: Path, config, session_signer: KeyFileSigner) -> Path:
    """3.13.5 for debian-12/x86_64 built (fake) and published, signed with the session key."""
    store = LocalStore(tmp_path / "dist")
    publish_fake_cell(store, config, session_signer)
    return store.root


@pytest.fixture
def pubkey(tmp_path: Path, session_signer: KeyFileSigner) -> str:
    path = tmp_path / "farm.pub"
    path.write_bytes(session_signer.public_key_pem())
    return str(path)


def write_runtime_build(directory: Path, signer: KeyFileSigner) -> None:
    """A signed runtime build (svc 1.0, build 1): a tarball, manifest.json, SHA256SUMS and its
    signature, and no build.log (test_verify_store's runtime build)."""
    directory.mkdir(parents=True)
    tarball = directory / "svc-1.0.tar.gz"
    tarball.write_bytes(b"a runtime's tree\n")
    manifest = {
        "runtime": {"name": "svc", "version": "1.0"},
        "platform": "debian-12",
        "arch": "x86_64",
        "build": 1,
        "artifacts": [{"file": tarball.name, "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest()}],
        "attestations": Attestations.checksums_only().model_dump(),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(directory.iterdir())]
    (directory / "SHA256SUMS").write_text("".join(sums))
    sign_file(signer, directory / "SHA256SUMS")


def verify(capsys, location: Path, pubkey: str) -> tuple[int, list[str]]:
    status = main(["verify", str(location), "--pubkey", pubkey])
    return status, capsys.readouterr().out.splitlines()


def test_a_clean_published_build_and_store_verify(store, pubkey, capsys) -> None:
    build = store / BUILD_DIR
    assert {"build.log", "SHA256SUMS", "SHA256SUMS.sig", "provenance.json.sig"} <= {
        path.name for path in build.iterdir()
    }
    assert verify(capsys, build, pubkey) == (0, [f"{build}: OK"])
    assert verify(capsys, store, pubkey) == (0, [f"{store}: OK"])


def test_an_extra_file_in_the_build_directory_is_named(store, pubkey, capsys) -> None:
    (store / BUILD_DIR / "extra.txt").write_text("hi\n")

    assert verify(capsys, store / BUILD_DIR, pubkey) == (1, [f"extra.txt: {EXTRA}"])
    assert verify(capsys, store, pubkey) == (1, [f"{BUILD_DIR}/extra.txt: {EXTRA}"])


@pytest.mark.parametrize(
    "name", [".hidden", "python-3.13.5-debian-12-x86_64.tar.gz.orig", "SHA256SUMS.asc", "manifest.json.sig"]
)
def test_any_unaccounted_name_is_reported(store, pubkey, capsys, name) -> None:
    (store / BUILD_DIR / name).write_bytes(b"x")
    assert verify(capsys, store / BUILD_DIR, pubkey) == (1, [f"{name}: {EXTRA}"])


def test_a_sub_directory_is_reported(store, pubkey, capsys) -> None:
    (store / BUILD_DIR / "lib").mkdir()
    assert verify(capsys, store / BUILD_DIR, pubkey) == (1, [f"lib: {EXTRA}"])


def test_a_directory_stores_write_in_flight_is_not_a_file_of_the_build(store, pubkey, capsys) -> None:
    """LocalStore writes beside the key and renames into place (layout.LOCAL_TEMP_PREFIX)."""
    (store / BUILD_DIR / ".tmp-k2j3h4").write_bytes(b"half a file")
    assert verify(capsys, store / BUILD_DIR, pubkey) == (0, [f"{store / BUILD_DIR}: OK"])


def test_a_build_without_its_log_still_verifies(store, pubkey, capsys) -> None:
    """build.log is allowed beside the build, not required (a runtime build has none)."""
    (store / BUILD_DIR / "build.log").unlink()
    assert verify(capsys, store / BUILD_DIR, pubkey)[0] == 0


def test_a_runtime_build_is_held_to_its_own_files(tmp_path, session_signer, pubkey, capsys) -> None:
    build = tmp_path / "store" / "runtimes" / "svc" / "1.0" / "debian-12" / "x86_64" / "1"
    write_runtime_build(build, session_signer)
    assert verify(capsys, build, pubkey) == (0, [f"{build}: OK"])
    shutil.copy(build / "manifest.json", build / "provenance.json")  # a role its manifest leaves out
    assert verify(capsys, build, pubkey) == (1, [f"provenance.json: {EXTRA}"])


def test_over_http_there_is_no_listing_to_check(store) -> None:
    assert HttpBuild("http://127.0.0.1:9/builds/").names() is None
    assert unlisted_files(HttpBuild("http://127.0.0.1:9/builds/"), {}, None) == []
    assert "build.log" in (LocalBuild(store / BUILD_DIR).names() or set())
