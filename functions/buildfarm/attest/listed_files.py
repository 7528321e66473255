"""Does the store still hold every file versions.json lists? The cheap check `status`,
`reindex` and `run` make: each published build's manifest.json and artifacts (the keys
`buildfarm verify` checks, as verify_store.published_builds finds them) against one listing of
keys per version folder, reading and hashing nothing. `buildfarm verify` stays the full check
(signatures, sha256s); this one finds a file deleted, or never copied with the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from buildfarm.catalog import CatalogError
from buildfarm.layout import MANIFEST_FILE, VERSIONS_KEY
from buildfarm.store import Store

from .verify_store import published_builds

SHOWN = 5  # files one error line names; `buildfarm status` lists them all
# builds/<version>/ or runtimes/<name>/<version>/: the folder above <platform>/<arch>/<build>/<file>
_LEVELS_BELOW_VERSION = 4


class MissingFile(NamedTuple):
    """A file versions.json lists for a published build that the store does not hold."""

    build_dir: str  # builds/3.13.5/debian-12/x86_64/1, or a runtime's runtimes/<name>/...
    key: str

    @property
    def cell(self) -> str:
        """3.13.5/debian-12/x86_64 (a runtime's: <name>/<version>/<platform>/<arch>)."""
        return "/".join(self.build_dir.split("/")[1:-1])

    @property
    def build(self) -> str:
        return self.build_dir.rsplit("/", 1)[-1]

    def describe(self) -> str:
        return f"{self.cell} build {self.build}: {self.key}"


def _listing_prefix(key: str) -> str:
    """The folder whose one listing covers key: its version's; a key of fewer levels (a
    catalog entry outside any build directory) is listed as itself."""
    parts = key.rsplit("/", _LEVELS_BELOW_VERSION)
    return f"{parts[0]}/" if len(parts) > _LEVELS_BELOW_VERSION else key


def missing_files(
    store: Store, document: Any, wanted: Callable[[str], bool] | None = None
) -> list[MissingFile]:
    """Every file versions.json (document) lists for a published build, of the build
    directories `wanted` keeps (all without it), that the store does not hold; in catalog
    order. One listing per version folder, nothing read. StoreError if a listing fails."""
    expected = [
        MissingFile(directory, key)
        for directory, listed in published_builds(document)
        if wanted is None or wanted(directory)
        for key in (f"{directory}/{MANIFEST_FILE}", *sorted(listed))
    ]
    listings: dict[str, set[str]] = {}
    for file in expected:
        prefix = _listing_prefix(file.key)
        if prefix not in listings:
            listings[prefix] = {info.key for info in store.list(prefix)}
    return [file for file in expected if file.key not in listings[_listing_prefix(file.key)]]


def missing_files_error(missing: list[MissingFile]) -> CatalogError:
    """The one line that names them (the first SHOWN) and what to do: the same for every
    command, which reports it as the store failure it is."""
    named = "; ".join(file.describe() for file in missing[:SHOWN])
    if len(missing) > SHOWN:
        named += f"; and {len(missing) - SHOWN} more (`buildfarm status` lists them)"
    return CatalogError(
        f"{VERSIONS_KEY} lists {len(missing)} file(s) the store does not hold: {named} "
        "(restore them, or publish a new build of the cell with force; `buildfarm verify` checks "
        "the files that are there)"
    )


def require_listed_files(store: Store, document: Any) -> None:
    """CatalogError (missing_files_error) unless the store holds every file document lists."""
    if missing := missing_files(store, document):
        raise missing_files_error(missing)
