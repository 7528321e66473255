"""The .deb's Depends and the .rpm's Requires come from the binaries, versioned, with the real
tools: a small staged tree of gcc-built objects (an extension needing OpenSSL 3's
OPENSSL_3.0.0 symbols, one needing zlib, an interpreter linked to the tree's own libpython)
is packaged by packages.build_deb (dpkg-shlibdeps) and packages.build_rpm (rpmbuild's
automatic requirements). A library that comes from no package fails the phase, naming the
file that needs it: dpkg-shlibdeps asks this machine's dpkg database, the .rpm's check an rpm
database made for the test (tests/rpm_database.py: this machine's own is empty) in which a
package provides the libraries this machine's packages do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from compiled import SSL_C, gcc
from driver import depends, errors, packages, process
from rpm_database import capabilities, rpm_database

TOOLS = ("gcc", "dpkg-shlibdeps", "dpkg-deb", "rpmbuild", "rpm")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in TOOLS) or not Path("/usr/include/openssl/ssl.h").exists(),
    reason="needs gcc, libssl-dev, zlib1g-dev, dpkg-dev and rpm (scripts/setup installs them)",
)

VERSION = "3.13.5"
PREFIX = "/opt/python/3.13.5"
LIBPYTHON = "libpython3.13.so.1.0"
DYNLOAD = "lib/python3.13/lib-dynload"
SOABI = "cpython-313-x86_64-linux-gnu"
ZLIB_C = "#include <zlib.h>\nconst char *uses_zlib(void) { return zlibVersion(); }\n"
LIBPYTHON_C = "int Py_Main_ish(void) { return 0; }\n"
MAIN_C = "int Py_Main_ish(void);\nint main(void) { return Py_Main_ish(); }\n"
# What the test objects need of this machine, provided by its packages (dpkg -S names them).
SYSTEM_LIBRARIES = ("libc.so.6", "libssl.so.3", "libcrypto.so.3", "libz.so.1")


@pytest.fixture(scope="module")
def system_rpmdb(tmp_path_factory) -> str:
    """An rpm database whose one package provides SYSTEM_LIBRARIES, as an rpm platform's do."""
    return rpm_database(tmp_path_factory.mktemp("rpmdb"), capabilities(SYSTEM_LIBRARIES))


def staged_tree(tmp_path: Path) -> Path:
    """staging/<prefix>: bin/python3.13 -> lib/libpython (runpath $ORIGIN/../lib, as the real
    tree), an OpenSSL and a zlib extension, an object file and a file that only looks like ELF."""
    tree = tmp_path / "staging" / PREFIX.lstrip("/")
    libpython = tree / "lib" / LIBPYTHON
    gcc(tmp_path, LIBPYTHON_C, libpython, "-shared", f"-Wl,-soname,{LIBPYTHON}")
    (tree / "lib" / "libpython3.13.so").symlink_to(LIBPYTHON)
    gcc(tmp_path, MAIN_C, tree / "bin" / "python3.13", str(libpython), "-Wl,-rpath,$ORIGIN/../lib")
    dynload = tree / DYNLOAD
    gcc(tmp_path, SSL_C, dynload / f"_ssl.{SOABI}.so", "-shared", "-lssl", "-lcrypto")
    gcc(tmp_path, ZLIB_C, dynload / f"zlib.{SOABI}.so", "-shared", "-lz")
    gcc(tmp_path, ZLIB_C, tree / "lib" / "python3.13" / "config-3.13" / "python.o", "-c")
    (tree / "lib" / "python3.13" / "notes.txt").write_bytes(b"\x7fELF but not an object\n")
    return tree


