"""A runtime's .deb and .rpm declare what its binaries need, versioned, as the Python build's
packages do (builder_image/driver/depends.py, the one copy of that code): a fake runtime tree
of gcc-built objects (a bundled CPython whose interpreter links the tree's own libpython, an
OpenSSL 3 extension, a wheel's extension with its bundled library) packaged with the real
dpkg-shlibdeps, dpkg-deb and rpmbuild. A library that comes from no package fails the build,
naming the file that needs it: dpkg-shlibdeps asks this machine's dpkg database, the .rpm's
check an rpm database made for the test (tests/rpm_database.py: this machine's own is empty) in
which a package provides the libraries this machine's packages do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from compiled import SSL_C, gcc
from rpm_database import capabilities, rpm_database

from buildfarm.runtimes.build import RuntimeBuildError
from buildfarm.runtimes.package import make_artifacts

TOOLS = ("gcc", "dpkg-shlibdeps", "dpkg-deb")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in TOOLS) or not Path("/usr/include/openssl/ssl.h").exists(),
    reason="needs gcc, libssl-dev and dpkg-dev (scripts/setup installs them)",
)
needs_rpm = pytest.mark.skipif(
    not (shutil.which("rpmbuild") and shutil.which("rpm")), reason="needs rpm (Debian package rpm)"
)

PREFIX = "/opt/runtimes/svc/2.1.0"
LIBPYTHON = "libpython3.13.so.1.0"
BUNDLED = "libbundled-1a2b3c4d.so.1.0"  # a manylinux wheel's library, in <package>.libs/
SITE = "lib/python3.13/site-packages"
LIBRARY_C = "int library_call(void) { return 0; }\n"
CALLER_C = "int library_call(void);\nint main(void) { return library_call(); }\n"
SYSTEM_LIBRARIES = ("libc.so.6", "libssl.so.3", "libcrypto.so.3")  # what runtime_root needs of this machine


@pytest.fixture(scope="module")
def system_rpmdb(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An rpm database whose one package provides SYSTEM_LIBRARIES, as an rpm platform's do."""
    return rpm_database(tmp_path_factory.mktemp("rpmdb"), capabilities(SYSTEM_LIBRARIES))


def runtime_root(tmp_path: Path) -> Path:
    """root/<prefix>: python/ (the bundled CPython: bin/python3.13 -> python/lib/libpython by
    the runpath $ORIGIN/../lib, an _ssl extension needing OpenSSL 3), the venv's bin/python
    symlink, and a wheel's extension linking the library the wheel bundles."""
    root = tmp_path / "root"
    tree = root / PREFIX.lstrip("/")
    libpython = tree / "python" / "lib" / LIBPYTHON
    gcc(tmp_path, LIBRARY_C, libpython, "-shared", f"-Wl,-soname,{LIBPYTHON}")
    gcc(tmp_path, CALLER_C, tree / "python/bin/python3.13", str(libpython), "-Wl,-rpath,$ORIGIN/../lib")
    (tree / "python/bin/python3").symlink_to("python3.13")
    dynload = tree / "python/lib/python3.13/lib-dynload"
    gcc(tmp_path, SSL_C, dynload / "_ssl.cpython-313-x86_64-linux-gnu.so", "-shared", "-lssl", "-lcrypto")
    (tree / "bin").mkdir()
    (tree / "bin" / "python").symlink_to("../python/bin/python3")
    bundled = tree / SITE / "pkg.libs" / BUNDLED
    gcc(tmp_path, LIBRARY_C, bundled, "-shared", f"-Wl,-soname,{BUNDLED}")
    extension = tree / SITE / "pkg" / "_native.so"
    gcc(tmp_path, CALLER_C, extension, "-shared", str(bundled), "-Wl,-rpath,$ORIGIN/../pkg.libs")
    return root


def manifest(platform: str) -> dict:
    return {
        "runtime": {"name": "svc", "version": "2.1.0", "prefix": PREFIX},
        "platform": platform,
        "arch": "x86_64",
        "build": 1,
        "python": {"version": "3.13.5"},
        "packages": [{"name": "pkg", "version": "1.0"}],
    }


