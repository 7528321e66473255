"""versions.json's nested maps (builds[version][platform][arch], runtimes[name][version][platform]
[arch]) walked with their shape checked: a level or entry that is not a JSON object is a
CatalogError naming it, not an AttributeError in the middle of a merge or a page (DESIGN
"versions.json"). versions_json.check_catalog checks the rest when the catalog is read, with
check_entry_keys: every key an entry names is a file of its own build's directory (a catalog
pointing elsewhere, "../../etc/passwd" or another cell's build, is refused before anything is
derived from it)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from buildfarm.errors import BuildfarmError
from buildfarm.layout import VERSIONS_KEY, manifest_key
from buildfarm.store import StoreError, check_key

Path = tuple[str, ...]

_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "true or false"),  # before int: a bool is an int
    (dict, "an object"),
    (list, "a list"),
    (str, "a string"),
    (int, "a number"),
    (float, "a number"),
)


class CatalogError(BuildfarmError, ValueError):
    """versions.json does not have the documented shape; the message names the bad entry, e.g.
    "versions.json builds/3.13.5/debian-12/x86_64: build: input should be a valid integer, not '1'".
    A ValueError too: the commands report a store's unreadable document in one line."""


def catalog_error(path: tuple[object, ...], problem: str) -> CatalogError:
    """The CatalogError for the entry at path (("builds", "3.13.5") -> builds/3.13.5)."""
    return CatalogError(f"{VERSIONS_KEY} {'/'.join(str(part) for part in path)}: {problem}")


def json_type(value: object) -> str:
    """What a JSON value is, as an error says it: 'a list', 'null', ..."""
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def nested_entries(document: dict[str, Any], field: str, depth: int) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(keys, entry) for every entry `depth` keys below document[field] (a field that is missing
    or null has none); CatalogError naming the first level or entry that is not an object. What
    an entry holds is not checked here."""

    def walk(path: Path, node: object, levels: int) -> Iterator[tuple[Path, dict[str, Any]]]:
        if not isinstance(node, dict):
            raise catalog_error((field, *path), f"expected an object, found {json_type(node)}")
        if levels == 0:
            yield path, node
            return
        for key, value in node.items():
            yield from walk((*path, key), value, levels - 1)

    top = document.get(field)
    if top is not None:
        yield from walk((), top, depth)


@functools.lru_cache(maxsize=4096)
def _valid_segment(segment: str) -> bool:
    """check_key's rule for one segment, remembered: versions.json repeats its platforms, arches
    and file names in every cell, and every read of it checks every key."""
    try:
        check_key(segment)
    except StoreError:
        return False
    return True


def _key_error(key: str) -> str | None:
    """check_key's message for key, or None if it is a valid store key."""
    if all(map(_valid_segment, key.split("/"))):  # "" segments (leading, trailing, //) fail
        return None
    try:
        check_key(key)
    except StoreError as error:
        return str(error)
    return None


def _key_problem(key: str, directory: str) -> str | None:
    """Why key is not the key of a file directly in the store directory `directory` (None: it is)."""
    if problem := _key_error(key):
        return problem
    if key.rpartition("/")[0] != directory:
        return f"{key!r} is not in the build's directory {directory}"
    return None


def check_entry_keys(path: Path, directory: str, entry: dict[str, Any]) -> None:
    """CatalogError naming the entry at path unless its directory (the build's, from the entry's
    own cell and build) is a store key, each artifact's key is a file in it, and its manifest
    (when the entry names one) is that directory's manifest.json. Keys that are not strings are
    left to the entry's model check."""
    if problem := _key_error(directory):
        raise catalog_error(path, f"not a build directory: {problem}")
    artifacts = entry.get("artifacts")
    inside = directory + "/"
    for index, artifact in enumerate(artifacts if isinstance(artifacts, list) else []):
        key = artifact.get("key") if isinstance(artifact, dict) else None
        if not isinstance(key, str):
            continue
        name = key[len(inside) :] if key.startswith(inside) else ""
        if "/" in name or not _valid_segment(name):  # every read checks every key: the usual case first
            raise catalog_error(path, f"artifacts/{index}/key: {_key_problem(key, directory)}")
    manifest = entry.get("manifest")
    if isinstance(manifest, str) and manifest and manifest != manifest_key(directory):
        raise catalog_error(path, f"manifest: {manifest!r} is not {manifest_key(directory)}")