def fake_build(tmp_path: Path, package_format: str) -> SimpleNamespace:
    tree = staged_tree(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "LICENSE").write_text("PSF license text\n")
    (tmp_path / "out").mkdir()
    return SimpleNamespace(
        spec={"platform": "debian-12", "arch": "x86_64", "build": 1},
        version=VERSION,
        prefix=PREFIX,
        tree=str(tree),
        destdir=str(tmp_path / "staging"),
        work=str(tmp_path),
        src=str(tmp_path / "src"),
        out=str(tmp_path / "out"),
        platform={"package_format": package_format, "runtime_dependencies": ["libc6", "libnsl2"]},
        log=process.Log(str(tmp_path / "build.log")),
        env=None,
        artifacts=[],
    )


def test_deb_depends_are_versioned_and_leave_out_the_trees_own_library(tmp_path):
    deb = packages.build_deb(fake_build(tmp_path, "deb"))
    field = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True, check=True)
    entries = field.stdout.strip().split(", ")
    # What the binaries need, each with the version its symbols need: apt cannot install it
    # next to an older OpenSSL.
    assert any(re.fullmatch(r"libssl3(t64)? \(>= 3\.[0-9.]+\)", entry) for entry in entries), entries
    assert any(re.fullmatch(r"zlib1g \(>= [^)]+\)", entry) for entry in entries), entries
    assert any(re.fullmatch(r"libc6 \(>= [^)]+\)", entry) for entry in entries), entries
    # libpython is in the package itself; the registry's unlinked libnsl2 is not declared.
    assert not any("python" in entry or "nsl" in entry for entry in entries), entries
    # The manifest records what the package declares, read back from it.
    assert depends.declared_dependencies("deb", deb) == entries


def plant_library_from_no_package(tmp_path, build, library_left):
    """An extension module that needs libfoo.so.1, found through its runpath outside any
    package (library_left) or nowhere."""
    elsewhere = tmp_path / "elsewhere" / "libfoo.so.1"
    gcc(tmp_path, LIBPYTHON_C, elsewhere, "-shared", "-Wl,-soname,libfoo.so.1")
    module = Path(build.tree) / DYNLOAD / f"_foo.{SOABI}.so"
    gcc(tmp_path, MAIN_C, module, "-shared", str(elsewhere), f"-Wl,-rpath,{elsewhere.parent}")
    if not library_left:
        elsewhere.unlink()


@pytest.mark.parametrize("library_left", [True, False], ids=["from-no-package", "not-found"])
def test_deb_fails_naming_the_file_whose_library_comes_from_no_package(tmp_path, library_left):
    build = fake_build(tmp_path, "deb")
    plant_library_from_no_package(tmp_path, build, library_left)
    with pytest.raises(errors.BuildError) as failure:
        packages.build_deb(build)
    assert failure.value.phase == "package"
    message = str(failure.value)
    assert "libfoo.so.1" in message and f"{PREFIX}/{DYNLOAD}/_foo.{SOABI}.so" in message, message
    assert "debroot" not in message  # the file as installed, not the build directory
    assert not list(Path(build.out).glob("*.deb"))


def test_rpm_requires_come_from_the_binaries_without_the_trees_own_library(tmp_path, system_rpmdb):
    build = fake_build(tmp_path, "rpm")
    # A script run by the tree's own interpreter: rpm would require that path, in the package itself.
    script = Path(build.tree) / "bin" / "idle3.13"
    script.write_text(f"#!{PREFIX}/bin/python3.13\nimport idlelib\n")
    script.chmod(0o755)
    rpm = packages.build_rpm(build, system_rpmdb)
    requires = subprocess.run(["rpm", "-qp", "--requires", rpm], capture_output=True, text=True, check=True)
    lines = requires.stdout.splitlines()
    assert "libssl.so.3(OPENSSL_3.0.0)(64bit)" in lines, lines
    assert "libcrypto.so.3(OPENSSL_3.0.0)(64bit)" in lines, lines
    assert "libz.so.1()(64bit)" in lines, lines
    assert any(line.startswith("libc.so.6(GLIBC_") for line in lines), lines
    assert not any("python" in line or "nsl" in line for line in lines), lines
    assert not any(line.startswith(PREFIX) for line in lines), lines
    # Nothing in the prefix is offered to other packages (the system's python3-libs has the
    # same soname): the package provides its name only.
    provides = subprocess.run(["rpm", "-qp", "--provides", rpm], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in provides.stdout.splitlines()]
    assert names == ["python-3.13.5", "python-3.13.5(x86-64)"]
    declared = [line for line in lines if not line.startswith("rpmlib(")]
    assert depends.declared_dependencies("rpm", rpm) == declared


