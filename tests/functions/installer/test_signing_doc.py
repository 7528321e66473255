"""docs/signing.md's recipe for uv users (check-uv-metadata.sh) runs as written: it keeps uv's
metadata only when each entry is what the versions.json the pinned key signed lists for that
version, arch and platform (the tarball's sha256, file name and build)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from buildfarm.catalog import uv_download_metadata

from .signed_store import VERSION, Key, SignedStore, make_signed_store
from .test_install_script import _tarball

DOC = Path(__file__).resolve().parents[3] / "docs" / "signing.md"


def _recipe() -> str:
    block = re.search(r"<!-- uv-pin:begin -->\n```sh\n(.*?)```\n<!-- uv-pin:end -->", DOC.read_text(), re.S)
    assert block, "docs/signing.md has no uv-pin block"
    return block[1]


@pytest.fixture
def store(tmp_path) -> SignedStore:
    signed = make_signed_store(
        tmp_path / "store", Key.create(tmp_path / "key"), {"tarball": ("python.tar.gz", _tarball(VERSION))}
    )
    metadata = uv_download_metadata(signed.catalog(), "debian-12", lambda key: f"file://{signed.root}/{key}")
    (signed.root / "download-metadata").mkdir()
    (signed.root / "download-metadata" / "debian-12.json").write_text(json.dumps(metadata))
    return signed


def _run_recipe(tmp_path: Path, store: SignedStore) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "team"
    work.mkdir()
    (work / "check-uv-metadata.sh").write_text(_recipe())
    (work / "farm.pub").write_bytes(store.key.public.read_bytes())
    argv = ["sh", "check-uv-metadata.sh", f"file://{store.root}", "debian-12"]
    return subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=60)


def test_checked_metadata_is_kept(tmp_path, store) -> None:
    result = _run_recipe(tmp_path, store)
    assert result.returncode == 0, result.stderr
    kept = json.loads((tmp_path / "team" / "debian-12.json").read_text())
    assert [entry["sha256"] for entry in kept.values()] == [
        a["sha256"] for a in store.catalog()["builds"][VERSION]["debian-12"]["x86_64"]["artifacts"]
    ]


def test_metadata_with_a_sha256_the_key_did_not_sign_is_refused(tmp_path, store) -> None:
    path = store.root / "download-metadata" / "debian-12.json"
    metadata = json.loads(path.read_text())
    for entry in metadata.values():
        entry["sha256"] = "0" * 64
    path.write_text(json.dumps(metadata))
    result = _run_recipe(tmp_path, store)
    assert result.returncode != 0
    assert f"not as the signed versions.json lists it for debian-12: cpython-{VERSION}-linux-x86_64-gnu" in (
        result.stderr
    )
    assert not (tmp_path / "team" / "debian-12.json").exists()


def test_a_tampered_versions_json_is_refused(tmp_path, store) -> None:
    catalog = store.catalog()
    catalog["updated"] = "2030-01-01T00:00:00Z"
    store.write_catalog(catalog)
    result = _run_recipe(tmp_path, store)
    assert result.returncode != 0 and "Verification failure" in result.stdout + result.stderr
    assert not (tmp_path / "team" / "debian-12.json").exists()


@pytest.mark.parametrize(
    "relabel",
    [
        {"patch": 99},  # a signed tarball offered as another release
        {"arch": {"family": "aarch64", "variant": None}},  # ... as another arch
        {"build": "7"},  # ... as another build
        {"url": "https://elsewhere.example.org/other.tar.gz"},  # a file the catalog does not name
        {"sha256": None},  # malformed: refused, not a traceback that keeps it
    ],
    ids=["version", "arch", "build", "file", "malformed"],
)
def test_a_signed_tarball_under_another_cells_name_is_refused(tmp_path, store, relabel) -> None:
    """Every sha256 below is signed: only the entry's identity is wrong, which the sha256 check
    alone let through."""
    path = store.root / "download-metadata" / "debian-12.json"
    metadata = json.loads(path.read_text())
    for entry in metadata.values():
        entry.update(relabel)
    path.write_text(json.dumps(metadata))
    result = _run_recipe(tmp_path, store)
    assert result.returncode != 0
    assert "not as the signed versions.json lists it for debian-12: cpython-" in result.stderr, result.stderr
    assert not (tmp_path / "team" / "debian-12.json").exists()
