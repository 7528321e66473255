"""The CPython sources in ../shared/cpython-src, as the benchmarks use them: one release per
series, and a file:// python.org-shaped mirror of it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[2] / "shared" / "cpython-src"
_TARBALL = re.compile(r"Python-(3\.[0-9]{1,2}\.[0-9]{1,2})\.(tar\.xz|tgz)")
# The distribution interpreter each series is compared with: the Debian release whose
# python3 is that series, and the platform whose root holds it.
REFERENCE = {
    "3.9": ("debian-11", "/usr/bin/python3.9", "bullseye"),
    "3.11": ("debian-12", "/usr/bin/python3.11", "bookworm"),
    "3.13": ("debian-13", "/usr/bin/python3.13", "trixie"),
}


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def newest_source(series: str) -> tuple[str, Path]:
    """(version, tarball) of the newest release of `series` in the shared sources."""
    found = []
    for path in SOURCES.iterdir():
        match = _TARBALL.fullmatch(path.name)
        if match and match[1].rsplit(".", 1)[0] == series:
            found.append((match[1], path))
    if not found:
        raise SystemExit(f"no source of series {series} in {SOURCES}")
    return max(found, key=lambda item: _key(item[0]))


def local_mirror(workdir: Path, version: str, tarball: Path) -> tuple[str, str]:
    """A file:// mirror of one tarball under workdir: (its source URL, its sha256)."""
    directory = workdir / "mirror" / version
    directory.mkdir(parents=True, exist_ok=True)
    (directory / tarball.name).symlink_to(tarball)
    return f"file://{directory / tarball.name}", hashlib.sha256(tarball.read_bytes()).hexdigest()
