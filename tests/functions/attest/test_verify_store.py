"""The store-level parts of `buildfarm verify` (buildfarm.attest.verify_store): where a build
directory's store root is, and which build directories versions.json lists."""

from __future__ import annotations

import json

import pytest

from buildfarm.attest.verify_build import open_build
from buildfarm.attest.verify_store import (
    check_catalog_sums,
    check_home,
    published_builds,
    store_root_of,
    verify_store,
)


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
