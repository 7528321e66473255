"""The store-level parts of `buildfarm verify` (buildfarm.attest.verify_store): where a build
directory's store root is, and which build directories versions.json lists."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from test_verify_build import BUILD, CELL_DIR, run_cli

from buildfarm.attest.signing import KeyFileSigner, sign_file
from buildfarm.attest.verify_build import open_build
from buildfarm.attest.verify_store import (
    check_catalog_sums,
    check_home,
    published_builds,
    store_root_of,
    verify_store,
)
from buildfarm.models import Attestations


@pytest.mark.parametrize(
    ("location", "root"),
    [
        ("/srv/store/builds/3.13.5/debian-12/x86_64/1", "/srv/store"),
        ("https://cdn.example/python/builds/3.13.5/debian-12/x86_64/12/", "https://cdn.example/python"),
        ("https://cdn.example/runtimes/jupyter/1.0/debian-12/aarch64/2", "https://cdn.example"),
        ("builds/3.13.5/debian-12/x86_64/1", "."),
        ("/builds/3.13.5/debian-12/x86_64/1", "/"),
        ("/srv/store/builds/3.13.5/debian-12/x86_64", None),
        ("/srv/store/builds/3.13.5/debian-12/x86_64/01", None),
        ("/srv/store/builds/../debian-12/x86_64/1", None),
        ("/srv/store/runtimes/../../../x86_64/1", None),
        ("/srv/store", None),
        # The same directory spelled otherwise: the files read are the same, so is the root.
        ("/srv/store/builds/3.13.5/debian-12/x86_64//1", "/srv/store"),
        ("/srv/store//builds/3.13.5/./debian-12/x86_64/1/.", "/srv/store"),
        ("builds/3.13.5/debian-12/x86_64/1/./", "."),
        ("https://cdn.example/python/builds/3.13.5/debian-12/x86_64//12/./", "https://cdn.example/python"),
        # A runtime may be named "builds": runtimes/builds/... is that runtime's directory.
        ("/srv/store/runtimes/builds/1.0/debian-12/x86_64/2", "/srv/store"),
        ("https://cdn.example/runtimes/builds/3.13.5/debian-12/x86_64/2/", "https://cdn.example"),
    ],
)
def test_the_store_root_of_a_build_directory(location: str, root: str | None) -> None:
    assert store_root_of(location) == root


def test_published_builds_lists_builds_and_runtimes() -> None:
    artifact = {"key": "builds/3.13.5/debian-12/x86_64/1/python.tar.gz", "sha256": "1" * 64}
    runtime = {"key": "runtimes/r/1.0/debian-12/x86_64/2/r.tar.gz", "sha256": "2" * 64}
    document = {
        "builds": {
            "3.13.5": {
                "debian-12": {
                    "x86_64": {
                        "manifest": "builds/3.13.5/debian-12/x86_64/1/manifest.json",
                        "artifacts": [artifact],
                    },
                    "aarch64": {"manifest": 7},
                }
            }
        },
        "runtimes": {
            "r": {
                "1.0": {
                    "debian-12": {
                        "x86_64": {
                            "manifest": "runtimes/r/1.0/debian-12/x86_64/2/manifest.json",
                            "artifacts": [runtime],
                        }
                    }
                }
            }
        },
    }
    assert published_builds(document) == [
        ("builds/3.13.5/debian-12/x86_64/1", {artifact["key"]: "1" * 64}),
        ("runtimes/r/1.0/debian-12/x86_64/2", {runtime["key"]: "2" * 64}),
    ]
    assert published_builds([]) == [] and published_builds({"builds": "x"}) == []


def test_the_catalogs_artifacts_are_checked_against_the_verified_sums_in_their_directory() -> None:
    directory = "builds/3.13.5/debian-12/x86_64/1"
    sums = {"python.tar.gz": "1" * 64}
    assert check_catalog_sums(directory, sums, {f"{directory}/python.tar.gz": "1" * 64}) == []
    assert check_catalog_sums(directory, sums, {f"{directory}/python.tar.gz": "3" * 64}) == [
        f"versions.json: {directory}/python.tar.gz has sha256 {'3' * 64}, its SHA256SUMS {'1' * 64}"
    ]
    # install.sh downloads the key itself: one outside the verified directory is refused.
    elsewhere = "builds/3.13.5/debian-12/x86_64/2/python.tar.gz"
    assert check_catalog_sums(directory, sums, {elsewhere: "1" * 64}) == [
        f"versions.json: artifact {elsewhere} is not in its build's directory {directory}"
    ]


def test_a_build_is_where_its_manifest_says_it_was_published() -> None:
    python = {"spec": {"artifact_dir": "builds/3.13.5/debian-12/x86_64/1"}}
    assert check_home("builds/3.13.5/debian-12/x86_64/1", python) == []
    assert check_home("builds/3.13.5/debian-12/x86_64/2", python) == [
        "manifest.json: the build of builds/3.13.5/debian-12/x86_64/1, "
        "found at builds/3.13.5/debian-12/x86_64/2"
    ]
    runtime = {
        "runtime": {"name": "r", "version": "1.0"},
        "platform": "debian-12",
        "arch": "x86_64",
        "build": 2,
    }
    assert check_home("runtimes/r/1.0/debian-12/x86_64/2", runtime) == []
    assert check_home("runtimes/r/1.0/debian-12/x86_64/3", runtime)[0].startswith(
        "manifest.json: the build of"
    )
    assert check_home("runtimes/r/1.0/debian-12/x86_64/2", {"build": "2"}) == [
        "manifest.json: the build of no directory, found at runtimes/r/1.0/debian-12/x86_64/2"
    ]


def test_a_listed_directory_with_dot_dot_segments_is_not_read(tmp_path) -> None:
    """A tampered versions.json (its signature fails, the builds are still checked) cannot make
    verify read a directory outside the store: runtimes/../../../x86_64/1 would be beside it."""
    store, outside = tmp_path / "store", tmp_path.parent / "x86_64" / "1"
    store.mkdir()
    manifest = "runtimes/../../../x86_64/1/manifest.json"
    document = {"runtimes": {"..": {"..": {"..": {"x86_64": {"manifest": manifest, "artifacts": []}}}}}}
    (store / "versions.json").write_text(json.dumps(document))
    problems = verify_store(str(store), open_build(str(store)), [])
    assert "versions.json: 'runtimes/../../../x86_64/1' is not a build directory" in problems
    assert not any(problem.startswith("runtimes/../") for problem in problems)
    assert not outside.exists()


@pytest.mark.parametrize(
    "spelling", ["2", "./2", "2/.", "../x86_64/2/", "{other}/.", "{x86_64}//2", "{other}"]
)
def test_a_copied_build_is_not_that_build_however_its_directory_is_spelled(
    spelling: str, signed_store: Path, farm_pub: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Build 1 copied to build 2's directory fails as build 2 by any path to that directory
    (relative ones from the arch's directory)."""
    other_dir = CELL_DIR.replace(f"/{BUILD}", f"/{BUILD + 1}")
    other = signed_store / other_dir
    shutil.copytree(signed_store / CELL_DIR, other)
    monkeypatch.chdir(other.parent)
    location = spelling.format(other=other, x86_64=other.parent)
    status, out, _ = run_cli(capsys, "verify", location, "--pubkey", str(farm_pub))
    expected = f"manifest.json: the build of {CELL_DIR}, found at {other_dir}"
    assert (status, out.splitlines()) == (1, [expected])


