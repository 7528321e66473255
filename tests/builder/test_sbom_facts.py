"""The sbom phase (driver/sbom.py): the built python runs builder_image/sbom_facts/ and the
driver stores its JSON in manifest.json's "sbom_facts", which the publishing side renders as
a CycloneDX SBOM (buildfarm.attest.sbom). The last tests read the farm's real debian-12 build."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from builder_helpers import BUILDER_IMAGE
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from driver import process, sbom
from driver.errors import BuildError

from buildfarm.attest.sbom import SbomFacts, make_sbom
from buildfarm.attest.verify_build import LocalBuild, verify_build
from buildfarm.models import Attestations

FINGERPRINT = "7169605F62C751356D054A26A821E680E5FA6305"
# Debian's version of a package: [epoch:]upstream[-revision], e.g. 3.0.17-1~deb12u2.
DEBIAN_VERSION = re.compile(r"([0-9]+:)?[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?")


def _build(tmp_path: Path, bolt: dict | None = None) -> SimpleNamespace:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    return SimpleNamespace(
        tree=str(tree),
        src=str(tmp_path / "src"),
        python_bin="python3.13",
        platform={"package_format": "deb"},
        bolt=bolt,
        env=None,
        log=process.Log(str(tmp_path / "build.log")),
        sbom_facts={},
    )


def test_the_collector_runs_from_builder_image_with_the_built_python(tmp_path):
    build = _build(tmp_path, bolt={"tools": "/usr/lib/llvm-16/bin/", "arches": ["x86_64"]})
    argv = sbom.collector_argv(build)
    assert argv[:6] == [f"{build.tree}/bin/python3.13", "-S", "-E", "-B", "-m", "sbom_facts.collect"]
    assert argv[6:] == [
        "--source-tree", build.src, "--installed-tree", build.tree, "--package-kind", "deb",
        "--bolt", "/usr/lib/llvm-16/bin/llvm-bolt",
    ]  # fmt: skip
    assert Path(sbom.BUILDER_IMAGE) == BUILDER_IMAGE
    assert (BUILDER_IMAGE / "sbom_facts" / "collect.py").is_file()
    assert "--bolt" not in sbom.collector_argv(_build(tmp_path / "plain"))


def test_unexplained_sonames_fail_the_build_naming_them():
    facts = {"distro_id": "debian", "linked": [], "unexplained_sonames": ["libfoo.so.1", "libbar.so.2"]}
    with pytest.raises(BuildError) as raised:
        sbom.parse_facts(json.dumps(facts))
    assert raised.value.phase == "sbom"
    assert raised.value.reason == (
        "the build needs libfoo.so.1, libbar.so.2 that no debian package ships (or the loader cannot find)"
    )
    with pytest.raises(BuildError, match="printed no JSON"):
        sbom.parse_facts("Traceback (most recent call last):\n")
    with pytest.raises(BuildError, match="lacks unexplained_sonames"):
        sbom.parse_facts("{}")
    assert sbom.parse_facts('{"unexplained_sonames": [], "linked": []}')["linked"] == []


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system")
def test_the_phase_records_the_facts_of_a_tree(tmp_path):
    """A 'built' tree whose bin/python3.13 is this interpreter (3.9 or newer, as every python
    the farm builds): the phase runs the collector with it and keeps its JSON."""
    build = _build(tmp_path)
    shutil.copy(Path(sys.executable).resolve(), Path(build.tree) / "bin" / "python3.13")
    sbom.phase(build)
    assert build.sbom_facts["unexplained_sonames"] == []
    assert "libc6" in {package["name"] for package in build.sbom_facts["linked"]}
    assert build.sbom_facts["bundled"] == []  # an empty source tree
    build.log.close()
    assert "links: libc6 " in Path(build.log.path).read_text()


def _installed_version(package: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


@pytest.mark.farm
def test_a_real_build_records_its_sbom_facts_and_they_make_a_valid_sbom(host_build):
    """debian-12 3.13.5 build 1 of the farm (host runner: this machine's packages)."""
    manifest = json.loads((host_build.dir / "manifest.json").read_text())
    facts = manifest["sbom_facts"]
    assert (facts["distro_id"], facts["distro_version"], facts["unexplained_sonames"]) == ("debian", "12", [])
    linked = {package["name"]: package for package in facts["linked"]}
    libraries = {"libssl3": "libssl.so.3", "libsqlite3-0": "libsqlite3.so.0", "libffi8": "libffi.so.8"}
    for name, soname in libraries.items():
        assert DEBIAN_VERSION.fullmatch(linked[name]["version"]), linked[name]
        assert linked[name]["version"] == _installed_version(name)
        assert soname in linked[name]["sonames"] and linked[name]["kind"] == "deb"
    assert {"libc6", "zlib1g", "liblzma5", "libbz2-1.0"} <= set(linked)
    bundled = {component["name"]: component for component in facts["bundled"]}
    assert bundled["expat"]["version"] == "2.7.1" and bundled["mpdecimal"]["version"] == "2.5.1"
    assert "compiler" in {tool["role"] for tool in facts["toolchain"]}
    signature = manifest["source_signature"]
    assert (signature["status"], signature["fingerprint"], signature["key"]) == (
        "verified",
        FINGERPRINT,
        "keys/3.13.asc",
    )
    del facts["unexplained_sonames"]
    spec = manifest["spec"]
    document = make_sbom(
        SbomFacts.model_validate(
            {
                **facts,
                "python_version": spec["version"],
                "platform": spec["platform"],
                "arch": spec["arch"],
                "build": spec["build"],
                "source": {**spec["source"], "signature": f"verified by {signature['fingerprint']}"},
                "created": manifest["built_at"],
            }
        )
    )
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    purls = {component.get("purl", "") for component in json.loads(document)["components"]}
    assert f"pkg:deb/debian/libssl3@{linked['libssl3']['version']}?arch=amd64&distro=debian-12" in {
        purl.replace("%2B", "+").replace("%7E", "~") for purl in purls
    }


@pytest.mark.farm
def test_a_real_build_lists_its_attestations_and_they_are_there(host_build):
    """manifest.json lists the SBOM and the rest (issue 15); the publish side wrote exactly
    those, and the build verifies with the store's key."""
    manifest = json.loads((host_build.dir / "manifest.json").read_text())
    assert manifest["attestations"] == Attestations().model_dump()
    assert manifest["attestations"]["sbom"] == "sbom.cdx.json"
    for name in manifest["attestations"].values():
        assert (host_build.dir / name).is_file(), name
    sums = (host_build.dir / manifest["attestations"]["checksums"]).read_text()
    listed = {line.split("  ", 1)[1] for line in sums.splitlines()}
    assert {
        manifest["attestations"]["sbom"],
        manifest["attestations"]["provenance"],
        "manifest.json",
    } <= listed
    keys = [path.read_bytes() for path in (host_build.store / "keys").glob("*.pub")]
    assert keys and verify_build(LocalBuild(host_build.dir), keys) == []
