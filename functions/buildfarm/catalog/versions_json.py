"""versions.json, the published catalog and the farm's source of truth (DESIGN "versions.json").

Updated read-modify-write with conditional puts, retried on conflict, so concurrent publishers
never lose each other's cells. A cell is only ever replaced by a higher build of itself.

Besides builds, versions.json keeps `failing`: failing[version][platform][arch] for a cell whose
newest decided build failed, with when and at which build it started failing, until a later
build of the cell is published. Optional (a catalog without it has no failing cell), so older
catalogs load and older publishers keep it as they keep any field they do not know.

Runtimes (buildfarm.runtimes) are published under their own key, `runtimes`:
runtimes[name][version][platform][arch] (RuntimeCatalogCell), so installers that read
`python_versions` and `builds` never see them. Merged with the same conditional write.

read_versions checks what it reads (check_catalog): a malformed catalog is a CatalogError naming
the bad entry before anything is derived from it or merged into it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from packaging.version import Version
from pydantic import ValidationError

from buildfarm.catalog.entries import (
    CatalogCell,
    CatalogFailure,
    RuntimeCatalogCell,
    RuntimeCell,
    StoredCell,
)
from buildfarm.catalog.shape import CatalogError, catalog_error, check_entry_keys, nested_entries
from buildfarm.errors import first_error
from buildfarm.layout import VERSIONS_KEY, Cell, artifact_dir, runtime_artifact_dir
from buildfarm.releases import iso
from buildfarm.store import Store, StoreConflict, StoreError, StoreNotFound
from buildfarm.versions import VersionError, parse_release, sort_newest_first

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from buildfarm.attest.signing import Signer

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FAILING_FIELD = "failing"


def parse_cell(name: str) -> Cell:
    version, platform, arch = name.split("/")
    return version, platform, arch


def empty_versions() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "updated": None, "python_versions": [], "builds": {}}


def published_builds(document: dict[str, Any]) -> dict[Cell, int]:
    """{(version, platform, arch): build} for every published cell (no model parsing: this is hot)."""
    found: dict[Cell, int] = {}
    builds = document.get("builds") or {}
    if not isinstance(builds, dict):
        return found
    for version, platforms in builds.items():
        if not isinstance(platforms, dict):
            continue
        for platform, arches in platforms.items():
            if not isinstance(arches, dict):
                continue
            for arch, entry in arches.items():
                if isinstance(entry, dict) and isinstance(entry.get("build"), int):
                    found[(version, platform, arch)] = entry["build"]
    return found


def iter_cells(document: dict[str, Any]) -> Iterable[tuple[Cell, dict[str, Any]]]:
    """Every builds entry with its cell; CatalogError for a level or entry that is not an object."""
    for path, entry in nested_entries(document, "builds", 3):
        version, platform, arch = path
        yield (version, platform, arch), entry


def failing_cells(document: dict[str, Any]) -> dict[Cell, CatalogFailure]:
    """Every failing cell on record; entries that do not parse are left out (a page or a plan
    must not fail over one), so a catalog without the field has none."""
    found: dict[Cell, CatalogFailure] = {}
    failing = document.get(FAILING_FIELD)
    if not isinstance(failing, dict):
        return found
    for version, platforms in failing.items():
        for platform, arches in (platforms if isinstance(platforms, dict) else {}).items():
            for arch, entry in (arches if isinstance(arches, dict) else {}).items():
                try:
                    found[(version, platform, arch)] = CatalogFailure.model_validate(entry)
                except ValidationError:
                    log.warning(
                        "versions.json: ignoring malformed failing entry %s/%s/%s", version, platform, arch
                    )
    return found


def _nested(cells: dict[Cell, dict[str, Any]]) -> dict[str, Any]:
    """{cell: entry} -> {version: {platform: {arch: entry}}}, versions newest first."""
    nested: dict[str, Any] = {}
    for (version, platform, arch), entry in sorted(cells.items()):
        nested.setdefault(version, {}).setdefault(platform, {})[arch] = entry
    return {version: nested[version] for version in sort_newest_first(list(nested))}


def _with_failing(document: dict[str, Any], failing: dict[Cell, dict[str, Any]]) -> dict[str, Any]:
    """The document with `failing` replaced (left out when no cell fails)."""
    updated = {key: value for key, value in document.items() if key != FAILING_FIELD}
    if failing:
        updated[FAILING_FIELD] = _nested(failing)
    return updated


def published_platforms(document: dict[str, Any]) -> set[str]:
    """The platforms with at least one published cell."""
    return {platform for (_, platform, _), _ in iter_cells(document)}


def merge_cells(
    document: dict[str, Any], cells: dict[Cell, CatalogCell], now: datetime
) -> tuple[dict[str, Any], list[Cell]]:
    """versions.json with `cells` merged in: (new document, cells actually added or replaced).

    An existing entry is replaced only by a higher build (an older, slower publisher never
    rolls a cell back). python_versions: newest first, versions with at least one cell.
    """
    builds: dict[str, Any] = {}
    for (version, platform, arch), existing in iter_cells(document):
        builds.setdefault(version, {}).setdefault(platform, {})[arch] = existing
    merged = {
        "schema_version": SCHEMA_VERSION,
        "updated": document.get("updated"),
        "python_versions": [],
        "builds": builds,
    }
    for key, value in document.items():
        if key not in merged:
            merged[key] = value  # keep fields a newer schema may have added
    accepted: list[Cell] = []
    for (version, platform, arch), entry in cells.items():
        arches = merged["builds"].setdefault(version, {}).setdefault(platform, {})
        existing = arches.get(arch)
        if (
            isinstance(existing, dict)
            and isinstance(existing.get("build"), int)
            and existing["build"] >= entry.build
        ):
            continue
        arches[arch] = entry.as_json()
        accepted.append((version, platform, arch))
    merged["builds"] = {
        version: {platform: dict(sorted(arches.items())) for platform, arches in sorted(platforms.items())}
        for version, platforms in sorted(
            merged["builds"].items(), key=lambda kv: Version(kv[0]), reverse=True
        )
        if any(platforms.values())
    }
    merged["python_versions"] = sort_newest_first(list(merged["builds"]))
    if accepted:
        merged["updated"] = iso(now)
        failing = failing_cells(document)
        cleared = [cell for cell in accepted if cell in failing and failing[cell].build <= cells[cell].build]
        if cleared:
            kept = {
                cell: entry.model_dump(mode="json") for cell, entry in failing.items() if cell not in cleared
            }
            merged = _with_failing(merged, kept)
    return merged, accepted


def merge_failures(
    document: dict[str, Any], failures: dict[Cell, tuple[int, str]], now: datetime
) -> tuple[dict[str, Any], list[Cell]]:
    """versions.json with failed builds recorded under `failing`: (new document, cells recorded).

    A failure is recorded only if it is newer than both the cell's published build and its
    failure on record (deciding a build twice changes nothing); a cell that was already failing
    keeps when and at which build it started to. Publishing that build or a later one clears it
    (merge_cells).
    """
    published = published_builds(document)
    failing = failing_cells(document)
    recorded: list[Cell] = []
    for cell, (build, reason) in failures.items():
        previous = failing.get(cell)
        if published.get(cell, 0) >= build or (previous and previous.build >= build):
            continue
        failing[cell] = CatalogFailure(
            build=build,
            reason=reason,
            failed=iso(now),
            since_build=previous.since_build if previous else build,
            since=previous.since if previous else iso(now),
        )
        recorded.append(cell)
    if not recorded:
        return document, []
    base = document or empty_versions()
    return _with_failing(
        base, {cell: entry.model_dump(mode="json") for cell, entry in failing.items()}
    ), recorded


RUNTIMES_FIELD = "runtimes"


def runtime_cells(document: dict[str, Any]) -> dict[RuntimeCell, RuntimeCatalogCell]:
    """Every published runtime cell; entries that do not parse are left out (a page or a plan
    must not fail over one), so a catalog without the field has none."""
    found: dict[RuntimeCell, RuntimeCatalogCell] = {}
    runtimes = document.get(RUNTIMES_FIELD)
    for name, versions in (runtimes if isinstance(runtimes, dict) else {}).items():
        for version, platforms in (versions if isinstance(versions, dict) else {}).items():
            for platform, arches in (platforms if isinstance(platforms, dict) else {}).items():
                for arch, entry in (arches if isinstance(arches, dict) else {}).items():
                    try:
                        found[(name, version, platform, arch)] = RuntimeCatalogCell.model_validate(entry)
                    except ValidationError:
                        log.warning("versions.json: ignoring malformed runtime %s/%s/%s/%s",
                                    name, version, platform, arch)  # fmt: skip
    return found


def merge_runtime_cells(
    document: dict[str, Any], cells: dict[RuntimeCell, RuntimeCatalogCell], now: datetime
) -> tuple[dict[str, Any], list[RuntimeCell]]:
    """versions.json with runtime cells merged under `runtimes`: (new document, cells added or
    replaced). As merge_cells: only a higher build replaces an entry; everything else is kept."""
    merged = {**(document or empty_versions())}
    entries: dict[RuntimeCell, Any] = {}
    for (name, version, platform, arch), entry in nested_entries(merged, RUNTIMES_FIELD, 4):
        entries[(name, version, platform, arch)] = entry
    accepted: list[RuntimeCell] = []
    for cell, entry in cells.items():
        existing = entries.get(cell)
        if (
            isinstance(existing, dict)
            and isinstance(existing.get("build"), int)
            and existing["build"] >= entry.build
        ):
            continue
        entries[cell] = entry.as_json()
        accepted.append(cell)
    if not accepted:
        return document, []
    nested: dict[str, Any] = {}
    for (name, version, platform, arch), entry in sorted(entries.items()):
        nested.setdefault(name, {}).setdefault(version, {}).setdefault(platform, {})[arch] = entry
    merged[RUNTIMES_FIELD] = nested
    merged["updated"] = iso(now)
    return merged, accepted


def _first_problem(error: ValidationError) -> str:
    """A ValidationError's first error in one line: 'artifacts/0/key: field required (and 2 more)'."""
    return first_error(error, sep="/", describe=_problem, count_rest=True)


