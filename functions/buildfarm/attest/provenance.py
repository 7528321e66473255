"""A build's provenance: an in-toto Statement v1 whose predicate is SLSA Provenance v1
(https://slsa.dev/provenance/v1): which builder (runDetails.builder.id) ran which build
(buildDefinition: our buildType, the build spec as externalParameters, the source and the
builder image as resolvedDependencies), when (startedOn, finishedOn) and in which execution
(metadata.invocationId), producing which files (the statement's subjects, by sha256).

It is made by the publishing side, which the builder cannot impersonate (SLSA: provenance
comes from the control plane, not from the build), and signed with SHA256SUMS.
"""

from __future__ import annotations

import datetime
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from buildfarm.digests import Sha256
from buildfarm.layout import FILE_NAME_PATTERN

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:python-build-farm:build-type:cpython-cell:v1"
"""What a build of ours is: a build spec (externalParameters) turned by the builder driver
into a tarball and a .deb/.rpm of CPython for one (version, platform, arch)."""
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class Subject(BaseModel):
    """One file the build produced: its name in the build directory and its sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Annotated[str, StringConstraints(pattern=f"^{FILE_NAME_PATTERN}$")]
    sha256: Sha256


class Dependency(BaseModel):
    """An input of the build (SLSA ResourceDescriptor): uri, name, and a digest if known."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    uri: NonEmpty
    name: NonEmpty
    sha256: Sha256 | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class ProvenanceFacts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    subjects: tuple[Subject, ...] = Field(min_length=1)
    spec: dict[str, Any]
    """The build spec as planned (manifest.json's "spec"): the externalParameters."""
    internal: dict[str, Any] = Field(default_factory=dict)
    """Parameters the platform set, not the requester (runner, driver version, ...)."""
    source: Dependency
    builder_image: Dependency
    builder_id: NonEmpty
    """Who ran the build: the platform's identity (e.g. the workflow's state machine ARN)."""
    builder_version: dict[str, str] = Field(default_factory=dict)
    invocation_id: NonEmpty
    """The execution id (the spec's nonce; the workflow's execution)."""
    started_on: datetime.datetime
    finished_on: datetime.datetime

    @field_validator("subjects")
    @classmethod
    def _distinct_names(cls, subjects: tuple[Subject, ...]) -> tuple[Subject, ...]:
        names = [subject.name for subject in subjects]
        if len(set(names)) != len(names):
            raise ValueError(f"subjects named twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return subjects

    @field_validator("started_on", "finished_on")
    @classmethod
    def _aware(cls, moment: datetime.datetime) -> datetime.datetime:
        if moment.tzinfo is None:
            raise ValueError("a timestamp needs a time zone (UTC)")
        return moment


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _descriptor(dependency: Dependency) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"uri": dependency.uri, "name": dependency.name}
    if dependency.sha256:
        descriptor["digest"] = {"sha256": dependency.sha256}
    if dependency.annotations:
        descriptor["annotations"] = dict(dependency.annotations)
    return descriptor


def make_statement(facts: ProvenanceFacts) -> dict[str, Any]:
    """The in-toto Statement (a dict in the SLSA v1 field names)."""
    if facts.finished_on < facts.started_on:
        raise ValueError("finished_on is before started_on")
    builder: dict[str, Any] = {"id": facts.builder_id}
    if facts.builder_version:
        builder["version"] = dict(facts.builder_version)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": subject.name, "digest": {"sha256": subject.sha256}}
            for subject in sorted(facts.subjects, key=lambda s: s.name)
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": facts.spec,
                "internalParameters": facts.internal,
                "resolvedDependencies": [_descriptor(facts.source), _descriptor(facts.builder_image)],
            },
            "runDetails": {
                "builder": builder,
                "metadata": {
                    "invocationId": facts.invocation_id,
                    "startedOn": _timestamp(facts.started_on),
                    "finishedOn": _timestamp(facts.finished_on),
                },
            },
        },
    }


def render_statement(facts: ProvenanceFacts) -> str:
    """provenance.json's text: deterministic (sorted keys, 2-space indent, final newline)."""
    return json.dumps(make_statement(facts), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def statement_subjects(statement: dict[str, Any]) -> dict[str, str]:
    """A statement's subjects as name -> sha256 (ValueError when it is not one of ours)."""
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise ValueError(f"not an in-toto statement of {PREDICATE_TYPE}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        raise ValueError("no subject list")
    found = {}
    for subject in subjects:
        digest = subject.get("digest", {}) if isinstance(subject, dict) else {}
        if not isinstance(subject, dict) or not isinstance(digest.get("sha256"), str):
            raise ValueError(f"a subject without a sha256 digest: {subject!r}")
        found[str(subject.get("name"))] = digest["sha256"]
    return found
