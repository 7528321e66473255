"""Bundled third-party code read from real CPython source trees."""

from __future__ import annotations

import json
from pathlib import Path

from buildfarm.attest.bundled import bundled_components, spdx_packages


def by_name(tree: Path) -> dict:
    return {component.name: component for component in bundled_components(tree)}


def test_3_13_5_headers_win_over_its_stale_spdx_file(cpython_tree) -> None:
    tree = cpython_tree("3.13.5")
    found = by_name(tree)
    assert sorted(found) == ["expat", "hacl-star", "libb2", "macholib", "mpdecimal"]
    # CPython's own SBOM still says 2.6.3, although expat.h (whose sha256 it records) is 2.7.1.
    assert spdx_packages(tree)["expat"].version == "2.6.3"
    expat = found["expat"]
    assert (expat.version, expat.version_source) == ("2.7.1", "Modules/expat/expat.h")
    assert expat.cpe == "cpe:2.3:a:libexpat_project:libexpat:2.7.1:*:*:*:*:*:*:*"
    assert expat.download_location is None  # the SPDX file's URL is for 2.6.3
    mpdecimal = found["mpdecimal"]
    assert (mpdecimal.version, mpdecimal.path) == ("2.5.1", "Modules/_decimal/libmpdec")
    assert mpdecimal.download_location.endswith("/mpdecimal-2.5.1.tar.gz")
    assert found["hacl-star"].version == "bb3d0dc8d9d15a5cd51094d5b69e70aa09005ff0"
    assert found["hacl-star"].version_source == "Modules/_hacl/refresh.sh"
    assert (found["libb2"].version, found["libb2"].version_source) == ("0.98.1", "Misc/sbom.spdx.json")
    assert found["libb2"].path == "Modules/_blake2/impl"
    macholib = found["macholib"]
    assert (macholib.version, macholib.purl, macholib.path) == (
        "1.0",
        "pkg:pypi/macholib@1.0",
        "Lib/ctypes/macholib",
    )


def test_3_11_2_without_an_spdx_file(cpython_tree) -> None:
    tree = cpython_tree("3.11.2")
    assert not (tree / "Misc/sbom.spdx.json").exists()
    found = by_name(tree)
    assert sorted(found) == ["expat", "libb2", "mpdecimal", "tiny_sha3"]
    assert found["expat"].version == "2.5.0"
    assert found["mpdecimal"].version == "2.5.1"
    assert found["tiny_sha3"].version == "dcbb3192047c2a721f5f851db591871d428036a9"
    assert (found["libb2"].version, found["libb2"].version_source) == (None, "none")


def test_3_9_2_older_layout(cpython_tree) -> None:
    found = by_name(cpython_tree("3.9.2"))
    assert sorted(found) == ["expat", "keccak-code-package", "libb2", "mpdecimal"]
    assert found["expat"].version == "2.2.8"
    assert found["mpdecimal"].version == "2.5.0"
    assert found["keccak-code-package"].version is None


def test_a_tree_without_bundled_code_lists_nothing(tmp_path: Path) -> None:
    assert bundled_components(tmp_path) == []


def test_a_header_without_a_number_gives_no_version(tmp_path: Path) -> None:
    header = tmp_path / "Modules/expat/expat.h"
    header.parent.mkdir(parents=True)
    header.write_text(
        "#define XML_MAJOR_VERSION 2\n#define XML_MINOR_VERSION x\n#define XML_MICRO_VERSION 1\n"
    )
    (tmp_path / "Misc").mkdir()
    (tmp_path / "Misc/sbom.spdx.json").write_text(
        json.dumps(
            {"packages": [{"SPDXID": "SPDXRef-PACKAGE-expat", "name": "expat", "versionInfo": "2.6.0"}]}
        )
    )
    expat = by_name(tmp_path)["expat"]
    assert (expat.version, expat.version_source, expat.cpe) == ("2.6.0", "Misc/sbom.spdx.json", None)
