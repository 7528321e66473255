"""The .rpm's refusal of a library no installed package provides (driver/depends.py's
check_rpm_libraries), as dpkg-shlibdeps refuses one for the .deb. The logic with a fake owner
lookup (which sonames need a package, what rpm would require of each, the message); then the
lookup itself, real rpm against a real temporary rpm database (tests/rpm_database.py) on this
machine, whose own rpm database is empty. The whole phase with it, real rpmbuild included, is
in test_package_dependencies.py."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from compiled import gcc
from driver import depends, errors
from rpm_database import PROVIDER, capabilities, rpm_database

needs_rpm = pytest.mark.skipif(not (shutil.which("rpm") and shutil.which("rpmbuild")), reason="needs rpm")
needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")

PREFIX = "/opt/python/3.13.5"
LIBPYTHON = "libpython3.13.so.1.0"
LIBRARY_C = "int library_call(void) { return 0; }\n"
CALLER_C = "int library_call(void);\nint main(void) { return library_call(); }\n"


class Lookup:
    """A fake rpm database: provider(capability) is the package that provides it, or None."""

    def __init__(self, *provided: str) -> None:
        self.provided = set(provided)
        self.asked: list[str] = []

    def __call__(self, capability: str) -> str | None:
        self.asked.append(capability)
        return "glibc-2.34-1.x86_64" if capability in self.provided else None


def test_each_library_the_tree_does_not_ship_is_asked_about_once():
    objects = [
        (f"{PREFIX}/bin/python3.13", (LIBPYTHON, "libc.so.6"), True),
        (f"{PREFIX}/lib/{LIBPYTHON}", ("libm.so.6", "libc.so.6"), True),
        (f"{PREFIX}/lib/_ssl.so", ("libssl.so.3", "libc.so.6"), True),
        (f"{PREFIX}/lib/_foo.so", ("libfoo.so.1", "libc.so.6"), True),
        (f"{PREFIX}/lib/_bar.so", ("libfoo.so.1",), True),
    ]
    lookup = Lookup("libc.so.6()(64bit)", "libm.so.6()(64bit)", "libssl.so.3()(64bit)")
    missing = depends.unprovided_libraries(objects, {LIBPYTHON}, lookup)
    # libpython is the tree's own: no package is asked for it (nor Requires it: __requires_exclude).
    assert lookup.asked == [
        "libc.so.6()(64bit)", "libm.so.6()(64bit)", "libssl.so.3()(64bit)", "libfoo.so.1()(64bit)",
    ]  # fmt: skip
    assert missing == [
        (f"{PREFIX}/lib/_foo.so", "libfoo.so.1", "libfoo.so.1()(64bit)"),
        (f"{PREFIX}/lib/_bar.so", "libfoo.so.1", "libfoo.so.1()(64bit)"),
    ]


def test_the_capability_is_what_rpm_requires_of_the_objects_elf_class():
    # rpm's elfdeps marks a 64-bit object's needs (x86_64's and aarch64's alike), not a 32-bit one's.
    assert depends.rpm_capability("libc.so.6", True) == "libc.so.6()(64bit)"
    assert depends.rpm_capability("libc.so.6", False) == "libc.so.6"
    lookup = Lookup("libc.so.6()(64bit)")
    objects = [("/opt/p/bin/a", ("libc.so.6",), True), ("/opt/p/lib32/b", ("libc.so.6",), False)]
    assert depends.unprovided_libraries(objects, set(), lookup) == [
        ("/opt/p/lib32/b", "libc.so.6", "libc.so.6")
    ]
    assert lookup.asked == ["libc.so.6()(64bit)", "libc.so.6"]


@pytest.mark.parametrize(
    "soname",
    ["", "lib foo.so.1", "-qa", "/usr/lib64/libfoo.so", "lib\u0663.so", "libfoo.so.1\n", "lib\ufffd.so"],
)
def test_a_soname_rpm_cannot_be_asked_about_is_provided_by_nothing(soname):
    lookup = Lookup(soname + "()(64bit)")
    missing = depends.unprovided_libraries([("/opt/p/bin/a", (soname,), True)], set(), lookup)
    assert missing == [("/opt/p/bin/a", soname, soname + "()(64bit)")]
    assert lookup.asked == []


def test_the_message_names_each_library_and_the_files_that_need_it():
    missing = [
        (f"{PREFIX}/lib/_foo.so", "libfoo.so.1", "libfoo.so.1()(64bit)"),
        (f"{PREFIX}/lib/_bar.so", "libfoo.so.1", "libfoo.so.1()(64bit)"),
        (f"{PREFIX}/lib/_z.so", "libz.so.1", "libz.so.1()(64bit)"),
    ]
    assert depends.unprovided_message(missing) == (
        "no installed package provides a library the .rpm's binaries need: "
        f"libfoo.so.1 (libfoo.so.1()(64bit)), needed by {PREFIX}/lib/_foo.so, {PREFIX}/lib/_bar.so; "
        f"libz.so.1 (libz.so.1()(64bit)), needed by {PREFIX}/lib/_z.so"
    )
    assert depends.unprovided_message(missing[2:], "/tmp/db").startswith(
        "no installed package in the rpm database /tmp/db provides a library"
    )
    # A wrong database leaves libc to every file: the first few are named, the rest counted.
    everywhere = [(f"{PREFIX}/lib/_{n}.so", "libc.so.6", "libc.so.6()(64bit)") for n in range(8)]
    assert depends.unprovided_message(everywhere).endswith(
        f"libc.so.6 (libc.so.6()(64bit)), needed by {PREFIX}/lib/_0.so, {PREFIX}/lib/_1.so, "
        f"{PREFIX}/lib/_2.so, {PREFIX}/lib/_3.so, {PREFIX}/lib/_4.so and 3 more"
    )


def gcc_tree(tmp_path: Path) -> Path:
    """staging/<prefix>: bin/python3.13 -> lib/libpython (the tree's own), lib/_foo.so ->
    libfoo.so.1 (elsewhere, found by its runpath)."""
    tree = tmp_path / "staging" / PREFIX.lstrip("/")
    libpython = tree / "lib" / LIBPYTHON
    gcc(tmp_path, LIBRARY_C, libpython, "-shared", f"-Wl,-soname,{LIBPYTHON}")
    gcc(tmp_path, CALLER_C, tree / "bin" / "python3.13", str(libpython), "-Wl,-rpath,$ORIGIN/../lib")
    elsewhere = tmp_path / "elsewhere" / "libfoo.so.1"
    gcc(tmp_path, LIBRARY_C, elsewhere, "-shared", "-Wl,-soname,libfoo.so.1")
    gcc(
        tmp_path,
        CALLER_C,
        tree / "lib" / "_foo.so",
        "-shared",
        str(elsewhere),
        f"-Wl,-rpath,{elsewhere.parent}",
    )
    return tree


@needs_gcc
def test_the_tree_is_checked_file_by_file_as_installed(tmp_path, monkeypatch):
    """check_rpm_libraries over gcc-built objects, rpm's answers faked: the files as installed
    (no staging directory), the tree's own library left out and returned for the filters."""
    tree = gcc_tree(tmp_path)
    lookup = Lookup("libc.so.6()(64bit)", "libfoo.so.1()(64bit)")
    monkeypatch.setattr(depends, "rpm_provider", lambda log, env, capability, dbpath: lookup(capability))
    assert depends.check_rpm_libraries(io.StringIO(), None, str(tree), PREFIX) == [LIBPYTHON]
    assert sorted(lookup.asked) == ["libc.so.6()(64bit)", "libfoo.so.1()(64bit)"]
    lookup.provided.remove("libfoo.so.1()(64bit)")
    with pytest.raises(errors.BuildError) as refused:
        depends.check_rpm_libraries(io.StringIO(), None, str(tree), PREFIX)
    assert refused.value.phase == "package"
    assert refused.value.reason.endswith(
        f": libfoo.so.1 (libfoo.so.1()(64bit)), needed by {PREFIX}/lib/_foo.so"
    )


# --- real rpm against a real rpm database ---------------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    return rpm_database(tmp_path_factory.mktemp("rpmdb"), capabilities(["libc.so.6", "libssl.so.3"]))


@needs_rpm
def test_rpm_says_which_installed_package_provides_a_library(database):
    log = io.StringIO()
    found = depends.rpm_provider(log, None, "libc.so.6()(64bit)", database)
    assert found == f"{PROVIDER}-1-1.noarch"
    assert depends.rpm_provider(log, None, "libz.so.1()(64bit)", database) is None
    assert depends.rpm_provider(log, None, "libc.so.6", database) is None  # a 32-bit object's need
    # The capability is an argument, never an option: "-qa" would list every package.
    assert depends.rpm_provider(log, None, "-qa", database) is None
    assert f"rpm --dbpath {database} -q" in log.getvalue()  # each query is in the build log


@needs_rpm
@needs_gcc
def test_a_real_database_passes_what_it_provides_and_refuses_the_rest(tmp_path):
    tree = gcc_tree(tmp_path)
    with_foo = rpm_database(tmp_path / "with", capabilities(["libc.so.6", "libfoo.so.1"]))
    assert depends.check_rpm_libraries(io.StringIO(), None, str(tree), PREFIX, with_foo) == [LIBPYTHON]
    without = rpm_database(tmp_path / "without", capabilities(["libc.so.6"]))
    with pytest.raises(errors.BuildError) as refused:
        depends.check_rpm_libraries(io.StringIO(), None, str(tree), PREFIX, without)
    assert refused.value.reason == (
        f"no installed package in the rpm database {without} provides a library the .rpm's binaries "
        f"need: libfoo.so.1 (libfoo.so.1()(64bit)), needed by {PREFIX}/lib/_foo.so"
    )


@needs_rpm
def test_a_database_rpm_cannot_read_is_an_error_not_an_answer(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "rpmdb.sqlite").write_text("not a database\n")
    with pytest.raises(errors.BuildError, match=r"rpm cannot say what provides libc\.so\.6"):
        depends.rpm_provider(io.StringIO(), None, "libc.so.6()(64bit)", str(broken))
    # rpm would make an empty database where there is none, and then find nothing in it.
    for absent in (str(tmp_path / "absent"), "relative/db"):
        with pytest.raises(errors.BuildError, match="no rpm database at"):
            depends.check_rpm_libraries(io.StringIO(), None, str(tmp_path), PREFIX, absent)
    assert not (tmp_path / "absent").exists()