def _problem(first: ErrorDetails) -> str:
    """pydantic's message, lowercased as the catalog's other messages are, with the bad value."""
    problem = first["msg"][:1].lower() + first["msg"][1:]
    if first["type"] != "missing":
        shown = repr(first["input"])
        problem += f", not {shown if len(shown) <= 40 else shown[:37] + '...'}"
    return problem


def check_catalog(document: dict[str, Any]) -> dict[str, Any]:
    """document, if every part the farm derives from or merges into has the documented shape;
    else CatalogError naming the first bad entry. Checked: python_versions (a list of strings),
    builds (objects down to each cell; versions are releases; each cell a StoredCell, nothing
    coerced: a build "1" is not a build; every key a cell names a file of its build's directory:
    check_entry_keys) and runtimes (objects down to each entry, the keys of an entry with a
    build number checked as a cell's; the rest of what an entry holds is runtime_cells' to
    judge, which leaves out one that does not parse, as failing_cells does for `failing`).
    Fields it does not know are kept, as everywhere."""
    versions = document.get("python_versions")
    strings = isinstance(versions, list) and all(isinstance(version, str) for version in versions)
    if versions is not None and not strings:
        raise catalog_error(("python_versions",), "expected a list of strings")
    for cell, entry in iter_cells(document):
        try:
            stored = StoredCell.model_validate(entry, strict=True)
        except ValidationError as error:
            raise catalog_error(("builds", *cell), _first_problem(error)) from None
        check_entry_keys(("builds", *cell), artifact_dir(*cell, stored.build), entry)
    for version in document.get("builds") or {}:  # an object: iter_cells checked it
        try:
            parse_release(version)
        except VersionError as error:
            raise catalog_error(("builds", version), str(error)) from None
    for runtime, entry in nested_entries(document, RUNTIMES_FIELD, 4):
        build = entry.get("build")
        if isinstance(build, int) and not isinstance(build, bool) and build >= 1:
            name, version, platform, arch = runtime
            directory = runtime_artifact_dir(name, version, platform, arch, build)
            check_entry_keys((RUNTIMES_FIELD, *runtime), directory, entry)
    return document


