"""Verify a whole store (its root, local or over http(s)) against pinned public keys:
versions.json.sig is a signature of versions.json by one of the keys, and (unless only the
catalog is asked for) every build and runtime versions.json lists verifies (verify_build),
with the sha256 versions.json gives each artifact equal to its build's SHA256SUMS.

Keys are pinned by file (PEM) or by fingerprint ("SHA256:<hex>"): a fingerprint names the
store's keys/<hex>.pub, which is fetched and must have that fingerprint.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from buildfarm.digests import SHA256_HEX
from buildfarm.errors import UsageError
from buildfarm.layout import MANIFEST_FILE, SUMS_FILE, VERSIONS_KEY, public_key_key

from .signing import FINGERPRINT_PREFIX, SigningError, fingerprint, load_public_key
from .verify_build import (
    BuildFiles,
    CheckedBuild,
    check_build,
    check_signature,
    is_url,
    manifest_directory,
    open_build,
    parse_json,
)

_FINGERPRINT = re.compile(f"{FINGERPRINT_PREFIX}{SHA256_HEX}", re.ASCII)
# builds/<version>/<platform>/<arch>/<build> and runtimes/<name>/<version>/<platform>/<arch>/<build>,
# as versions.json's manifest keys name them; each segment starts with a letter or digit, so
# none is "." or ".." (verify reads these directories from disk too: never outside the store)
_SEGMENT = r"[0-9A-Za-z][0-9A-Za-z._+-]{0,127}"
_BUILD_DIR = re.compile(
    rf"(builds|runtimes/{_SEGMENT})/{_SEGMENT}/{_SEGMENT}/[0-9A-Za-z_]+/[1-9][0-9]{{0,8}}", re.ASCII
)


def is_store_root(files: BuildFiles) -> bool:
    """A store root has versions.json and no SHA256SUMS or manifest.json of its own."""
    return (
        files.read(SUMS_FILE) is None
        and files.read(MANIFEST_FILE) is None
        and files.read(VERSIONS_KEY) is not None
    )


def normalized_location(location: str) -> str:
    """A build directory's path or URL spelled one way, so that its build directory is found
    however it was spelled ("./2", ".../2/.", "...//2"): a URL with its path's empty and "."
    segments dropped and ".." resolved, as urljoin does for every file fetched from it; a path
    absolute and normalized, or where that is not the same directory (".." after a symbolic
    link), the real path."""
    if is_url(location):
        return urllib.parse.urljoin(location.rstrip("/") + "/", ".")
    absolute = os.path.abspath(location)
    if os.path.exists(location) and not (os.path.exists(absolute) and os.path.samefile(absolute, location)):
        return os.path.realpath(location)
    return absolute


def locate_build(location: str) -> tuple[str, str] | None:
    """(store root, build directory in it) of a build directory's path or URL; None when it
    does not end in builds/<version>/<platform>/<arch>/<build> or a runtime's
    runtimes/<name>/.... The root of a relative path is relative too."""
    parts = normalized_location(location).rstrip("/").split("/")
    # The runtimes layout first: a runtime may be named "builds", and runtimes/builds/<version>/...
    # is then that runtime's build, not a Python build in a store at runtimes/.
    for depth in (6, 5):
        directory = "/".join(parts[-depth:])
        if len(parts) > depth and _BUILD_DIR.fullmatch(directory):
            root = "/".join(parts[:-depth]) or "/"
            relative = not is_url(location) and not os.path.isabs(location)
            return (os.path.relpath(root) if relative else root), directory
    return None


def store_root_of(location: str) -> str | None:
    """The store root of a build directory's path or URL (locate_build's root)."""
    located = locate_build(location)
    return located[0] if located else None


def read_pinned_keys(pins: Sequence[str], root: Callable[[], BuildFiles | None]) -> list[bytes]:
    """The PEM of each --pubkey: a file, or a fingerprint found under the store's keys/."""
    keys = []
    for pin in pins:
        if _FINGERPRINT.fullmatch(pin):
            store = root()
            pem = store.read(public_key_key(pin)) if store is not None else None
            if pem is None:
                raise UsageError(
                    f"--pubkey {pin}: no {public_key_key(pin)} in the store (pass the key's file)"
                )
        elif pin.startswith(FINGERPRINT_PREFIX):
            raise UsageError(f"--pubkey {pin!r}: a fingerprint is SHA256: and 64 lowercase hex digits")
        else:
            try:
                pem = Path(pin).read_bytes()
            except OSError as error:
                raise UsageError(f"--pubkey {pin}: {error.strerror}") from None
        try:
            load_public_key(pem)
            shown = fingerprint(pem)
        except SigningError as error:
            raise UsageError(f"--pubkey {pin}: {error}") from None
        if _FINGERPRINT.fullmatch(pin) and shown != pin:
            raise UsageError(f"--pubkey {pin}: the store's {public_key_key(pin)} is the key {shown}")
        keys.append(pem)
    return keys


