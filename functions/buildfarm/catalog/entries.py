"""The entries of versions.json (DESIGN "versions.json"): a published build of a cell
(CatalogCell, StoredCell as read back), a failing cell (CatalogFailure) and a published runtime
build (RuntimeCatalogCell). buildfarm.catalog.versions_json reads and merges them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from buildfarm.digests import Sha256


class CatalogArtifact(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    key: str
    sha256: Sha256
    size: int = Field(ge=0)


class _Recorded:
    """as_json for the entries that record their attestations (CatalogCell, RuntimeCatalogCell,
    each declaring the field itself: an annotation here would become a pydantic field first)."""

    def as_json(self: Any) -> dict[str, Any]:
        """The entry as versions.json holds it: no attestations key where none is recorded."""
        return self.model_dump(mode="json", exclude={"attestations"} if self.attestations is None else None)


class CatalogCell(_Recorded, BaseModel):
    """versions.json builds[version][platform][arch]."""

    model_config = ConfigDict(extra="allow")
    build: int = Field(ge=1)
    published: str
    manifest: str
    artifacts: list[CatalogArtifact]
    # The publish side's files beside the manifest, role -> name (models.Attestations' roles;
    # the signatures only when it signed): what the status page links. Absent: not recorded.
    attestations: dict[str, str] | None = None


class CatalogFailure(BaseModel):
    """versions.json failing[version][platform][arch]: the cell's newest decided build failed."""

    model_config = ConfigDict(extra="allow")
    build: int = Field(ge=1)  # the newest failed build
    reason: str
    failed: str  # when that build was decided
    since_build: int = Field(ge=1)  # the first failed build since the cell last published
    since: str  # when that one was decided


class RuntimePython(BaseModel):
    """The Python build a runtime build was made from (build None: a tarball given by hand)."""

    model_config = ConfigDict(extra="allow")
    version: str
    build: int | None = Field(default=None, ge=1)


class RuntimeLock(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: str
    sha256: Sha256


class RuntimeCatalogCell(_Recorded, BaseModel):
    """versions.json runtimes[name][version][platform][arch]: the newest published runtime build.
    `requirements` is the lock's digest, so a planner decides from versions.json alone."""

    model_config = ConfigDict(extra="allow")
    build: int = Field(ge=1)
    published: str
    manifest: str
    python: RuntimePython
    requirements: RuntimeLock
    artifacts: list[CatalogArtifact]
    attestations: dict[str, str] | None = None  # as CatalogCell's


RuntimeCell = tuple[str, str, str, str]  # (name, version, platform, arch)


class StoredCell(CatalogCell):
    """A builds entry as check_catalog accepts it: a CatalogCell whose `published` and `manifest`
    may be missing (the smallest catalogs have neither; the readers fall back to "")."""

    published: str = ""
    manifest: str = ""
