"""A runtime's packages from a small staging root, with the real dpkg-deb and rpmbuild: the
tree at its prefix (symlinks kept); a tree without binaries declares no library dependencies
(what the binaries need: test_runtime_package_dependencies.py)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    # No Depends: the registry's unversioned names are not what this tree's binaries need.
    assert fields == "Package: runtime-svc-2.1.0\nVersion: 2.1.0-3\nArchitecture: arm64\n"
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
    requires = listing(["rpm", "-qp", "--requires", str(rpm)]).splitlines()
    assert requires and all(line.startswith("rpmlib(") for line in requires), requires
    files = listing(["rpm", "-qplv", str(rpm)])
    assert f"{PREFIX}/bin/python -> ../python/bin/python3" in files and f"{PREFIX}/pyvenv.cfg" in files


@pytest.mark.skipif(not shutil.which("rpmbuild"), reason="needs rpmbuild (Debian package rpm)")
def test_the_rpm_requires_no_path_of_its_own(tmp_path: Path) -> None:
    """A venv's console script runs the venv's python: rpm's script dependency generator would
    require #!<prefix>/bin/python, a file of the package itself. A system path stays required."""
    root = staging_root(tmp_path)
    tree = root / PREFIX.lstrip("/")
    for name, shebang in (("app", f"{PREFIX}/bin/python"), ("tool", f"{PREFIX}/python/bin/python3.13"),
                          ("hook", "/bin/sh")):  # fmt: skip
        (tree / "bin" / name).write_text(f"#!{shebang}\nprint('hello')\n")
        (tree / "bin" / name).chmod(0o755)
    _, rpm = make_artifacts(root, manifest("rhel-9", "x86_64"), tmp_path)
    requires = listing(["rpm", "-qp", "--requires", str(rpm)]).splitlines()
    assert not any(line.startswith(PREFIX) for line in requires), requires
    assert "/bin/sh" in requires, requires


@pytest.fixture(params=[0o077, 0o002], ids=["umask-077", "umask-002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The builder's umask while the staging root is made and packaged."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def staged_under(work: Path, umask: int) -> Path:
    """staging_root with what a build under `umask` leaves: an executable (0777 & ~umask), a
    file with a stray setuid bit, directories and files as the umask made them."""
    root = staging_root(work)
    tree = root / PREFIX.lstrip("/")
    (tree / "bin" / "app").write_text("#!/bin/sh\n")
    (tree / "bin" / "app").chmod(0o777 & ~umask)
    (tree / "bin" / "odd").write_text("")
    (tree / "bin" / "odd").chmod(0o4755)
    return root


def modes_of(members: list[tarfile.TarInfo]) -> dict[str, int]:
    """{path: mode} of an archive's members but symlinks ("." for the .deb's root)."""
    return {m.name.removeprefix("./").rstrip("/") or ".": m.mode for m in members if not m.issym()}


EXPECTED = {
    "opt": 0o755, "opt/runtimes": 0o755, "opt/runtimes/svc": 0o755, PREFIX.lstrip("/"): 0o755,
    f"{PREFIX.lstrip('/')}/bin": 0o755, f"{PREFIX.lstrip('/')}/bin/app": 0o755,
    f"{PREFIX.lstrip('/')}/bin/odd": 0o755, f"{PREFIX.lstrip('/')}/pyvenv.cfg": 0o644,
}  # fmt: skip


def test_modes_and_owners_do_not_follow_the_builders_umask(tmp_path: Path, umask: int) -> None:
    """Under umask 077 the tarball's opt/ was 0700 (`tar -xzf FILE -C /` closed /opt) and
    dpkg-deb refused the 0700 control directory; under 002 files were group-writable."""
    tarball, deb = make_artifacts(staged_under(tmp_path, umask), manifest("debian-12", "x86_64"), tmp_path)
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
    assert modes_of(members) == EXPECTED
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    filesystem = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(filesystem.stdout)) as archive:
        members = archive.getmembers()
    assert modes_of(members) == {".": 0o755, **EXPECTED}
    assert {(m.uname, m.gname) for m in members} == {("root", "root")}


@pytest.mark.skipif(not shutil.which("rpmbuild"), reason="needs rpmbuild (Debian package rpm)")
def test_the_rpms_modes_do_not_follow_the_builders_umask(tmp_path: Path, umask: int) -> None:
    _, rpm = make_artifacts(staged_under(tmp_path, umask), manifest("rhel-9", "x86_64"), tmp_path)
    query = "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]"
    files = listing(["rpm", "-qp", "--queryformat", query, str(rpm)])
    for line in ("-rwxr-xr-x root bin/app", "-rw-r--r-- root pyvenv.cfg", "drwxr-xr-x root bin",
                 "-rwxr-xr-x root bin/odd", "drwxr-xr-x root "):  # fmt: skip
        mode, owner, path = line.split(" ")
        assert f"{mode} {owner} {PREFIX}/{path}".rstrip("/") + "\n" in files, files
