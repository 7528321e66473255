"""The chroot runner builds 3.13.5 for debian-11 (bullseye) and the result runs in its own
fresh bullseye root. The build is the `chroot_build` fixture (tests/conftest.py: taken from
the farm store's first run when the session runs it, else built alone)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile

import pytest
from builder_helpers import needed_sonames, packages_providing

from buildfarm import roots
from buildfarm.models import Manifest
from buildfarm.platforms import load_registry

pytestmark = [pytest.mark.build, pytest.mark.root, pytest.mark.farm]

PREFIX = "/opt/python/3.13.5"


def test_chroot_build_is_complete(chroot_build):
    manifest = json.loads((chroot_build.dir / "manifest.json").read_text())
    model = Manifest.model_validate(manifest)
    assert {a.file for a in model.artifacts} == {
        "python-3.13.5-debian-11-x86_64.tar.gz",
        "python-3.13.5_1_amd64.deb",
    }
    assert model.spec.optimization == "none"
    assert manifest["platform"]["glibc"] == "glibc-2.31"  # built against bullseye, not the host
    assert manifest["python"]["compiler"].startswith("GCC 10.")
    assert manifest["builder_image"] == "chroot:bullseye"
    assert manifest["modules"]["missing"] == {}
    assert "phase make done in" in chroot_build.output


def test_result_runs_in_its_own_fresh_root(chroot_build, fresh_root):
    root = fresh_root("bullseye")
    deb = chroot_build.dir / "python-3.13.5_1_amd64.deb"
    shutil.copy(deb, root / "tmp" / deb.name)
    modules = list(load_registry().expected_modules("debian-11"))
    with roots.mounted(root):
        roots.run_in_root(root, ["apt-get", "update", "-qq"], roots.APT_ENV)
        roots.run_in_root(root, ["apt-get", "install", "-y", "-qq", f"/tmp/{deb.name}"], roots.APT_ENV)
        out = roots.run_in_root(
            root,
            [
                f"{PREFIX}/bin/python3",
                "-c",
                "import sys, importlib, sysconfig; [importlib.import_module(m) for m in sys.argv[1:]]; "
                "print(sys.version.split()[0], sysconfig.get_config_var('CONFIG_ARGS'))",
                *modules,
            ],
        ).stdout
        assert out.startswith("3.13.5 ") and "--enable-shared" in out
        roots.run_in_root(root, [f"{PREFIX}/bin/pip3", "--version"])
        roots.run_in_root(root, ["apt-get", "remove", "-y", "-qq", "python-3.13.5"], roots.APT_ENV)
    assert not (root / "opt" / "python" / "3.13.5").exists()


def test_bullseye_runtime_dependencies_are_declared(chroot_build, tmp_path):
    """Every NEEDED library resolves, in the bullseye build root, to a declared package."""
    with tarfile.open(chroot_build.dir / "python-3.13.5-debian-11-x86_64.tar.gz") as archive:
        archive.extractall(tmp_path, filter="tar")
    build_root = roots.roots_dir() / "debian-11-x86_64"
    owners = packages_providing(needed_sonames(tmp_path / "python"), build_root)
    # The tree was found: its extension modules need zlib and OpenSSL, the interpreter libc.
    assert {"libc.so.6", "libz.so.1"} <= set(owners) and any(s.startswith("libssl.so.") for s in owners)
    declared = set(load_registry().get("debian-11").runtime_dependencies)
    assert {s: p for s, p in owners.items() if p.split(":")[0] not in declared} == {}


def test_bullseye_deb_depends_come_from_its_binaries(chroot_build):
    """bullseye's own dpkg-shlibdeps (dpkg 1.20) made the Depends: versioned, only packages the
    registry names, and the manifest records them."""
    deb = chroot_build.dir / "python-3.13.5_1_amd64.deb"
    depends = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout.strip()
    entries = depends.split(", ")
    assert any(re.fullmatch(r"libssl1\.1 \(>= 1\.1\.[0-9a-z.]+\)", entry) for entry in entries), entries
    assert {entry.split()[0] for entry in entries} <= set(
        load_registry().get("debian-11").runtime_dependencies
    )
    manifest = json.loads((chroot_build.dir / "manifest.json").read_text())
    assert manifest["platform"]["runtime_dependencies"] == entries
