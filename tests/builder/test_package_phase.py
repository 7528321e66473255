"""The package phase on a small staged tree: the tarball and the .deb are made side by side
(packages.package), with real tarfile and dpkg-deb; a failing dpkg-deb fails the phase after
the tarball is finished, naming the phase."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from driver import errors, packages, process

pytestmark = pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb (Debian host)")

VERSION = "3.13.5"
PREFIX = "/opt/python/3.13.5"


def _build(tmp_path: Path) -> SimpleNamespace:
    destdir = tmp_path / "staging"
    tree = destdir / PREFIX.lstrip("/")
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "python3.13").write_bytes(b"\x7fELF not really, but bytes to compress\n" * 4096)
    (tree / "lib" / "python3.13").mkdir(parents=True)
    (tree / "lib" / "python3.13" / "os.py").write_text("# the standard library\n" * 1000)
    src = tmp_path / "src"
    src.mkdir()
    (src / "LICENSE").write_text("PSF license text\n")
    return SimpleNamespace(
        spec={"platform": "debian-12", "arch": "x86_64", "build": 1},
        version=VERSION,
        prefix=PREFIX,
        tree=str(tree),
        destdir=str(destdir),
        work=str(tmp_path),
        src=str(src),
        out=str(tmp_path / "out"),
        platform={"package_format": "deb", "runtime_dependencies": ["libc6"]},
        log=process.Log(str(tmp_path / "build.log")),
        env=None,
        artifacts=[],
    )


def test_package_writes_the_tarball_and_the_deb_side_by_side(tmp_path, monkeypatch):
    build = _build(tmp_path)
    threads = {}
    write_tarball = packages.write_tarball

    def recording_write_tarball(tree, output):
        threads["tarball"] = threading.current_thread()
        write_tarball(tree, output)

    monkeypatch.setattr(packages, "write_tarball", recording_write_tarball)
    packages.package(build)

    kinds = [kind for kind, _path in build.artifacts]
    assert kinds == ["tarball", "deb"]
    assert threads["tarball"] is not threading.main_thread()
    tarball, deb = (Path(path) for _kind, path in build.artifacts)
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
        assert {"python/bin/python3.13", "python/lib/python3.13/os.py"} <= names
        assert all(member.uid == 0 and member.uname == "root" for member in archive.getmembers())
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "./opt/python/3.13.5/bin/python3.13" in listing
    field = subprocess.run(["dpkg-deb", "-f", str(deb), "Package"], capture_output=True, text=True)
    assert field.stdout.strip() == "python-3.13.5"
    # gzip at the tarball's level 6, not dpkg-deb's default 9 (4x the time for 1% less).
    members = subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "data.tar.gz" in members.split()
    build.log.close()
    assert "-Zgzip -z6 --build" in (tmp_path / "build.log").read_text()


def test_a_failing_deb_fails_the_phase_after_the_tarball_is_done(tmp_path, monkeypatch):
    build = _build(tmp_path)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dpkg-deb").write_text("#!/bin/sh\necho 'dpkg-deb: error: no space left' >&2\nexit 2\n")
    (fake_bin / "dpkg-deb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")

    with pytest.raises(errors.BuildError) as failure:
        packages.package(build)

    assert failure.value.phase == "package"
    tarball = Path(build.out) / packages.tarball_name(VERSION, "debian-12", "x86_64")
    with tarfile.open(tarball) as archive:  # complete, not cut off by the failure
        assert "python/bin/python3.13" in archive.getnames()
    assert build.artifacts == []
