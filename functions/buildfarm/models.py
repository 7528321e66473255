"""Contracts between the parts (see DESIGN.md): the build spec and the manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from buildfarm.layout import artifact_dir as artifact_dir  # re-exported: a spec's artifact_dir
from buildfarm.versions import parse_release

Optimization = Literal["pgo+lto", "none"]
ArtifactType = Literal["tarball", "deb", "rpm"]


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BuildSpec(BaseModel):
    """One cell's build, planner -> builder, handed over in $BUILD_SPEC."""

    model_config = ConfigDict(extra="forbid")
    version: str
    platform: str
    arch: Literal["x86_64", "aarch64"]
    build: int = Field(ge=1)
    source: Source
    prefix: str
    optimization: Optimization = "pgo+lto"
    store: str
    artifact_dir: str
    # The nonce of the execution that planned (and claimed) this build: publish accepts a
    # build only if its manifest carries the planned spec, this id included, so a build made
    # outside that execution (planted, or a standalone `buildfarm build`) is never published.
    # Required: no default, so a spec can never silently claim to be unplanned-but-valid.
    execution_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,80}$")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        parse_release(value)
        return value


class ManifestArtifact(BaseModel):
    """One file a build produced; its store key is <artifact_dir>/<file>."""

    model_config = ConfigDict(extra="allow")
    type: ArtifactType
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Manifest(BaseModel):
    """manifest.json, written by the builder last, after every artifact is in the store.

    Fields beyond these (python ABI, glibc, compiler, configure args, modules,
    self-test results, timings, builder image) are kept as written.
    """

    model_config = ConfigDict(extra="allow")
    schema_version: int = 1
    spec: BuildSpec
    artifacts: list[ManifestArtifact]
