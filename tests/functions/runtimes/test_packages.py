"""A runtime's packages from a small staging root, with the real dpkg-deb and rpmbuild: the
tree at its prefix (symlinks kept), the platform's runtime libraries as dependencies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from buildfarm.platforms import load_registry
from buildfarm.runtimes.package import make_artifacts

PREFIX = "/opt/runtimes/svc/2.1.0"


def staging_root(work: Path) -> Path:
    root = work / "root"
    tree = root / PREFIX.lstrip("/")
    (tree / "bin").mkdir(parents=True)
    (tree / "pyvenv.cfg").write_text(f"home = {PREFIX}/python/bin\n")
    (tree / "bin" / "python").symlink_to("../python/bin/python3")
    return root


def manifest(platform: str, arch: str) -> dict:
    return {
        "runtime": {"name": "svc", "version": "2.1.0", "prefix": PREFIX},
        "platform": platform,
        "arch": arch,
        "build": 3,
        "python": {"version": "3.13.5"},
        "packages": [{"name": "six", "version": "1.17.0"}],
    }


def listing(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_the_deb_holds_the_tree_at_its_prefix(tmp_path: Path) -> None:
    tarball, deb = make_artifacts(staging_root(tmp_path), manifest("debian-12", "aarch64"), tmp_path)
    assert deb.name == "runtime-svc-2.1.0_2.1.0-3_arm64.deb"
    fields = listing(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture", "Depends"])
    assert "Package: runtime-svc-2.1.0\nVersion: 2.1.0-3\nArchitecture: arm64\n" in fields
    assert ", ".join(load_registry().get("debian-12").runtime_dependencies) in fields
    contents = listing(["dpkg-deb", "-c", str(deb)])
    assert f".{PREFIX}/bin/python -> ../python/bin/python3" in contents and "DEBIAN" not in contents
    assert f"{PREFIX.lstrip('/')}/pyvenv.cfg" in listing(["tar", "-tzf", str(tarball)])
    assert not (tmp_path / "root" / "DEBIAN").exists()


@pytest.mark.skipif(not shutil.which("rpmbuild"), reason="needs rpmbuild (Debian package rpm)")
def test_the_rpm_of_an_rpm_platform(tmp_path: Path) -> None:
    _, rpm = make_artifacts(staging_root(tmp_path), manifest("rhel-9", "x86_64"), tmp_path)
    assert rpm.name == "runtime-svc-2.1.0-2.1.0-3.x86_64.rpm"
    info = listing(["rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}\n", str(rpm)])
    assert info.strip() == "runtime-svc-2.1.0 2.1.0 3 x86_64"
    requires = listing(["rpm", "-qp", "--requires", str(rpm)]).split()
    assert set(load_registry().get("rhel-9").runtime_dependencies) <= set(requires)
    files = listing(["rpm", "-qplv", str(rpm)])
    assert f"{PREFIX}/bin/python -> ../python/bin/python3" in files and f"{PREFIX}/pyvenv.cfg" in files