def verify_catalog(root: BuildFiles, keys: Sequence[bytes]) -> tuple[list[str], object]:
    """(problems, versions.json parsed or None): its signature by one of keys."""
    data = root.read(VERSIONS_KEY)
    if data is None:
        return [f"{VERSIONS_KEY}: missing (is {root.where} a store?)"], None
    problems = check_signature(root, VERSIONS_KEY, data, keys)
    document, json_problems = parse_json(VERSIONS_KEY, data)
    return problems + json_problems, document


def _cells(tree: object, depth: int) -> list[dict]:
    """The leaves `depth` levels down nested objects (versions.json's cells)."""
    if not isinstance(tree, dict):
        return []
    if depth == 0:
        return [tree]
    return [cell for child in tree.values() for cell in _cells(child, depth - 1)]


def published_builds(document: object) -> list[tuple[str, dict[str, str]]]:
    """(build dir, artifact key -> sha256) of every build and runtime versions.json lists."""
    document = document if isinstance(document, dict) else {}
    found = []
    for cell in _cells(document.get("builds"), 3) + _cells(document.get("runtimes"), 4):
        manifest = cell.get("manifest")
        if not isinstance(manifest, str) or not manifest.endswith(f"/{MANIFEST_FILE}"):
            continue
        listed = {
            str(a.get("key")): str(a.get("sha256"))
            for a in cell.get("artifacts") or []
            if isinstance(a, dict)
        }
        found.append((manifest.removesuffix(f"/{MANIFEST_FILE}"), listed))
    return sorted(found)


def check_catalog_sums(directory: str, sums: dict[str, str], listed: dict[str, str]) -> list[str]:
    """versions.json's artifacts against the build's verified SHA256SUMS: each in the build's
    directory (what installers download) with the sha256 the list gives."""
    problems = []
    for key, sha256 in sorted(listed.items()):
        home, _, name = key.rpartition("/")
        if home != directory:
            problems.append(f"{VERSIONS_KEY}: artifact {key} is not in its build's directory {directory}")
        elif sums and sums.get(name) != sha256:
            problems.append(f"{VERSIONS_KEY}: {key} has sha256 {sha256}, its {SUMS_FILE} {sums.get(name)}")
    return problems


def check_home(directory: str, manifest: Any) -> list[str]:
    """A build is where its manifest says it was published (a signed build copied to another
    build number's directory is not that build)."""
    home = manifest_directory(manifest)
    if manifest is None or home == directory:
        return []
    return [f"{MANIFEST_FILE}: the build of {home or 'no directory'}, found at {directory}"]


def verify_located_build(location: str, files: BuildFiles, keys: Sequence[bytes]) -> list[str]:
    """verify_build, and where the location ends in a store's build directory
    (builds/<version>/<platform>/<arch>/<build>, or a runtime's), that the manifest says it is
    that directory's build."""
    located = locate_build(location)
    if located is None:
        return check_build(files, keys).problems
    return check_build_at(located[1], files, keys).problems


def check_build_at(directory: str, files: BuildFiles, keys: Sequence[bytes]) -> CheckedBuild:
    """check_build of the build at a store's `directory`, and check_home's verdict with it."""
    checked = check_build(files, keys)
    return checked._replace(problems=checked.problems + check_home(directory, checked.manifest))


def verify_store(location: str, root: BuildFiles, keys: Sequence[bytes], *, builds: bool = True) -> list[str]:
    """Every problem of the store at root ([] when it verifies): the catalog's signature and,
    with builds, every published build (each line names the build's file from the root)."""
    problems, document = verify_catalog(root, keys)
    if not builds:
        return problems
    base = location.rstrip("/")
    for directory, listed in published_builds(document):
        if not _BUILD_DIR.fullmatch(directory):
            problems.append(f"{VERSIONS_KEY}: {directory!r} is not a build directory")
            continue
        try:
            build = open_build(f"{base}/{directory}")
        except UsageError:
            problems.append(f"{directory}: missing (listed in {VERSIONS_KEY})")
            continue
        checked = check_build_at(directory, build, keys)
        problems += [f"{directory}/{problem}" for problem in checked.problems]
        problems += check_catalog_sums(directory, checked.sums, listed)
    return problems
