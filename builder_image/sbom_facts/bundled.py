"""Third-party code bundled in a CPython source tree, with versions read from the tree itself.

PROBES, one row per library, says where its code states the version (expat.h's
XML_*_VERSION macros, mpdecimal.h's MPD_VERSION, the HACL* revision pinned by refresh.sh,
tiny_sha3's commit in its README), or that nothing in the tree does. From 3.12 on the tree
also has Misc/sbom.spdx.json, CPython's own SPDX SBOM; it names libraries no header versions
(libb2, macholib) and gives their download location and CPE. Where both speak, the header
wins: 3.13.5's sbom.spdx.json still says expat 2.6.3 while its expat.h (whose checksum that
same file records) is 2.7.1.

Standard library only: the builder may run it with the interpreter it has just built.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, replace
from pathlib import Path

CPYTHON_SPDX_SBOM = "Misc/sbom.spdx.json"


@dataclass(frozen=True)
class BundledComponent:
    """One bundled library: name as CPython's SBOM names it, version (None: the tree states
    none), where it lives in the tree, and where the version was read."""

    name: str
    version: str | None
    path: str
    version_source: str
    cpe: str | None = None
    purl: str | None = None
    download_location: str | None = None


def _read(tree: Path, relative: str) -> str | None:
    try:
        return (tree / relative).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass(frozen=True)
class Probe:
    """Where one bundled library shows in a CPython tree, and how the tree states its version.

    name: as CPython's SBOM names it; path: its directory in the tree; version_source: the
    file that states the version (None: the directory alone shows the library, and nothing in
    the tree versions it); patterns: one regex per part of the version, each fullmatched
    against the lines of that file (its group is the part; the parts are joined with "."); cpe:
    CPE 2.3's vendor:product, for a version read; marker: text that file must contain for the
    library to be there."""

    name: str
    path: str
    version_source: str | None = None
    patterns: tuple[str, ...] = ()
    cpe: str | None = None
    marker: str | None = None


def _define(macro: str, value: str = r"[0-9]+") -> str:
    """A C header's `#define MACRO value` line (the value quoted or not, a comment after it)."""
    return rf'#\s*define\s+{macro}\s+"?({value})"?(?:\s.*)?'


PROBES: tuple[Probe, ...] = (
    Probe(
        "expat",
        "Modules/expat",
        "Modules/expat/expat.h",
        tuple(_define(f"XML_{part}_VERSION") for part in ("MAJOR", "MINOR", "MICRO")),
        cpe="libexpat_project:libexpat",
    ),
    Probe(
        "mpdecimal",
        "Modules/_decimal/libmpdec",
        "Modules/_decimal/libmpdec/mpdecimal.h",
        (_define("MPD_VERSION", r"[0-9]+(?:\.[0-9]+)*"),),
        cpe="bytereef:mpdecimal",
    ),
    # The HACL* revision pinned by refresh.sh.
    Probe(
        "hacl-star", "Modules/_hacl", "Modules/_hacl/refresh.sh", (r"expected_hacl_star_rev=([0-9a-f]{40})",)
    ),
    # tiny_sha3's commit, in its README (3.11's _sha3).
    Probe(
        "tiny_sha3",
        "Modules/_sha3",
        "Modules/_sha3/README.txt",
        (r"commit ([0-9a-f]{40})",),
        marker="tiny_sha3",
    ),
    # The Keccak Code Package of 3.6-3.10's _sha3: its README names no release.
    Probe("keccak-code-package", "Modules/_sha3/kcp"),
    # BLAKE2's reference code: versioned only by Misc/sbom.spdx.json (as libb2).
    Probe("libb2", "Modules/_blake2/impl"),
)


def _line_group(text: str, pattern: str) -> str | None:
    """The group of the first line of text that pattern fullmatches."""
    for line in text.splitlines():
        match = re.fullmatch(pattern, line)
        if match:
            return match.group(1)
    return None


def probe(tree: Path, library: Probe) -> BundledComponent | None:
    """The library as the tree at `tree` has it (None: not there), with the version it states."""
    if library.version_source is None:
        if not (tree / library.path).is_dir():
            return None
        return BundledComponent(library.name, None, library.path, "none")
    text = _read(tree, library.version_source)
    if text is None or (library.marker is not None and library.marker not in text):
        return None
    parts = [_line_group(text, pattern) for pattern in library.patterns]
    version = ".".join(part for part in parts if part is not None) if None not in parts else None
    cpe = f"cpe:2.3:a:{library.cpe}:{version}:*:*:*:*:*:*:*" if library.cpe and version else None
    return BundledComponent(library.name, version, library.path, library.version_source, cpe=cpe)


def spdx_packages(tree: Path) -> dict[str, BundledComponent]:
    """The packages of the tree's Misc/sbom.spdx.json by name ({} when it has none)."""
    text = _read(tree, CPYTHON_SPDX_SBOM)
    if text is None:
        return {}
    document = json.loads(text)
    files = {entry["SPDXID"]: entry["fileName"] for entry in document.get("files", [])}
    contents: dict[str, list[str]] = {}
    for relation in document.get("relationships", []):
        if relation.get("relationshipType") == "CONTAINS" and relation.get("relatedSpdxElement") in files:
            contents.setdefault(relation["spdxElementId"], []).append(files[relation["relatedSpdxElement"]])
    found = {}
    for package in document.get("packages", []):
        paths = contents.get(package.get("SPDXID"), [])
        refs = {
            ref.get("referenceType"): ref.get("referenceLocator") for ref in package.get("externalRefs", [])
        }
        location = package.get("downloadLocation")
        found[package["name"]] = BundledComponent(
            name=package["name"],
            version=package.get("versionInfo"),
            path=posixpath.commonpath([posixpath.dirname(path) for path in paths]) if paths else "",
            version_source=CPYTHON_SPDX_SBOM,
            cpe=refs.get("cpe23Type"),
            purl=refs.get("purl"),
            download_location=location if location not in (None, "NOASSERTION", "NONE") else None,
        )
    return found


def bundled_components(tree: Path) -> list[BundledComponent]:
    """Every bundled library of the CPython source tree at `tree`, sorted by name."""
    from_spdx = spdx_packages(tree)
    found: dict[str, BundledComponent] = {}
    for library in PROBES:
        probed = probe(tree, library)
        if probed is not None:
            found[probed.name] = _merge(probed, from_spdx.get(probed.name))
    for name, listed in from_spdx.items():
        found.setdefault(name, listed)
    return [found[name] for name in sorted(found)]


def _merge(probed: BundledComponent, listed: BundledComponent | None) -> BundledComponent:
    """The probe's version when it read one; the SPDX file's location and identifiers."""
    if listed is None:
        return probed
    version = probed.version or listed.version
    source = probed.version_source if probed.version else listed.version_source
    cpe = probed.cpe
    if cpe is None and listed.cpe and listed.version == version:
        cpe = listed.cpe
    download = listed.download_location if listed.version == version else None
    return replace(probed, version=version, version_source=source, cpe=cpe, download_location=download)
