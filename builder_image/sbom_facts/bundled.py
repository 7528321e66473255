"""Third-party code bundled in a CPython source tree, with versions read from the tree itself.

Each library has a probe that reads the version where its code states it (expat.h's
XML_*_VERSION macros, mpdecimal.h's MPD_VERSION, the HACL* revision pinned by refresh.sh,
tiny_sha3's commit in its README). From 3.12 on the tree also has Misc/sbom.spdx.json,
CPython's own SPDX SBOM; it names libraries no header versions (libb2, macholib) and gives
their download location and CPE. Where both speak, the header wins: 3.13.5's sbom.spdx.json
still says expat 2.6.3 while its expat.h (whose checksum that same file records) is 2.7.1.

Standard library only: the builder may run it with the interpreter it has just built.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable
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


def _define(text: str, macro: str) -> str | None:
    match = re.search(rf"^#\s*define\s+{macro}\s+(\S+)", text, re.MULTILINE)
    return match.group(1).strip('"') if match else None


def probe_expat(tree: Path) -> BundledComponent | None:
    header = "Modules/expat/expat.h"
    text = _read(tree, header)
    if text is None:
        return None
    parts = [_define(text, f"XML_{part}_VERSION") for part in ("MAJOR", "MINOR", "MICRO")]
    digits = all(part is not None and re.fullmatch(r"[0-9]+", part) for part in parts)
    version = ".".join(parts) if digits else None  # type: ignore[arg-type]
    cpe = f"cpe:2.3:a:libexpat_project:libexpat:{version}:*:*:*:*:*:*:*" if version else None
    return BundledComponent("expat", version, "Modules/expat", header, cpe=cpe)


def probe_mpdecimal(tree: Path) -> BundledComponent | None:
    header = "Modules/_decimal/libmpdec/mpdecimal.h"
    text = _read(tree, header)
    if text is None:
        return None
    version = _define(text, "MPD_VERSION")
    if version is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)*", version):
        version = None
    cpe = f"cpe:2.3:a:bytereef:mpdecimal:{version}:*:*:*:*:*:*:*" if version else None
    return BundledComponent("mpdecimal", version, "Modules/_decimal/libmpdec", header, cpe=cpe)


def probe_hacl_star(tree: Path) -> BundledComponent | None:
    script = "Modules/_hacl/refresh.sh"
    text = _read(tree, script)
    if text is None:
        return None
    match = re.search(r"^expected_hacl_star_rev=([0-9a-f]{40})$", text, re.MULTILINE)
    revision = match.group(1) if match else None
    return BundledComponent("hacl-star", revision, "Modules/_hacl", script)


def probe_tiny_sha3(tree: Path) -> BundledComponent | None:
    readme = "Modules/_sha3/README.txt"
    text = _read(tree, readme)
    if text is None or "tiny_sha3" not in text:
        return None
    match = re.search(r"^commit ([0-9a-f]{40})$", text, re.MULTILINE)
    return BundledComponent("tiny_sha3", match.group(1) if match else None, "Modules/_sha3", readme)


def probe_keccak(tree: Path) -> BundledComponent | None:
    """The Keccak Code Package of 3.6-3.10's _sha3: its README names no release."""
    if not (tree / "Modules/_sha3/kcp").is_dir():
        return None
    return BundledComponent("keccak-code-package", None, "Modules/_sha3/kcp", "none")


def probe_libb2(tree: Path) -> BundledComponent | None:
    """BLAKE2's reference code: versioned only by Misc/sbom.spdx.json (as libb2)."""
    if not (tree / "Modules/_blake2/impl").is_dir():
        return None
    return BundledComponent("libb2", None, "Modules/_blake2/impl", "none")


PROBES: tuple[Callable[[Path], BundledComponent | None], ...] = (
    probe_expat,
    probe_mpdecimal,
    probe_hacl_star,
    probe_libb2,
    probe_tiny_sha3,
    probe_keccak,
)


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
    for probe in PROBES:
        probed = probe(tree)
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
