"""Fixtures of the attestation tests: real CPython source trees (only the files that state
bundled code), extracted once per session from ../shared/cpython-src; a store with one signed
build and the farm key that signed it."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from buildfarm.attest.signing import KeyFileSigner, init_key

CPYTHON_SRC = Path(__file__).resolve().parents[4] / "shared" / "cpython-src"
SOURCES = {"3.9.2": "Python-3.9.2.tar.xz", "3.11.2": "Python-3.11.2.tgz", "3.13.5": "Python-3.13.5.tar.xz"}
# What the bundled-code probes read: extracting only these keeps the fixture fast.
WANTED = (
    "Misc/sbom.spdx.json",
    "Modules/expat/",
    "Modules/_decimal/libmpdec/",
    "Modules/_hacl/",
    "Modules/_sha3/",
    "Modules/_blake2/impl/",
    "Lib/ctypes/macholib/",
)


@pytest.fixture(scope="session")
def cpython_tree(tmp_path_factory: pytest.TempPathFactory):
    """tree(version) -> the extracted source tree of that release (made once)."""
    trees: dict[str, Path] = {}

    def tree(version: str) -> Path:
        if version not in trees:
            target = tmp_path_factory.mktemp(f"src-{version}")
            with tarfile.open(CPYTHON_SRC / SOURCES[version]) as archive:
                prefix = f"Python-{version}/"
                members = [
                    member
                    for member in archive
                    if member.name.startswith(prefix) and member.name.removeprefix(prefix).startswith(WANTED)
                ]
                archive.extractall(target, members=members, filter="data")
            trees[version] = target / f"Python-{version}"
        return trees[version]

    return tree


@pytest.fixture(scope="session")
def farm_pub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The farm's public key file (its private key beside it: farm.pem)."""
    directory = tmp_path_factory.mktemp("farm-key")
    init_key(directory / "farm.pem")
    (directory / "farm.pub").write_bytes(KeyFileSigner(directory / "farm.pem").public_key_pem())
    return directory / "farm.pub"


@pytest.fixture
def signed_store(tmp_path: Path, farm_pub: Path) -> Path:
    """A store with one build signed by farm_pub's key: test_verify_build's, at its CELL_DIR."""
    from test_verify_build import CELL_DIR, write_build  # a test module: imported when used

    write_build(tmp_path / "store" / CELL_DIR, KeyFileSigner(farm_pub.with_suffix(".pem")))
    return tmp_path / "store"
