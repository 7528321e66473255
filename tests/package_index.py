"""A local package index for tests: a PEP 503 "simple" tree of distribution files, served over
loopback HTTP, so pip and uv resolve, download and hash-check real distributions with no network
(wheels from sdist_backend.write_wheel)."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PackageIndex:
    url: str  # the simple index: pip's --index-url, uv's UV_DEFAULT_INDEX
    files: Path  # every distribution file, by name
    sha256: dict[str, str]  # file name -> sha256

    def hashes(self, project: str) -> list[str]:
        prefix = project.replace("-", "_") + "-"
        return [f"sha256:{digest}" for name, digest in sorted(self.sha256.items()) if name.startswith(prefix)]


def write_simple_index(root: Path, files: Path) -> dict[str, str]:
    """root/simple/<project>/index.html linking each file with its sha256 (PEP 503)."""
    sha256 = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files.iterdir()}
    projects: dict[str, list[str]] = {}
    for name in sha256:
        projects.setdefault(name.split("-", 1)[0].replace("_", "-"), []).append(name)
    for project, names in projects.items():
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True)
        links = "".join(
            f'<a href="../../files/{html.escape(n)}#sha256={sha256[n]}">{html.escape(n)}</a>\n' for n in names
        )
        page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return sha256


def serve_package_index(root: Path, http_dir_server: Callable[[Path], str]) -> PackageIndex:
    """The index of root/files (written under root/simple), served by the suite's http_dir_server."""
    files = root / "files"
    sha256 = write_simple_index(root, files)
    return PackageIndex(http_dir_server(root) + "/simple/", files, sha256)
