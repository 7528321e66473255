"""download-metadata/<platform>.json: what uv reads through UV_PYTHON_DOWNLOADS_JSON_URL, one
document per platform, derived from versions.json."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packaging.version import Version

from buildfarm.platforms import ARCHES
from buildfarm.versions import sort_newest_first


def uv_key(version: str, arch: str) -> str:
    return f"cpython-{version}-linux-{arch}-gnu"


def _arch_order(arch: str) -> int:
    return ARCHES.index(arch) if arch in ARCHES else len(ARCHES)


def uv_download_metadata(
    document: dict[str, Any], platform: str, public_url: Callable[[str], str]
) -> dict[str, dict[str, Any]]:
    """The UV_PYTHON_DOWNLOADS_JSON_URL document for one platform: one entry per published
    (version, arch) that has a tarball; newest first, as uv lists them."""
    entries: dict[str, dict[str, Any]] = {}
    for version in sort_newest_first(list((document.get("builds") or {}).keys())):
        arches = (document["builds"][version] or {}).get(platform) or {}
        parsed = Version(version)
        prerelease = f"{parsed.pre[0]}{parsed.pre[1]}" if parsed.pre else ""
        for arch in sorted(arches, key=_arch_order):
            entry = arches[arch]
            tarball = next((a for a in entry.get("artifacts", []) if a.get("type") == "tarball"), None)
            if tarball is None:
                continue
            entries[uv_key(version, arch)] = {
                "name": "cpython",
                "arch": {"family": arch, "variant": None},
                "os": "linux",
                "libc": "gnu",
                "major": parsed.major,
                "minor": parsed.minor,
                "patch": parsed.micro,
                "prerelease": prerelease,
                "url": public_url(tarball["key"]),
                "sha256": tarball["sha256"],
                "variant": None,
                "build": str(entry["build"]),
            }
    return entries
