"""Files of a staged tree: checksums, ELF or not, walking, sizes. Standard library only, Python 3.6+."""

import hashlib
import os


def sha256_digest(path):
    """The SHA-256 of a file's content, as bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def sha256_of(path):
    """The SHA-256 of a file's content, as lowercase hex (SHA256SUMS, manifest.json)."""
    return sha256_digest(path).hex()


def is_elf(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def walk_files(root):
    """Every regular file under root (symbolic links left out)."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                yield path


def tree_size(root):
    return sum(os.lstat(path).st_size for path in walk_files(root))