def write_runtime_build(directory: Path, name: str, build: int, signer: KeyFileSigner) -> None:
    """A signed runtime build of runtime `name` 1.0 (its manifest, a tarball and SHA256SUMS)."""
    directory.mkdir(parents=True)
    tarball = directory / f"{name}-1.0.tar.gz"
    tarball.write_bytes(b"a runtime's tree\n")
    manifest = {
        "runtime": {"name": name, "version": "1.0"},
        "platform": "debian-12",
        "arch": "x86_64",
        "build": build,
        "artifacts": [{"file": tarball.name, "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest()}],
        "attestations": Attestations.checksums_only().model_dump(),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    sums = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"
        for path in sorted(directory.iterdir())
    ]
    (directory / "SHA256SUMS").write_text("".join(sums))
    sign_file(signer, directory / "SHA256SUMS")


def test_a_runtime_named_builds_is_checked_as_a_runtime(tmp_path: Path, farm_pub: Path, capsys) -> None:
    """runtimes/builds/1.0/debian-12/x86_64/2 is runtime "builds"'s build 2, not a Python
    build builds/1.0/... of a store at runtimes/."""
    runtime_dir = "runtimes/builds/1.0/debian-12/x86_64"
    build = tmp_path / "store" / runtime_dir / "2"
    write_runtime_build(build, "builds", 2, KeyFileSigner(farm_pub.with_suffix(".pem")))
    assert run_cli(capsys, "verify", str(build), "--pubkey", str(farm_pub))[:2] == (0, f"{build}: OK\n")
    shutil.copytree(build, build.with_name("3"))
    status, out, _ = run_cli(capsys, "verify", str(build.with_name("3")), "--pubkey", str(farm_pub))
    assert (status, out.splitlines()) == (
        1,
        [f"manifest.json: the build of {runtime_dir}/2, found at {runtime_dir}/3"],
    )
