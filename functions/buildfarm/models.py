"""Contracts between the parts (see DESIGN.md): the build spec and the manifest."""

from __future__ import annotations

import datetime
import fnmatch
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from buildfarm.digests import Sha256
from buildfarm.layout import (
    EXECUTION_ID,
    FILE_NAME_PATTERN,
    MANIFEST_FILE,
    PROVENANCE_FILE,
    PUBLISHER_BUILD_FILES,
    SBOM_FILE,
    SIGNATURE_SUFFIX,
    SUMS_FILE,
)
from buildfarm.layout import artifact_dir as artifact_dir  # re-exported: a spec's artifact_dir
from buildfarm.platforms import Arch
from buildfarm.versions import parse_release

Optimization = Literal["pgo+lto", "none"]
ArtifactType = Literal["tarball", "deb", "rpm"]


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    sha256: Sha256


class BuildSpec(BaseModel):
    """One cell's build, planner -> builder, handed over in $BUILD_SPEC."""

    model_config = ConfigDict(extra="forbid")
    version: str
    platform: str
    arch: Arch
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
    execution_id: str = Field(pattern=f"^{EXECUTION_ID.pattern}$")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        parse_release(value)
        return value


FileName = Annotated[str, Field(pattern=f"^{FILE_NAME_PATTERN}$")]
"""A file name in a build directory (no path, nothing hidden): layout.FILE_NAME_PATTERN."""


class ManifestArtifact(BaseModel):
    """One file a build produced; its store key is <artifact_dir>/<file>."""

    model_config = ConfigDict(extra="allow")
    type: ArtifactType
    # Checked when the manifest is parsed, so a name the provenance could not list fails the
    # cell there, with a reason, rather than in the middle of attesting it.
    file: FileName
    sha256: Sha256
    size: int = Field(ge=0)


MAX_BUILD_SECONDS = 30 * 24 * 3600
"""A build's phases take hours; more than this (each, or all together) is not a timing."""
EARLIEST_BUILD = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
LATEST_BUILD = datetime.datetime(9000, 1, 1, tzinfo=datetime.UTC)
"""built_at's range: far from datetime's limits, so built_at less the timings is a time."""


def parse_utc_time(text: object) -> datetime.datetime:
    """An ISO 8601 time with a zone ("2025-06-11T12:00:00Z"), between EARLIEST_BUILD and
    LATEST_BUILD, in UTC. ValueError says what is wrong with it (without naming the field)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time")
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    try:
        moment = moment.astimezone(datetime.UTC)
    except OverflowError:  # an offset that moves it past year 1 or 9999
        raise ValueError(f"{text!r} is out of range") from None
    if not EARLIEST_BUILD <= moment < LATEST_BUILD:
        raise ValueError(f"{text!r} is not between {EARLIEST_BUILD.year} and {LATEST_BUILD.year}")
    return moment


def _check_utc_time(text: str) -> str:
    parse_utc_time(text)
    return text


def _check_total(timings: dict[str, float]) -> dict[str, float]:
    if sum(timings.values()) > MAX_BUILD_SECONDS:
        raise ValueError(f"the phases add up to more than {MAX_BUILD_SECONDS} seconds")
    return timings


UtcTime = Annotated[str, AfterValidator(_check_utc_time)]
"""A time as the builder writes it (kept as written): parse_utc_time's rule."""
PhaseSeconds = Annotated[float, Field(strict=True, ge=0, le=MAX_BUILD_SECONDS, allow_inf_nan=False)]
Timings = Annotated[dict[str, PhaseSeconds], AfterValidator(_check_total)]
"""manifest.json's "timings": phase -> seconds (finite numbers, not booleans), bounded."""


class Attestations(BaseModel):
    """manifest.json's "attestations": the files the publish side writes into the build's
    directory once the build verified (the builder has no key), by role. The builder lists
    them so that its manifest names the SBOM and the rest; the publish side writes exactly
    these names, and `buildfarm verify` holds the directory to them. A manifest without the
    field (a builder older than it, an older runtime build) means these defaults.

    A role a manifest's list leaves out is None: the build has no such file (listed). A
    runtime build lists the checksums and their signature only (checksums_only): it has no
    SBOM or provenance.

    Each name must be one the builder's role may not write (layout.PUBLISHER_BUILD_FILES), so
    that what stands there is the publish side's; and the names differ from each other and
    from manifest.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sbom: FileName | None = SBOM_FILE
    provenance: FileName | None = PROVENANCE_FILE
    checksums: FileName = SUMS_FILE
    checksums_signature: FileName = SUMS_FILE + SIGNATURE_SUFFIX
    provenance_signature: FileName | None = PROVENANCE_FILE + SIGNATURE_SUFFIX

    OPTIONAL_ROLES: ClassVar[tuple[str, ...]] = ("sbom", "provenance", "provenance_signature")
    """The roles a build may have no file for (a runtime build has neither SBOM nor provenance)."""

    @classmethod
    def listed(cls, raw: object) -> Self:
        """The names a manifest's "attestations" lists; the optional roles it leaves out are
        None. ValidationError for a bad list."""
        if isinstance(raw, dict):
            raw = {role: None for role in cls.OPTIONAL_ROLES} | raw
        return cls.model_validate(raw)

    @classmethod
    def checksums_only(cls) -> Self:
        """A runtime build's: SHA256SUMS and its signature."""
        return cls(**dict.fromkeys(cls.OPTIONAL_ROLES))

    def names(self) -> list[str]:
        """Every file name listed, in field order (the roles left out have none)."""
        return [name for name in self.model_dump().values() if name is not None]

    @model_validator(mode="after")
    def _publisher_only_and_distinct(self) -> Self:
        names = self.names()
        builders = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in PUBLISHER_BUILD_FILES)]
        if builders:
            raise ValueError(f"{', '.join(builders)}: not a name only the publish side writes")
        if len(set(names)) != len(names) or MANIFEST_FILE in names:
            raise ValueError(f"names must differ from each other and from {MANIFEST_FILE}: {names}")
        if self.provenance is None and self.provenance_signature is not None:
            raise ValueError("provenance_signature is listed without a provenance")
        return self


class Manifest(BaseModel):
    """manifest.json, written by the builder last, after every artifact is in the store.

    Fields beyond these (python ABI, glibc, compiler, configure args, modules,
    self-test results, builder image, SBOM facts) are kept as written.
    """

    model_config = ConfigDict(extra="allow")
    schema_version: int = 1
    spec: BuildSpec
    artifacts: list[ManifestArtifact]
    # The provenance's times (buildfarm.attest.build_files.build_times): checked here so that
    # a manifest they cannot be computed from fails its cell when it is parsed.
    built_at: UtcTime | None = None
    timings: Timings = Field(default_factory=dict)
    attestations: Attestations = Field(default_factory=Attestations)

    @field_validator("attestations", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        return Attestations.listed(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _attestations_are_not_artifacts(self) -> Self:
        both = sorted({artifact.file for artifact in self.artifacts} & set(self.attestations.names()))
        if both:
            raise ValueError(f"{', '.join(both)}: both an artifact and an attestation")
        return self
