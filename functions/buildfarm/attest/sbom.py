"""A build's SBOM: CycloneDX 1.6 JSON made with cyclonedx-python-lib from typed facts.

The document describes one build (metadata.component, bom-ref "build") and lists:
- CPython (bom-ref "cpython"): version, source file and its SHA-256, a purl
  (pkg:generic/cpython@<v>?download_url=...) and NVD's CPE; the source signature's status;
- nested in it, the third-party code bundled in the source tree (bundled.py);
- the system packages the build links at run time (linked.py), with purls such as
  pkg:deb/debian/libssl3@3.0.16-1~deb12u1?arch=amd64&distro=debian-12;
- the toolchain (toolchain.py) with scope "excluded": used to build, not shipped.

Deterministic: the same facts give the same bytes (the serial number is derived from the
build and its source; the timestamp is a fact, not the clock).
"""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import PurePosixPath
from typing import Annotated

from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentScope, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from buildfarm.digests import Sha256

from .bundled import BundledComponent
from .linked import LinkedPackage, OwnedBy
from .toolchain import Tool

CPYTHON_REF = "cpython"
BUILD_REF = "build"
PROPERTY_PREFIX = "buildfarm:"
# The distributions' purl namespaces, by os-release ID (https://github.com/package-url/purl-spec).
PURL_NAMESPACES = {
    "debian": "debian",
    "ubuntu": "ubuntu",
    "rhel": "redhat",
    "rocky": "rocky",
    "almalinux": "almalinux",
    "opensuse-leap": "opensuse",
    "amzn": "amazonlinux",
}


class SourceFacts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str
    sha256: Sha256
    signature: str = "not checked"
    """The OpenPGP check of the source: "verified by <fingerprint>", "missing", "not checked"."""

    @property
    def file(self) -> str:
        return PurePosixPath(self.url.split("?", 1)[0]).name


class SbomFacts(BaseModel):
    """Everything the SBOM states, gathered where the build ran (plain data: it can travel in
    manifest.json and be rendered by the publishing side)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    python_version: Annotated[str, StringConstraints(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+[a-z0-9]*$")]
    platform: str
    arch: str
    build: int = Field(ge=1)
    distro_id: str
    """os-release ID of the build root (debian, ubuntu, rhel, ...): the purls' namespace."""
    distro_version: str
    source: SourceFacts
    bundled: tuple[BundledComponent, ...] = ()
    linked: tuple[LinkedPackage, ...] = ()
    toolchain: tuple[Tool, ...] = ()
    created: datetime.datetime
    """When the build was made (manifest.json's built_at): the document's timestamp."""


def _props(**values: str | None) -> list[Property]:
    return [Property(name=PROPERTY_PREFIX + key, value=value) for key, value in values.items() if value]


def _package_purl(facts: SbomFacts, package: OwnedBy | LinkedPackage) -> PackageURL:
    namespace = PURL_NAMESPACES.get(facts.distro_id, facts.distro_id)
    qualifiers = {"arch": package.arch, "distro": f"{facts.distro_id}-{facts.distro_version}"}
    return PackageURL(package.kind, namespace, package.name, package.version, qualifiers)


def _cpython(facts: SbomFacts) -> Component:
    source = facts.source
    bundled = [_bundled(component) for component in facts.bundled]
    return Component(
        name="cpython",
        version=facts.python_version,
        type=ComponentType.LIBRARY,
        bom_ref=CPYTHON_REF,
        description=f"CPython {facts.python_version}, built from {source.file}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=source.sha256)],
        purl=PackageURL("generic", None, "cpython", facts.python_version, {"download_url": source.url}),
        cpe=f"cpe:2.3:a:python:python:{facts.python_version}:*:*:*:*:*:*:*",
        external_references=[
            ExternalReference(
                type=ExternalReferenceType.SOURCE_DISTRIBUTION,
                url=XsUri(source.url),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=source.sha256)],
            )
        ],
        properties=_props(**{"source-file": source.file, "source-signature": source.signature}),
        components=bundled,
    )


def _bundled(component: BundledComponent) -> Component:
    references = []
    if component.download_location:
        references.append(
            ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(component.download_location))
        )
    return Component(
        name=component.name,
        version=component.version,
        type=ComponentType.LIBRARY,
        bom_ref=f"bundled:{component.name}",
        cpe=component.cpe,
        purl=PackageURL.from_string(component.purl) if component.purl else None,
        external_references=references,
        properties=_props(**{"path": component.path, "version-source": component.version_source}),
    )


def _linked(facts: SbomFacts, package: LinkedPackage) -> Component:
    return Component(
        name=package.name,
        version=package.version,
        type=ComponentType.LIBRARY,
        bom_ref=f"system:{package.name}:{package.arch}",
        scope=ComponentScope.REQUIRED,
        purl=_package_purl(facts, package),
        properties=[Property(name=PROPERTY_PREFIX + "soname", value=soname) for soname in package.sonames],
    )


def _tool(facts: SbomFacts, tool: Tool) -> Component:
    return Component(
        name=tool.name,
        version=tool.version,
        type=ComponentType.APPLICATION,
        bom_ref=f"toolchain:{tool.name}",
        scope=ComponentScope.EXCLUDED,
        description=f"toolchain ({tool.role})",
        purl=_package_purl(facts, tool.package) if tool.package else None,
        properties=_props(**{"role": tool.role, "package": tool.package.name if tool.package else None}),
    )


def serial_number(facts: SbomFacts) -> uuid.UUID:
    """Stable per build: the same build and source always get the same serial number."""
    name = (
        f"buildfarm:{facts.python_version}/{facts.platform}/{facts.arch}/{facts.build}:{facts.source.sha256}"
    )
    return uuid.uuid5(uuid.NAMESPACE_URL, name)


def make_sbom(facts: SbomFacts) -> str:
    """The CycloneDX 1.6 JSON document of a build (sorted keys, 2-space indent, final newline)."""
    build = Component(
        name="python",
        version=facts.python_version,
        type=ComponentType.APPLICATION,
        bom_ref=BUILD_REF,
        description=f"CPython {facts.python_version} for {facts.platform} {facts.arch}, build {facts.build}",
        properties=_props(platform=facts.platform, arch=facts.arch, build=str(facts.build)),
    )
    cpython = _cpython(facts)
    linked = [_linked(facts, package) for package in facts.linked]
    tools = [_tool(facts, tool) for tool in facts.toolchain]
    bom = Bom(
        serial_number=serial_number(facts),
        metadata=BomMetaData(component=build, timestamp=facts.created.astimezone(datetime.UTC)),
        components=[cpython, *linked, *tools],
    )
    bom.register_dependency(build, [cpython, *linked])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
