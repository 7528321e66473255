"""The system packages a build links at run time: the DT_NEEDED entries of its ELF files,
each resolved to a library path the way the dynamic loader's cache does (ldconfig -p), each
path mapped to the platform package that ships it, with that package's version.

The ELF files are read by elf.py (the reader the driver's hardening check uses too); the
mapping is pure; DpkgOwner and RpmOwner ask the platform's package database (dpkg-query -S /
-W, rpm -qf). Standard library only: it runs where the build ran, since only that root knows
which package ships which library.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .elf import ELF_MAGIC, ElfFile, elf_files, machine_of
from .elf import ElfError as ElfError  # re-exported: what read_elf_dynamic raises


@dataclass(frozen=True)
class ElfDynamic:
    """What linking needs of one ELF file: its machine and class (which libraries can serve
    it), its DT_NEEDED sonames and its own DT_SONAME (None for executables)."""

    machine: int
    wide: bool
    needed: tuple[str, ...]
    soname: str | None


@dataclass(frozen=True)
class OwnedBy:
    """The package that ships a file: kind "deb" or "rpm", name, full version, architecture."""

    kind: str
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class LinkedPackage:
    """A system package the build links, with the sonames it provides to it."""

    kind: str
    name: str
    version: str
    arch: str
    sonames: tuple[str, ...]


def read_elf_dynamic(data: bytes) -> ElfDynamic | None:
    """The dynamic section of an ELF image (None: not ELF, or linked statically)."""
    if data[:4] != ELF_MAGIC or len(data) < 64:
        return None
    elf = ElfFile(data)
    dynamic = elf.needed()
    if dynamic is None:
        return None
    needed, soname = dynamic
    return ElfDynamic(elf.machine, elf.wide, needed, soname)


def tree_dynamics(tree: Path) -> dict[str, ElfDynamic]:
    """Every dynamically linked ELF file under tree (symbolic links left out), by path."""
    found = {}
    for relpath in elf_files(tree):
        path = Path(tree, relpath)
        dynamic = read_elf_dynamic(path.read_bytes())
        if dynamic is not None:
            found[str(path)] = dynamic
    return found


def external_needed(dynamics: Mapping[str, ElfDynamic]) -> dict[str, ElfDynamic]:
    """Each soname the files need that none of them provides (libpython is the build's own),
    with one file that needs it (whose machine and class the library must have)."""
    own = {dynamic.soname for dynamic in dynamics.values()} | {Path(path).name for path in dynamics}
    needed: dict[str, ElfDynamic] = {}
    for path in sorted(dynamics):
        for soname in dynamics[path].needed:
            if soname not in own:
                needed.setdefault(soname, dynamics[path])
    return needed


_LDCONFIG_LINE = re.compile(r"\s*(\S+) \(([^)]*)\)(?: OS ABI: [^=]*)? => (\S+)")


def parse_ldconfig_cache(text: str) -> dict[str, list[str]]:
    """`ldconfig -p` output -> soname -> library paths, in the cache's order."""
    paths: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _LDCONFIG_LINE.fullmatch(line)
        if match:
            paths.setdefault(match.group(1), []).append(match.group(3))
    return paths


def resolve_sonames(
    needed: Mapping[str, ElfDynamic],
    cache: Mapping[str, list[str]],
    serves: Callable[[str, ElfDynamic], bool],
) -> tuple[dict[str, str], list[str]]:
    """(soname -> the first cached path that serves its consumer, sonames found nowhere)."""
    resolved, missing = {}, []
    for soname in sorted(needed):
        path = next((p for p in cache.get(soname, []) if serves(p, needed[soname])), None)
        if path is None:
            missing.append(soname)
        else:
            resolved[soname] = path
    return resolved, missing


def same_machine(path: str, consumer: ElfDynamic) -> bool:
    """Whether the library at path can be loaded by consumer (same ELF machine and class)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(20)
    except OSError:
        return False
    return machine_of(head) == (consumer.machine, consumer.wide)


def linked_packages(
    soname_paths: Mapping[str, str], owner_of: Callable[[str], OwnedBy | None]
) -> tuple[list[LinkedPackage], list[str]]:
    """Group resolved sonames by the package that ships each path: (packages sorted by name,
    sonames that no package owns)."""
    by_package: dict[OwnedBy, list[str]] = {}
    unowned = []
    for soname in sorted(soname_paths):
        owner = owner_of(soname_paths[soname])
        if owner is None:
            unowned.append(soname)
        else:
            by_package.setdefault(owner, []).append(soname)
    packages = [
        LinkedPackage(owner.kind, owner.name, owner.version, owner.arch, tuple(sonames))
        for owner, sonames in by_package.items()
    ]
    return sorted(packages, key=lambda p: (p.name, p.arch)), unowned


# -- the platform's package database ---------------------------------------------------------


def _path_candidates(path: str) -> list[str]:
    """The path as a package may have registered it: as given, across the /usr merge (dpkg
    knows /lib/x/libc.so.6, the loader cache may say /usr/lib/x/...), and resolved."""
    merged = path.removeprefix("/usr") if path.startswith("/usr/lib") else "/usr" + path
    candidates = [path, merged, os.path.realpath(path)]
    return [c for index, c in enumerate(candidates) if c not in candidates[:index]]


def _query(argv: list[str]) -> str | None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


class DpkgOwner:
    """path -> OwnedBy from dpkg's database (Debian, Ubuntu)."""

    def __call__(self, path: str) -> OwnedBy | None:
        for candidate in _path_candidates(path):
            output = _query(["dpkg-query", "-S", candidate])
            # t64 transitions add "diversion by <pkg> from/to: <path>" lines.
            owners = [line for line in (output or "").splitlines() if not line.startswith("diversion by")]
            if owners:
                package = owners[0].split(": ", 1)[0].split(", ")[0]
                return self.package(package)
        return None

    @staticmethod
    def package(package: str) -> OwnedBy | None:
        output = _query(["dpkg-query", "-W", "-f=${Package}\\t${Version}\\t${Architecture}\\n", package])
        fields = (output or "").splitlines()[0].split("\t") if output else []
        return OwnedBy("deb", *fields) if len(fields) == 3 else None


class RpmOwner:
    """path -> OwnedBy from the rpm database (Red Hat, SUSE, Amazon Linux)."""

    QUERY_FORMAT = "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"

    def __call__(self, path: str) -> OwnedBy | None:
        for candidate in _path_candidates(path):
            output = _query(["rpm", "-qf", "--queryformat", self.QUERY_FORMAT, candidate])
            fields = output.splitlines()[0].split("\t") if output else []
            if len(fields) == 3:
                return OwnedBy("rpm", *fields)
        return None


def system_packages(
    tree: Path, owner_of: Callable[[str], OwnedBy | None], ldconfig_cache: str | None = None
) -> tuple[list[LinkedPackage], list[str]]:
    """The packages an installed tree links (ldconfig -p of this machine unless given), and
    the sonames left unexplained (not in the loader's cache, or owned by no package)."""
    if ldconfig_cache is None:
        ldconfig_cache = subprocess.run(
            ["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True
        ).stdout
    needed = external_needed(tree_dynamics(tree))
    resolved, missing = resolve_sonames(needed, parse_ldconfig_cache(ldconfig_cache), same_machine)
    packages, unowned = linked_packages(resolved, owner_of)
    return packages, sorted(missing + unowned)


def owner_lookup_for(kind: str) -> Callable[[str], OwnedBy | None]:
    """The package database reader of a platform's package kind ("deb" or "rpm")."""
    lookups: dict[str, Callable[[str], OwnedBy | None]] = {"deb": DpkgOwner(), "rpm": RpmOwner()}
    return lookups[kind]
