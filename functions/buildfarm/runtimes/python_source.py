"""The Python a runtime is built from: the newest published build of its series (or its exact
release) for the cell, from the store's versions.json; or a tarball given on the command line."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from buildfarm.catalog.versions_json import iter_cells
from buildfarm.errors import UsageError
from buildfarm.layout import VERSIONS_KEY
from buildfarm.platforms import ARCHES
from buildfarm.store import CHUNK, Store, StoreNotFound
from buildfarm.versions import is_series


@dataclass(frozen=True)
class PythonBuild:
    """A published Python build's tarball, as a runtime build uses it."""

    version: str
    build: int | None  # None: a tarball given on the command line
    key: str | None  # the tarball's store key
    sha256: str
    size: int


# What the builder names a Python tarball (builder_image/driver/packages.py tarball_name); a
# version has no '-', a platform may (debian-12).
TARBALL_NAME = re.compile(
    rf"python-(?P<version>[^-]+)-(?P<platform>.+)-(?P<arch>{'|'.join(ARCHES)})\.tar\.gz"
)


def matches(wanted: str, version: str) -> bool:
    """A series (3.13) matches its releases; a release matches itself. A version that is no
    release (a development build's 3.14.0a1+) is a UsageError naming it."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise UsageError(
            f"the Python tarball is {version!r}, not a release (a development build?): "
            f"a runtime needs a released Python {wanted}"
        ) from None
    if is_series(wanted):
        return f"{parsed.major}.{parsed.minor}" == wanted
    return version == wanted


def tarball_cell_problem(path: Path, platform: str, arch: str) -> str | None:
    """Why a --python-tarball is not the cell's (its name, as the farm names it, says another
    platform or arch), or None. A tarball named otherwise cannot be told (it holds no manifest)."""
    named = TARBALL_NAME.fullmatch(path.name)
    if named is None or (named["platform"], named["arch"]) == (platform, arch):
        return None
    return (
        f"--python-tarball {path.name} is a Python build for {named['platform']}/{named['arch']}, "
        f"not {platform}/{arch}"
    )


def newest_published(catalog: dict[str, Any], wanted: str, platform: str, arch: str) -> PythonBuild | None:
    """The newest published Python of `wanted` (series or release) for the cell, or None."""
    found: list[tuple[Version, dict[str, Any]]] = []
    for (version, cell_platform, cell_arch), entry in iter_cells(catalog):
        if (cell_platform, cell_arch) == (platform, arch) and matches(wanted, version):
            found.append((Version(version), entry))
    for version, entry in sorted(found, key=lambda item: item[0], reverse=True):
        tarball = next((a for a in entry.get("artifacts", []) if a.get("type") == "tarball"), None)
        if tarball:
            return PythonBuild(
                str(version), entry["build"], tarball["key"], tarball["sha256"], tarball["size"]
            )
    return None


def select_python(store: Store, wanted: str, platform: str, arch: str) -> PythonBuild:
    """newest_published from the store's catalog; UsageError (one line) if there is none."""
    try:
        catalog, _ = store.read_json(VERSIONS_KEY)
    except StoreNotFound:
        catalog = {}
    chosen = newest_published(catalog, wanted, platform, arch)
    if chosen is None:
        raise UsageError(
            f"no published Python {wanted} build for {platform}/{arch} in {store.location} "
            f"(publish one first: buildfarm run --versions {wanted} --platforms {platform} --arches {arch})"
        )
    return chosen


def fetch_tarball(store: Store, python: PythonBuild, dest: Path) -> Path:
    """Copy the build's tarball out of the store to dest, checking its sha256 and size."""
    assert python.key is not None
    digest = hashlib.sha256()
    with contextlib.closing(store.open_read(python.key)) as stream, open(dest, "wb") as out:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != python.sha256 or dest.stat().st_size != python.size:
        raise UsageError(f"{python.key}: sha256 or size differs from versions.json; refusing to use it")
    return dest


def check_local_tarball(path: Path) -> None:
    """UsageError (one line) unless a --python-tarball is a file (checked before anything is written)."""
    if not path.is_file():
        raise UsageError(f"--python-tarball {path}: no such file")


def local_tarball(path: Path, dest: Path) -> PythonBuild:
    """A tarball given on the command line (its version is read from the tree once extracted)."""
    check_local_tarball(path)
    shutil.copyfile(path, dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return PythonBuild("", None, None, digest, dest.stat().st_size)
