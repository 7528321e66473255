"""Layer zips: what Lambda unpacks into /opt, and its size against Lambda's limit.

Lambda's limit covers the unzipped function code and all its layers together: 250 MB, which
its API counts as 262,144,000 bytes ("Unzipped size must be smaller than 262144000 bytes")."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
# A fixed timestamp: the same tree gives the same zip.
ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)


def tree_entries(root: Path) -> list[Path]:
    """Every file, symlink and directory under root, sorted, without following symlinks."""
    entries = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(directory)
        entries.extend(base / name for name in dirnames)
        entries.extend(base / name for name in sorted(filenames))
    return sorted(entries)


def unzipped_bytes(root: Path) -> int:
    """What the tree takes once Lambda unpacks it: file sizes and symlink targets."""
    total = 0
    for path in tree_entries(root):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            total += len(os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            total += info.st_size
    return total


def write_layer_zip(root: Path, zip_path: Path) -> None:
    """Zip the tree (paths relative to root) keeping modes and symlinks, as `zip -y` does, so the
    Python's bin/python3 -> python3.X stays a link."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in tree_entries(root):
            info = path.lstat()
            name = path.relative_to(root).as_posix()
            if stat.S_ISDIR(info.st_mode):
                entry = zipfile.ZipInfo(name + "/", ZIP_DATE_TIME)
                entry.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                archive.writestr(entry, b"")
                continue
            entry = zipfile.ZipInfo(name, ZIP_DATE_TIME)
            entry.create_system = 3  # Unix: the mode bits below are read
            if stat.S_ISLNK(info.st_mode):
                entry.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(entry, os.readlink(path))
                continue
            entry.external_attr = (stat.S_IFREG | stat.S_IMODE(info.st_mode)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(entry, "w") as target:
                while block := source.read(1 << 20):
                    target.write(block)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def megabytes(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"
