"""Linked system packages: ELF NEEDED read here agrees with readelf; dpkg maps them to
packages with the versions dpkg-query reports for this machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from buildfarm.attest.linked import (
    DpkgOwner,
    ElfDynamic,
    ElfError,
    OwnedBy,
    external_needed,
    linked_packages,
    parse_ldconfig_cache,
    read_elf_dynamic,
    resolve_sonames,
    system_packages,
)

SYSTEM_PYTHON = Path("/usr/bin/python3.11")
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system")


def ldconfig_path(soname: str) -> Path:
    cache = parse_ldconfig_cache(
        subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    )
    return Path(cache[soname][0])


def readelf(path: Path, tag: str) -> list[str]:
    output = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(rf"\({tag}\)\s+\S+ \S+: \[([^\]]+)\]", output)


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3.11")
def test_needed_of_an_executable_and_a_library_match_readelf() -> None:
    python = read_elf_dynamic(SYSTEM_PYTHON.read_bytes())
    assert list(python.needed) == readelf(SYSTEM_PYTHON, "NEEDED")
    assert python.soname is None and python.wide
    libssl = ldconfig_path("libssl.so.3").resolve()
    library = read_elf_dynamic(libssl.read_bytes())
    assert list(library.needed) == readelf(libssl, "NEEDED")
    assert [library.soname] == readelf(libssl, "SONAME") == ["libssl.so.3"]
    assert library.machine == python.machine


def test_not_elf_and_truncated_elf(tmp_path: Path) -> None:
    assert read_elf_dynamic(b"#!/bin/sh\n" * 10) is None
    head = ldconfig_path("libc.so.6").resolve().read_bytes()[:4096]
    with pytest.raises(ElfError, match="truncated"):
        read_elf_dynamic(head)


def test_ldconfig_lines() -> None:
    text = (
        "1234 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3\n"
        "\tlibssl.so.3 (libc6) => /lib/i386-linux-gnu/libssl.so.3\n"
        "\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6\n"
    )
    assert parse_ldconfig_cache(text) == {
        "libssl.so.3": ["/lib/x86_64-linux-gnu/libssl.so.3", "/lib/i386-linux-gnu/libssl.so.3"],
        "libc.so.6": ["/lib/x86_64-linux-gnu/libc.so.6"],
    }


def test_the_trees_own_libraries_are_not_system_ones() -> None:
    binary = ElfDynamic(62, True, ("libpython3.13.so.1.0", "libc.so.6"), None)
    libpython = ElfDynamic(62, True, ("libm.so.6", "libc.so.6"), "libpython3.13.so.1.0")
    needed = external_needed({"/t/bin/python3.13": binary, "/t/lib/libpython3.13.so.1.0": libpython})
    assert sorted(needed) == ["libc.so.6", "libm.so.6"]


def test_resolution_keeps_the_first_library_of_the_right_machine() -> None:
    consumer = ElfDynamic(62, True, ("libz.so.1",), None)
    cache = {"libz.so.1": ["/lib/i386/libz.so.1", "/lib/x86_64/libz.so.1"], "libx.so": ["/x"]}
    needed = {"libz.so.1": consumer, "libgone.so.2": consumer}
    resolved, missing = resolve_sonames(needed, cache, lambda path, _consumer: "x86_64" in path)
    assert resolved == {"libz.so.1": "/lib/x86_64/libz.so.1"}
    assert missing == ["libgone.so.2"]


def test_mapping_groups_sonames_by_package() -> None:
    libc = OwnedBy("deb", "libc6", "2.36-9+deb12u9", "amd64")
    owners = {
        "/l/libc.so.6": libc,
        "/l/libm.so.6": libc,
        "/l/libz.so.1": OwnedBy("deb", "zlib1g", "1:1.2.13", "amd64"),
    }
    packages, unowned = linked_packages(
        {
            "libc.so.6": "/l/libc.so.6",
            "libm.so.6": "/l/libm.so.6",
            "libz.so.1": "/l/libz.so.1",
            "libq.so": "/opt/q",
        },
        owners.get,
    )
    assert [(p.name, p.sonames) for p in packages] == [
        ("libc6", ("libc.so.6", "libm.so.6")),
        ("zlib1g", ("libz.so.1",)),
    ]
    assert unowned == ["libq.so"]


def dpkg_version(package: str) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
    ).stdout


@needs_dpkg
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3.11")
def test_debian_packages_of_a_real_tree(tmp_path: Path) -> None:
    """python3.11 and libssl.so.3 copied into a tree (with a private libpython-like library
    of the tree's own that must not count)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib").mkdir()
    shutil.copy(SYSTEM_PYTHON, tmp_path / "bin")
    shutil.copy(ldconfig_path("libssl.so.3").resolve(), tmp_path / "lib" / "libssl.so.3")
    (tmp_path / "bin" / "script").write_text("#!/bin/sh\n")
    packages, unexplained = system_packages(tmp_path, DpkgOwner())
    assert unexplained == []
    sonames = {soname: package for package in packages for soname in package.sonames}
    # libssl.so.3 is the tree's own copy here: only what it and python need from the system.
    assert "libssl.so.3" not in sonames
    assert {"libc.so.6", "libcrypto.so.3", "libz.so.1", "libexpat.so.1"} <= set(sonames)
    for package in packages:
        assert package.kind == "deb"
        assert package.version == dpkg_version(f"{package.name}:{package.arch}")
    assert sonames["libc.so.6"].name == "libc6"


@needs_dpkg
def test_dpkg_owner_across_the_usr_merge() -> None:
    libc = ldconfig_path("libc.so.6")
    other = str(libc).removeprefix("/usr") if str(libc).startswith("/usr/") else "/usr" + str(libc)
    assert DpkgOwner()(str(libc)) == DpkgOwner()(other)
    assert DpkgOwner()(str(libc)).name == "libc6"
    assert DpkgOwner()("/nonexistent/libnothing.so.1") is None