@pytest.mark.parametrize("library_left", [True, False], ids=["from-no-package", "not-found"])
def test_rpm_fails_naming_the_file_whose_library_no_package_provides(tmp_path, system_rpmdb, library_left):
    """As the .deb's: rpm alone would record libfoo.so.1()(64bit), and no dnf or zypper could
    install the package."""
    build = fake_build(tmp_path, "rpm")
    plant_library_from_no_package(tmp_path, build, library_left)
    with pytest.raises(errors.BuildError) as failure:
        packages.build_rpm(build, system_rpmdb)
    assert failure.value.phase == "package"
    message = str(failure.value)
    assert message.endswith(
        f": libfoo.so.1 (libfoo.so.1()(64bit)), needed by {PREFIX}/{DYNLOAD}/_foo.{SOABI}.so"
    )
    assert "staging" not in message  # the file as installed, not the build directory
    assert not list(Path(build.out).glob("*.rpm")) and not (tmp_path / "rpmbuild").exists()


def test_rpm_is_refused_where_no_package_provides_even_libc(tmp_path):
    """This machine's own rpm database is as empty as a fresh one: there the check refuses
    every system library, so the tests give it a database instead of leaving it out."""
    build = fake_build(tmp_path, "rpm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.BuildError) as failure:
        packages.build_rpm(build, str(tmp_path / "empty"))
    message = str(failure.value)
    for soname in SYSTEM_LIBRARIES:
        assert f"{soname} ({soname}()(64bit)), needed by " in message, message
    assert f"libc.so.6 (libc.so.6()(64bit)), needed by {PREFIX}/bin/python3.13" in message
    assert LIBPYTHON + " (" not in message  # the tree's own


def test_rpm_spec_filters_keep_rpm_text_rules():
    spec = packages.rpm_spec("3.13.5", 1, "x86_64", "/w/a b%{x}", PREFIX, [LIBPYTHON, "libpython3.so"])
    assert "AutoReqProv: no" not in spec
    assert "%global __provides_exclude_from ^/opt/python/3[.]13[.]5/\n" in spec
    # Neither the tree's own libraries nor its own paths (a script's #!<prefix>/bin/python3).
    assert (
        "%global __requires_exclude "
        "^((libpython3[.]13[.]so[.]1[.]0|libpython3[.]so)([(]|$)|/opt/python/3[.]13[.]5(/|$))\n"
    ) in spec
    assert 'cp -a "/w/a b%%{x}/." %{buildroot}/' in spec
    # No library of its own: the paths alone (an empty alternation would drop every requirement).
    alone = packages.rpm_spec("3.13.5", 1, "x86_64", "/w", PREFIX, [])
    assert "%global __requires_exclude ^/opt/python/3[.]13[.]5(/|$)\n" in alone
    with pytest.raises(errors.BuildError, match="rpm dependency pattern"):
        depends.regex_literal("libx%{y}.so")


def test_elf_files_are_told_by_their_header(tmp_path):
    tree = staged_tree(tmp_path)
    found = [str(Path(path).relative_to(tree)) for path in depends.linked_elf_files(str(tree))]
    assert found == [
        "bin/python3.13",
        f"lib/{LIBPYTHON}",
        f"{DYNLOAD}/_ssl.{SOABI}.so",
        f"{DYNLOAD}/zlib.{SOABI}.so",
    ]
    assert depends.own_libraries(str(tree)) == [LIBPYTHON]
