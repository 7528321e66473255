"""The store-level parts of `buildfarm verify` (buildfarm.attest.verify_store): where a build
directory's store root is, and which build directories versions.json lists."""

from __future__ import annotations

import pytest

from buildfarm.attest.verify_store import published_builds, store_root_of


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
        ("builds/3.13.5/debian-12/x86_64/1", {"python.tar.gz": "1" * 64}),
        ("runtimes/r/1.0/debian-12/x86_64/2", {"r.tar.gz": "2" * 64}),
    ]
    assert published_builds([]) == [] and published_builds({"builds": "x"}) == []
