"""Runtime cells in the store (their keys are buildfarm.layout's RUNTIMES_PREFIX and runtime_*
functions, re-exported here), and the pure decision a farm planner needs: whether a runtime
cell needs a new build given the published one and the Python build it would use now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildfarm.catalog.versions_json import RuntimeCell  # noqa: F401 (re-exported)
from buildfarm.layout import (  # noqa: F401 (re-exported for buildfarm.runtimes)
    BUILD_NUMBER,
    MANIFEST_FILE,
    RUNTIME_CACHE_DIR,
    RUNTIMES_PREFIX,
    runtime_artifact_dir,
    runtime_cell_dir,
    runtime_cell_name,
    runtime_claim_key,
)


def runtime_manifest_key(artifact_dir: str) -> str:
    return f"{artifact_dir}/{MANIFEST_FILE}"


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
