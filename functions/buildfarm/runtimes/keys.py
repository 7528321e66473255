"""Store keys of runtimes (DESIGN "Store layout"), kept here until buildfarm.layout takes them:

- runtimes/<name>/<version>/<platform>/<arch>/<build>/: one runtime build, create-only: the
  tarball, the .deb, SHA256SUMS and manifest.json (written last).
- runtimes/.cache/uv/: a directory store's download cache (a '.' segment: never served).

And the pure decisions a farm planner needs: a runtime cell's key, and whether a runtime cell
needs a new build given the published one and the Python build it would use now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildfarm.layout import BUILD_NUMBER, MANIFEST_FILE

RUNTIMES_PREFIX = "runtimes/"
RUNTIME_CACHE_DIR = "runtimes/.cache/uv"
"""A directory store's uv cache, relative to its root (not a store key: '.' is never public)."""

RuntimeCell = tuple[str, str, str, str]  # (name, version, platform, arch)


def runtime_cell_name(name: str, version: str, platform: str, arch: str) -> str:
    """<name>/<version>/<platform>/<arch>: a runtime cell in keys, claims and plans."""
    return f"{name}/{version}/{platform}/{arch}"


def runtime_cell_dir(name: str, version: str, platform: str, arch: str) -> str:
    """runtimes/<name>/<version>/<platform>/<arch>: the folder whose children are build numbers."""
    return f"{RUNTIMES_PREFIX}{runtime_cell_name(name, version, platform, arch)}"


def runtime_artifact_dir(name: str, version: str, platform: str, arch: str, build: int) -> str:
    """runtimes/<name>/<version>/<platform>/<arch>/<build> (no trailing '/')."""
    return f"{runtime_cell_dir(name, version, platform, arch)}/{build}"


def runtime_manifest_key(artifact_dir: str) -> str:
    return f"{artifact_dir}/{MANIFEST_FILE}"


def runtime_claim_key(name: str, version: str, platform: str, arch: str) -> str:
    """claims/runtimes/<name>/<version>/<platform>/<arch>.json (the farm's claim marker)."""
    return f"claims/{RUNTIMES_PREFIX}{runtime_cell_name(name, version, platform, arch)}.json"


def build_numbers(children: set[str]) -> set[int]:
    """The build numbers among a cell folder's children (Store.list_children)."""
    return {int(child) for child in children if BUILD_NUMBER.fullmatch(child)}


def needs_build(
    published: Mapping[str, Any] | None, lock_sha256: str, python_version: str, python_build: int
) -> str | None:
    """Why a runtime cell needs a new build, or None if its published build is current.

    `published` is the cell's newest published manifest (None: never built); the lock digest
    and the Python build are what a build would use now. A new Python patch release (or a new
    build of the same Python) or a changed lock plans a new runtime build."""
    if published is None:
        return "not built yet"
    python = published.get("python") or {}
    if published.get("requirements", {}).get("sha256") != lock_sha256:
        return "the lock changed"
    if python.get("version") != python_version:
        return f"Python {python_version} is newer than {python.get('version')}"
    if python.get("build") != python_build:
        return f"Python {python_version} build {python_build} replaced build {python.get('build')}"
    return None