def output_of(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_deb_depends_are_versioned_and_leave_out_the_trees_own_libraries(tmp_path: Path) -> None:
    _, deb = make_artifacts(runtime_root(tmp_path), manifest("debian-12"), tmp_path)
    entries = output_of(["dpkg-deb", "-f", str(deb), "Depends"]).strip().split(", ")
    # Versioned by the symbols the binaries use: apt cannot install it next to an older OpenSSL.
    assert any(re.fullmatch(r"libssl3(t64)? \(>= 3\.[0-9.]+\)", entry) for entry in entries), entries
    assert any(re.fullmatch(r"libc6 \(>= [^)]+\)", entry) for entry in entries), entries
    # libpython and the wheel's library are in the package itself.
    assert not any("python" in entry or "bundled" in entry for entry in entries), entries


def root_needing_a_library_from_no_package(tmp_path: Path) -> Path:
    """A runtime root whose extension module needs libfoo.so.1, found through its runpath
    outside any package."""
    root = runtime_root(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "libfoo.so.1"
    gcc(tmp_path, LIBRARY_C, elsewhere, "-shared", "-Wl,-soname,libfoo.so.1")
    module = root / PREFIX.lstrip("/") / SITE / "_foo.so"
    gcc(tmp_path, CALLER_C, module, "-shared", str(elsewhere), f"-Wl,-rpath,{elsewhere.parent}")
    return root


def test_a_library_from_no_package_fails_the_deb_naming_the_file(tmp_path: Path) -> None:
    root = root_needing_a_library_from_no_package(tmp_path)
    with pytest.raises(RuntimeBuildError) as failure:
        make_artifacts(root, manifest("debian-12"), tmp_path)
    message = str(failure.value)
    assert "libfoo.so.1" in message and f"{PREFIX}/{SITE}/_foo.so" in message, message
    assert str(root) not in message  # the file as installed, not the staging root
    assert not list(tmp_path.glob("out-*/*.deb"))
    assert not (root / "DEBIAN").exists()


@needs_rpm
def test_rpm_requires_come_from_the_binaries_without_the_trees_own_libraries(
    tmp_path: Path, system_rpmdb: str
) -> None:
    _, rpm = make_artifacts(runtime_root(tmp_path), manifest("rhel-9"), tmp_path, system_rpmdb)
    requires = output_of(["rpm", "-qp", "--requires", str(rpm)]).splitlines()
    assert "libssl.so.3(OPENSSL_3.0.0)(64bit)" in requires, requires
    assert "libcrypto.so.3(OPENSSL_3.0.0)(64bit)" in requires, requires
    assert any(line.startswith("libc.so.6(GLIBC_") for line in requires), requires
    assert not any("libpython" in line or "bundled" in line for line in requires), requires
    # Nothing in the prefix is offered to other packages: the package provides its name only.
    provides = output_of(["rpm", "-qp", "--provides", str(rpm)]).splitlines()
    assert [line.split()[0] for line in provides] == ["runtime-svc-2.1.0", "runtime-svc-2.1.0(x86-64)"]


@needs_rpm
def test_a_library_no_package_provides_fails_the_rpm_naming_the_file(
    tmp_path: Path, system_rpmdb: str
) -> None:
    """rpm alone would record libfoo.so.1()(64bit) and no dnf or zypper could install the .rpm."""
    root = root_needing_a_library_from_no_package(tmp_path)
    with pytest.raises(RuntimeBuildError) as failure:
        make_artifacts(root, manifest("rhel-9"), tmp_path, system_rpmdb)
    message = str(failure.value)
    assert message.startswith("making the .rpm: no installed package in the rpm database"), message
    assert message.endswith(f": libfoo.so.1 (libfoo.so.1()(64bit)), needed by {PREFIX}/{SITE}/_foo.so")
    assert str(root) not in message  # the file as installed, not the staging root
    assert not list(tmp_path.glob("out-*/*.rpm")) and not (tmp_path / "rpmbuild").exists()