def read_versions(store: Store) -> tuple[dict[str, Any], str | None]:
    """(versions.json, etag) or (empty catalog, None) when nothing is published yet. CatalogError
    (a ValueError) for a catalog check_catalog refuses; StoreError for one that is not JSON."""
    try:
        document, etag = store.read_json(VERSIONS_KEY)
    except StoreNotFound:
        return empty_versions(), None
    if not isinstance(document, dict):
        raise CatalogError(f"{store.url(VERSIONS_KEY)} is not a JSON object")
    return check_catalog(document), etag


def versions_etag(store: Store) -> str | None:
    """versions.json's current ETag, None when there is none yet."""
    info = store.head(VERSIONS_KEY)
    return info.etag if info else None


AnyCell = TypeVar("AnyCell", Cell, RuntimeCell)


def _sign(store: Store, signer: Signer) -> None:
    """versions.json.sig after a write, and the signing key pinned in install.sh if a rotated key
    is not yet (catalog.install_script.pin_signing_key): what installers check it with."""
    from buildfarm.attest.signing import fingerprint  # cryptography, lazily
    from buildfarm.attest.store_keys import sign_versions_json
    from buildfarm.catalog.install_script import pin_signing_key

    sign_versions_json(store, signer)
    try:
        pin_signing_key(store, fingerprint(signer.public_key_pem()))
    except (StoreError, ValueError) as error:  # Finalize rewrites install.sh with every listed key
        log.warning("install.sh: cannot pin the signing key: %s", error)


