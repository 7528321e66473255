"""Is a runtime build the claimed one, complete in the store? The runtime twin of
buildfarm.verify: verify_runtime reads the build's manifest.json, checks that it names the
claimed cell and build, and that every artifact it lists is in the store with the manifest's
sha256 and size. Nothing here writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from buildfarm.catalog.versions_json import RuntimeCatalogCell, RuntimeCell
from buildfarm.errors import first_error
from buildfarm.models import ManifestArtifact
from buildfarm.releases import iso
from buildfarm.runtimes.keys import runtime_artifact_dir, runtime_manifest_key
from buildfarm.store import Store
from buildfarm.verify import read_manifest_json, short, verify_artifact


class RuntimeName(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    version: str


class RuntimeManifest(BaseModel):
    """The fields of a runtime's manifest.json (manifest.schema.json) that publishing checks."""

    model_config = ConfigDict(extra="allow")
    runtime: RuntimeName
    platform: str
    arch: str
    build: int = Field(ge=1)
    python: dict[str, Any]
    requirements: dict[str, Any]
    artifacts: list[ManifestArtifact] = Field(min_length=1)
    execution_id: str | None = None  # the farm execution that claimed the build


def _read(store: Store, directory: str) -> RuntimeManifest | str:
    raw = read_manifest_json(store, runtime_manifest_key(directory))
    if not isinstance(raw, dict):
        return raw or "no manifest.json"
    try:
        return RuntimeManifest.model_validate(raw)
    except ValidationError as error:
        return short(f"manifest.json invalid: {first_error(error)}")


def verify_runtime(
    store: Store,
    cell: RuntimeCell,
    build: int,
    now: datetime,
    planned_lock: str | None = None,
    execution_id: str | None = None,
) -> tuple[RuntimeCatalogCell | None, str]:
    """(versions.json entry, "") if runtimes/<cell>/<build>/ holds the manifest of exactly that
    cell and build (given planned_lock, of the planned lock; given execution_id, built for that
    execution) and every artifact it lists verifies, else (None, the reason)."""
    directory = runtime_artifact_dir(*cell, build)
    manifest = _read(store, directory)
    if isinstance(manifest, str):
        return None, manifest
    recorded = (manifest.runtime.name, manifest.runtime.version, manifest.platform, manifest.arch)
    if recorded != cell or manifest.build != build:
        named = "/".join(recorded)
        return None, short(
            f"manifest.json is of {named} build {manifest.build}, not build {build} of this cell"
        )
    if execution_id is not None and manifest.execution_id != execution_id:
        # Planned only: a build planted at the claimed number, or made for another execution.
        return None, short(
            f"manifest.json's execution id {manifest.execution_id!r} is not that of the execution "
            f"that planned it, {execution_id}"
        )
    lock = manifest.requirements.get("sha256")
    if planned_lock is not None and lock != planned_lock:
        return None, short(
            f"manifest.json's requirements sha256 {lock!r} is not the planned lock's {planned_lock}"
        )
    artifacts = []
    for artifact in manifest.artifacts:
        verified = verify_artifact(store, directory, artifact)
        if isinstance(verified, str):
            return None, verified
        artifacts.append(verified)
    try:
        entry = RuntimeCatalogCell(
            build=build,
            published=iso(now),
            manifest=runtime_manifest_key(directory),
            python={key: manifest.python.get(key) for key in ("version", "build")},
            requirements={key: manifest.requirements.get(key) for key in ("kind", "sha256")},
            artifacts=artifacts,
        )
    except ValidationError as error:
        return None, short(f"manifest.json invalid: {first_error(error)}")
    return entry, ""
