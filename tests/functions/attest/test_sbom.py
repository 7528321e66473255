"""The SBOM: toolchain facts, the CycloneDX document, its schema validation."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from buildfarm.attest.build_files import sbom_document
from buildfarm.attest.bundled import bundled_components
from buildfarm.attest.linked import DpkgOwner, LinkedPackage, OwnedBy
from buildfarm.attest.sbom import SbomFacts, SourceFacts, make_sbom
from buildfarm.attest.toolchain import Tool, parse_version, toolchain

SOURCE_SHA256 = "12e7cb170ad2d1a69aee96a1cc7fc8de5b1e97a2bdac51683a3db016ec9a2996"
SOURCE_URL = "https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tar.xz"
LINKED = (
    LinkedPackage("deb", "libc6", "2.36-9+deb12u9", "amd64", ("libc.so.6", "libm.so.6")),
    LinkedPackage("deb", "libssl3", "3.0.16-1~deb12u1", "amd64", ("libcrypto.so.3", "libssl.so.3")),
)
TOOLS = (
    Tool("compiler", "gcc", "12.2.0", OwnedBy("deb", "gcc-12", "12.2.0-14+deb12u1", "amd64")),
    Tool("linker", "binutils", "2.40"),
    Tool("bolt", "llvm-bolt", "16.0.6", OwnedBy("deb", "bolt-16", "1:16.0.6-15~deb12u1", "amd64")),
)


@pytest.mark.parametrize(
    ("role", "output", "version"),
    [
        ("compiler", "gcc (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright (C) 2022", "12.2.0"),
        ("compiler", "gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-20)\n", "8.5.0"),
        ("compiler", "gcc (SUSE Linux) 7.5.0\n", "7.5.0"),
        ("linker", "GNU ld (GNU Binutils for Debian) 2.40\n", "2.40"),
        ("linker", "GNU ld version 2.30-123.el8\n", "2.30"),
        (
            "linker",
            "GNU ld (GNU Binutils; SUSE Linux Enterprise 15) 2.41.0.20230908-150100.7.46\n",
            "2.41.0.20230908",
        ),
        ("bolt", "Debian LLVM version 16.0.6\n  Optimized build.\nBOLT revision <unknown>\n", "16.0.6"),
        ("bolt", "LLVM (http://llvm.org/):\n  LLVM version 19.1.7\n  Optimized build.\n", "19.1.7"),
        ("compiler", "clang version 16.0.6\n", None),
    ],
)
def test_tool_versions_as_each_distribution_prints_them(role: str, output: str, version: str | None) -> None:
    assert parse_version(role, output) == version


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_this_machines_toolchain() -> None:
    tools = {tool.role: tool for tool in toolchain(DpkgOwner() if shutil.which("dpkg-query") else None)}
    full = subprocess.run(
        ["gcc", "-dumpfullversion"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tools["compiler"].version == full
    assert tools["linker"].name == "binutils"
    if shutil.which("dpkg-query"):
        assert tools["compiler"].package.name.startswith("gcc")
    assert toolchain(env={"PATH": "/nonexistent"}) == []


def facts(bundled=(), **changes) -> SbomFacts:
    values = {
        "python_version": "3.13.5",
        "platform": "debian-12",
        "arch": "x86_64",
        "build": 3,
        "distro_id": "debian",
        "distro_version": "12",
        "source": SourceFacts(url=SOURCE_URL, sha256=SOURCE_SHA256, signature="missing"),
        "bundled": tuple(bundled),
        "linked": LINKED,
        "toolchain": TOOLS,
        "created": datetime.datetime(2025, 6, 11, 14, 0, tzinfo=datetime.UTC),
    }
    return SbomFacts(**{**values, **changes})


def validate(document: str) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document)
    assert error is None, error


def components(document: dict) -> dict[str, dict]:
    return {component["bom-ref"]: component for component in document["components"]}


def test_sbom_of_3_13_5_validates_and_lists_everything(cpython_tree) -> None:
    text = make_sbom(facts(bundled_components(cpython_tree("3.13.5"))))
    validate(text)
    document = json.loads(text)
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")
    assert document["metadata"]["timestamp"] == "2025-06-11T14:00:00+00:00"
    assert document["metadata"]["component"]["bom-ref"] == "build"
    found = components(document)
    cpython = found["cpython"]
    assert cpython["version"] == "3.13.5"
    assert cpython["hashes"] == [{"alg": "SHA-256", "content": SOURCE_SHA256}]
    assert cpython["purl"] == f"pkg:generic/cpython@3.13.5?download_url={SOURCE_URL}"
    assert {"name": "buildfarm:source-signature", "value": "missing"} in cpython["properties"]
    nested = {c["name"]: c["version"] for c in cpython["components"]}
    assert nested["expat"] == "2.7.1" and nested["mpdecimal"] == "2.5.1"
    assert found["system:libssl3:amd64"]["purl"] == (
        "pkg:deb/debian/libssl3@3.0.16-1~deb12u1?arch=amd64&distro=debian-12"
    )
    sonames = {p["value"] for p in found["system:libssl3:amd64"]["properties"]}
    assert sonames == {"libssl.so.3", "libcrypto.so.3"}
    assert found["toolchain:gcc"]["scope"] == "excluded"
    assert found["toolchain:llvm-bolt"]["version"] == "16.0.6"
    root = next(d for d in document["dependencies"] if d["ref"] == "build")
    assert set(root["dependsOn"]) == {"cpython", "system:libc6:amd64", "system:libssl3:amd64"}


def test_sbom_is_deterministic_and_facts_travel_as_json(cpython_tree) -> None:
    made = facts(bundled_components(cpython_tree("3.13.5")))
    again = SbomFacts.model_validate_json(made.model_dump_json())
    assert again == made
    assert make_sbom(again) == make_sbom(made)
    other = make_sbom(facts(bundled_components(cpython_tree("3.13.5")), build=4))
    assert json.loads(other)["serialNumber"] != json.loads(make_sbom(made))["serialNumber"]


def test_sbom_of_an_older_tree_with_unversioned_code_validates(cpython_tree) -> None:
    text = make_sbom(
        facts(bundled_components(cpython_tree("3.9.2")), python_version="3.9.2", linked=(), toolchain=())
    )
    validate(text)
    nested = {c["name"]: c.get("version") for c in components(json.loads(text))["cpython"]["components"]}
    assert nested == {"expat": "2.2.8", "keccak-code-package": None, "libb2": None, "mpdecimal": "2.5.0"}


def test_the_validator_can_fail() -> None:
    document = json.loads(make_sbom(facts()))
    document["components"][0]["type"] = "not-a-type"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document)) is not None


def test_facts_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="sha256"):
        facts(source=SourceFacts(url=SOURCE_URL, sha256="ABC"))
    with pytest.raises(ValueError, match="python_version"):
        facts(python_version="3.13; rm -rf /")


BUILDER_IMAGE = Path(__file__).resolve().parents[3] / "builder_image"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system")
def test_collected_facts_with_the_standard_library_alone_make_a_valid_sbom(
    cpython_tree, tmp_path: Path
) -> None:
    """The collector runs without site-packages (-S: no pydantic, no cyclonedx), from
    builder_image/ as the driver runs it; its JSON, as manifest.json carries it, plus the
    planned spec make a valid SBOM on the publish side (build_files.sbom_document)."""
    installed = tmp_path / "installed" / "bin"
    installed.mkdir(parents=True)
    shutil.copy(Path(sys.executable).resolve(), installed / "python3")
    argv = [
        sys.executable,
        "-S",
        "-E",
        "-B",
        "-m",
        "sbom_facts.collect",
        "--source-tree",
        str(cpython_tree("3.13.5")),
        "--installed-tree",
        str(installed.parent),
        "--package-kind",
        "deb",
    ]
    result = subprocess.run(argv, cwd=BUILDER_IMAGE, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    collected = json.loads(result.stdout)
    assert collected["unexplained_sonames"] == []
    assert "libc6" in {package["name"] for package in collected["linked"]}
    manifest = {"sbom_facts": collected, "built_at": "2025-06-11T14:00:00Z"}
    spec = {
        "version": "3.13.5",
        "platform": "debian-12",
        "arch": "x86_64",
        "build": 1,
        "source": {"url": SOURCE_URL, "sha256": SOURCE_SHA256},
    }
    document = sbom_document(manifest, spec).decode()
    validate(document)
    assert "libc6" in {component["name"] for component in json.loads(document)["components"]}
    bad = subprocess.run(
        [*argv[:6], "--source-tree", "/nonexistent", "--installed-tree", ".", "--package-kind", "deb"],
        cwd=BUILDER_IMAGE,
        capture_output=True,
        text=True,
    )
    assert (bad.returncode, bad.stderr) == (
        2,
        "collect: error: --source-tree /nonexistent: not a directory\n",
    )