def _sign_if_stale(store: Store, signer: Signer) -> None:
    """Nothing to merge, but an earlier run of the same update may have died between writing
    versions.json and signing it (a retried publish: its cell is merged already). Checked, two
    reads when the signature is good; else signed as after a write."""
    from buildfarm.attest.store_keys import catalog_signed_by  # cryptography, lazily

    if not catalog_signed_by(store, signer):
        log.info("versions.json.sig is not the signature of versions.json: signing it again")
        _sign(store, signer)


def _update_conditionally(
    store: Store,
    merge: Callable[[dict[str, Any]], tuple[dict[str, Any], list[AnyCell]]],
    max_attempts: int,
    sleep: Callable[[float], None],
    signer: Signer | None = None,
) -> tuple[dict[str, Any], list[AnyCell]]:
    """Read versions.json, merge, write with If-Match / If-None-Match; retried on conflict.
    With a signer, versions.json.sig follows the write (buildfarm.attest.store_keys), and is
    made good when there was nothing to write (_sign_if_stale)."""
    delay = 0.01
    for attempt in range(1, max_attempts + 1):
        document, etag = read_versions(store)
        merged, accepted = merge(document)
        if not accepted:
            if signer is not None:
                _sign_if_stale(store, signer)
            return document, []
        try:
            if etag is None:
                store.put_json(VERSIONS_KEY, merged, if_none_match=True)
            else:
                store.put_json(VERSIONS_KEY, merged, if_match=etag)
            if attempt > 1:
                log.info("versions.json updated after %d attempts", attempt)
            if signer is not None:
                _sign(store, signer)
            return merged, accepted
        except StoreConflict:
            # Someone else published in between: back off with jitter, re-read, re-merge.
            sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 0.5)
    raise RuntimeError(f"versions.json: gave up after {max_attempts} conflicting attempts")


def update_versions(
    store: Store,
    cells: dict[Cell, CatalogCell],
    now: datetime,
    *,
    max_attempts: int = 200,
    sleep: Callable[[float], None] = time.sleep,
    signer: Signer | None = None,
) -> tuple[dict[str, Any], list[Cell]]:
    """Merge cells into versions.json with If-Match / If-None-Match, retried on conflict."""
    return _update_conditionally(
        store, lambda document: merge_cells(document, cells, now), max_attempts, sleep, signer
    )


def record_failures(
    store: Store,
    failures: dict[Cell, tuple[int, str]],
    now: datetime,
    *,
    max_attempts: int = 200,
    sleep: Callable[[float], None] = time.sleep,
    signer: Signer | None = None,
) -> tuple[dict[str, Any], list[Cell]]:
    """Record failed builds ({cell: (build, reason)}) under versions.json's `failing`, as
    update_versions merges published ones; returns (document, cells recorded)."""
    return _update_conditionally(
        store, lambda document: merge_failures(document, failures, now), max_attempts, sleep, signer
    )


def update_runtimes(
    store: Store,
    cells: dict[RuntimeCell, RuntimeCatalogCell],
    now: datetime,
    *,
    max_attempts: int = 200,
    sleep: Callable[[float], None] = time.sleep,
    signer: Signer | None = None,
) -> tuple[dict[str, Any], list[RuntimeCell]]:
    """Merge runtime cells into versions.json's `runtimes`, as update_versions merges builds."""
    return _update_conditionally(
        store, lambda document: merge_runtime_cells(document, cells, now), max_attempts, sleep, signer
    )
