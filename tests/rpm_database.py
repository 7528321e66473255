"""An rpm database for the tests that make .rpm files on this (Debian) machine, whose own rpm
database is empty: no package there provides libc.so.6, so the package phase's check that an
installed package provides every library the binaries need (driver/depends.py's
check_rpm_libraries) would refuse every tree. The tests point that check at a database made
here instead, in which one package provides the libraries this machine's dpkg says its packages
provide, as glibc, openssl-libs and zlib do on an rpm platform: the .deb tests' dpkg-shlibdeps
asks this machine's dpkg database the same question."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

PROVIDER = "system-libraries"
SPEC = """\
Name: {name}
Version: 1
Release: 1
Summary: what this machine's packages provide, for the tests
License: none
BuildArch: noarch
{provides}
%description
The libraries of this machine, as an rpm platform's packages provide them.

%files
"""


def capabilities(sonames: Iterable[str]) -> list[str]:
    """What rpm requires of a 64-bit object that needs each soname (x86_64 and aarch64 alike)."""
    return [f"{soname}()(64bit)" for soname in sorted(sonames)]


def rpm_database(directory: Path, provides: Iterable[str]) -> str:
    """directory/db: an rpm database in which the one package system-libraries-1-1.noarch
    provides each capability (made with rpmbuild, recorded with `rpm -i --justdb`: no file
    installed); its path, for --dbpath."""
    db, top = directory / "db", directory / "rpmbuild"
    db.mkdir(parents=True)
    (top / "SPECS").mkdir(parents=True)
    spec = top / "SPECS" / "provider.spec"
    spec.write_text(SPEC.format(name=PROVIDER, provides="\n".join(f"Provides: {cap}" for cap in provides)))
    # _dbpath for rpmbuild too: it opens the database (and would make ~/.rpmdb on Debian).
    defines = ["--define", f"_topdir {top}", "--define", f"_dbpath {db}"]
    subprocess.run(["rpmbuild", "-bb", "--quiet", *defines, str(spec)], check=True, capture_output=True)
    [package] = (top / "RPMS" / "noarch").glob("*.rpm")
    install = ["rpm", "--dbpath", str(db), "-i", "--justdb", "--nodeps", "--noscripts", str(package)]
    subprocess.run(install, check=True, capture_output=True)
    return str(db)
