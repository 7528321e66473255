"""Upstream CPython releases the farm knows (releases.json), their refresh from python.org,
and the version policy that says which of them the schedule builds.

releases.json only ever holds releases whose source sha256 is known. A refresh adds what
python.org lists; it never removes entries and never changes a known checksum. Any bad or
partial answer from python.org leaves the catalog as it was (and is logged).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from buildfarm.config import FarmConfig
from buildfarm.digests import Sha256
from buildfarm.layout import RELEASES_KEY
from buildfarm.python_org import (
    MAX_NEW_PER_REFRESH,
    SOURCE_SUFFIXES,
    ReleaseFetchError,
    check_series,
    fetch_new_releases,
    source_file_name,
)
from buildfarm.store import Store, StoreConflict, StoreError, StoreNotFound
from buildfarm.versions import VersionError, is_series, parse_release, series_of

log = logging.getLogger(__name__)

SEED_RESOURCE = "releases-seed.json"
# After a failed refresh, the next attempt waits this long, or the max age if that is shorter.
RETRY_AFTER_FAILURE = timedelta(hours=1)


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    sha256: Sha256
    url: str  # where python.org publishes the source tarball (informational; specs use the mirror)
    # Which of python.org's source files sha256 is the digest of. Catalogs written before this
    # field existed only ever held .tar.xz digests, hence the default.
    file: str | None = Field(default=None, validate_default=True)
    release_date: str | None = None
    prerelease: bool = False

    @field_validator("version", mode="after")
    @classmethod
    def _version(cls, value: str) -> str:
        # A catalog entry is compared with Version() everywhere: reject what it could not parse
        # (e.g. "3.13.\u0669") here, where it is a ValidationError, not an InvalidVersion in the planner.
        parse_release(value)
        return value

    @field_validator("file", mode="after")
    @classmethod
    def _file(cls, value: str | None, info: ValidationInfo) -> str:
        version = info.data.get("version", "")
        allowed = [source_file_name(version, suffix) for suffix in SOURCE_SUFFIXES]
        if value is None:
            return allowed[0]
        if value not in allowed:
            raise ValueError(f"file {value!r} is not one of {', '.join(allowed)}")
        return value


class ReleaseCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    updated: str | None = None  # last successful refresh from upstream
    checked: str | None = None  # last refresh attempt (successful or not)
    source: str = "seed"
    releases: dict[str, Release] = {}

    @field_validator("releases", mode="after")
    @classmethod
    def _keys(cls, value: dict[str, Release]) -> dict[str, Release]:
        for key, release in value.items():
            if key != release.version:
                raise ValueError(f"release {key!r} holds version {release.version!r}")
        return value

    def newest_first(self) -> list[Release]:
        return sorted(self.releases.values(), key=lambda r: Version(r.version), reverse=True)


class ReleaseLookupError(ValueError):
    """A requested version or series that the catalog or policy does not admit."""


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_seed() -> ReleaseCatalog:
    """The catalog shipped with the package: only releases whose sha256 is known for sure."""
    text = (resources.files("buildfarm") / "data" / SEED_RESOURCE).read_text()
    catalog = ReleaseCatalog.model_validate_json(text)
    return catalog.model_copy(update={"updated": None, "checked": None, "source": "seed"})


def source_url(version: str, mirror: str, file: str | None = None) -> str:
    """<mirror>/<X.Y.Z>/<file> (default Python-<version>.tar.xz): python.org keeps pre-releases
    in the final's directory."""
    directory = parse_release(version).base_version
    return f"{mirror.rstrip('/')}/{directory}/{file or source_file_name(version)}"


# -- python.org --------------------------------------------------------------------------


def fetch_python_org(
    base_url: str, *, lowest_series: str, known: set[str], timeout: float = 10.0
) -> dict[str, Release]:
    """New releases from python.org (buildfarm.python_org), as catalog entries.

    ReleaseFetchError if the answer is bad: the caller then keeps its catalog unchanged."""
    found = fetch_new_releases(base_url, lowest_series=lowest_series, known=known, timeout=timeout)
    return {version: Release(**upstream.model_dump()) for version, upstream in found.items()}


# -- the catalog in the store --------------------------------------------------------------


class ReleasesState(BaseModel):
    """What load_releases found: the catalog to plan with, and whether/why it changed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    catalog: ReleaseCatalog
    etag: str | None  # of releases.json as read (None: not in the store)
    changed: bool  # catalog differs from the store's copy and should be saved
    refresh: str  # "not due" | "refreshed (+N)" | "failed: ..." | "seeded"


def refresh_due(catalog: ReleaseCatalog, now: datetime, max_age_hours: float) -> bool:
    updated = parse_iso(catalog.updated)
    checked = parse_iso(catalog.checked)
    if updated is None or now - updated >= timedelta(hours=max_age_hours):
        # A recent failed attempt waits a little before the next one.
        if checked is not None and (updated is None or checked > updated):
            return now - checked >= min(RETRY_AFTER_FAILURE, timedelta(hours=max_age_hours))
        return True
    return False


def load_releases(
    store: Store, config: FarmConfig, now: datetime, fetch: Any = fetch_python_org
) -> ReleasesState:
    """releases.json from the store (seed if absent), refreshed from python.org when due. Makes
    exactly one store read; writes nothing (save_releases does, once the request is valid)."""
    catalog, etag, changed, refresh = _read_catalog(store)
    catalog, seeded = _with_seed(catalog)
    changed = changed or seeded

    if refresh_due(catalog, now, config.releases_max_age_hours):
        catalog, refresh = _refreshed(catalog, config, now, fetch)
        changed = True
    return ReleasesState(catalog=catalog, etag=etag, changed=changed, refresh=refresh)


def _with_seed(catalog: ReleaseCatalog) -> tuple[ReleaseCatalog, bool]:
    """The catalog plus the seed's releases it lacks (seed releases are always known, e.g. in a
    store created before a seed entry was added), and whether any were added."""
    seed = load_seed()
    missing = {v: r for v, r in seed.releases.items() if v not in catalog.releases}
    if not missing:
        return catalog, False
    return catalog.model_copy(update={"releases": {**catalog.releases, **missing}}), True


def stored_catalog(store: Store) -> tuple[ReleaseCatalog, str | None]:
    """releases.json as stored (its valid releases if damaged) plus the seed, and its ETag (None:
    not in the store). One read; writes nothing and never asks python.org. StoreError if the
    store cannot be read: unlike the planner, callers show it rather than plan from the seed."""
    try:
        raw, etag = store.read_json(RELEASES_KEY)
    except StoreNotFound:
        return load_seed(), None
    try:
        catalog = ReleaseCatalog.model_validate(raw)
    except ValidationError:
        catalog = _salvaged(raw) or load_seed()
    return _with_seed(catalog)[0], etag


def _read_catalog(store: Store) -> tuple[ReleaseCatalog, str | None, bool, str]:
    """(catalog, etag, changed, refresh) from the store: the seed if there is none; a damaged
    one keeps its valid releases (the seed if nothing of it is usable). Never raises for content."""
    try:
        raw, etag = store.read_json(RELEASES_KEY)
    except StoreNotFound:
        return load_seed(), None, True, "seeded"
    except StoreError as error:
        log.warning("releases.json in %s is unreadable (%s); starting from the seed catalog", store, error)
        return load_seed(), None, True, "seeded"
    try:
        return ReleaseCatalog.model_validate(raw), etag, False, "not due"
    except ValidationError as error:
        salvaged = _salvaged(raw)
        what = (
            f"keeping its {len(salvaged.releases)} valid releases" if salvaged else "starting from the seed"
        )
        log.warning("releases.json in %s is damaged (%s); %s", store, str(error).splitlines()[0], what)
        # The etag stays: the repaired catalog replaces the damaged one conditionally.
        return salvaged or load_seed(), etag, True, "repaired"


def _salvaged(raw: Any) -> ReleaseCatalog | None:
    """The valid entries of a damaged catalog, or None. Timestamps are dropped: refresh now."""
    entries = raw.get("releases") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        return None
    good: dict[str, Release] = {}
    for key, entry in entries.items():
        try:
            release = Release.model_validate(entry)
        except ValidationError:
            continue
        if release.version == key:
            good[key] = release
    return ReleaseCatalog(releases=good, source="repaired") if good else None


def _refreshed(
    catalog: ReleaseCatalog, config: FarmConfig, now: datetime, fetch: Any
) -> tuple[ReleaseCatalog, str]:
    """The catalog after a refresh from python.org, and what happened. Any bad answer (whatever
    `fetch` raises or returns) keeps the releases as they were, logged once."""
    try:
        new = fetch(
            config.releases_url,
            lowest_series=config.lowest_series,
            known=set(catalog.releases),
            timeout=config.releases_timeout_seconds,
        )
        new = _plausible(ReleaseCatalog.model_validate({"releases": new}).releases, set(catalog.releases))
    except (ReleaseFetchError, ValueError) as error:  # ValueError: ValidationError, InvalidVersion
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning(
            "releases refresh from %s failed; keeping the old catalog: %s", config.releases_url, reason
        )
        return catalog.model_copy(update={"checked": iso(now)}), f"failed: {reason}"[:300]
    merged = _merged(catalog.releases, new)
    added = len(merged) - len(catalog.releases)
    log.info("releases refreshed from %s: %d new, %d known", config.releases_url, added, len(merged))
    update = {"releases": merged, "updated": iso(now), "checked": iso(now), "source": config.releases_url}
    return catalog.model_copy(update=update), f"refreshed (+{added})"


def _plausible(new: dict[str, Release], known: set[str]) -> dict[str, Release]:
    """The caps of buildfarm.python_org, again here whatever fetched `new`: no series beyond the
    newest known one and those following it, at most MAX_NEW_PER_REFRESH (the newest)."""
    check_series(set(new), known)
    fresh = sorted(
        (r for v, r in new.items() if v not in known), key=lambda r: Version(r.version), reverse=True
    )
    return {r.version: r for r in fresh[:MAX_NEW_PER_REFRESH]}


def _merged(known: dict[str, Release], new: dict[str, Release]) -> dict[str, Release]:
    """known + new releases; a known checksum is never replaced (a changed one is logged)."""
    merged = dict(known)
    for version, release in new.items():
        old = merged.get(version)
        if old is not None and old.sha256 != release.sha256:
            log.warning(
                "python.org now lists sha256 %s for %s; keeping %s", release.sha256, version, old.sha256
            )
            continue
        merged[version] = release
    return merged


def save_releases(store: Store, state: ReleasesState) -> None:
    """Write the catalog back if it changed (conditional: a concurrent refresh wins, harmlessly)."""
    if not state.changed:
        return
    try:
        write_catalog(store, state.catalog, state.etag)
    except StoreConflict:
        log.info("releases.json was updated concurrently; keeping that version")


def write_catalog(store: Store, catalog: ReleaseCatalog, etag: str | None) -> None:
    """Put releases.json (newest first) over the version read with `etag`, or where there was
    none (etag None). StoreConflict if it changed meanwhile: nothing is written then."""
    ordered = dict(sorted(catalog.releases.items(), key=lambda kv: Version(kv[0]), reverse=True))
    document = catalog.model_copy(update={"releases": ordered}).model_dump(mode="json")
    if etag is None:
        store.put_json(RELEASES_KEY, document, if_none_match=True)
    else:
        store.put_json(RELEASES_KEY, document, if_match=etag)


# -- version policy ------------------------------------------------------------------------


def admitted(catalog: ReleaseCatalog, config: FarmConfig) -> list[Release]:
    """Every release the schedule builds: series >= lowest, pre-releases only if enabled. Newest first."""
    lowest = Version(config.lowest_series)
    return [
        release
        for release in catalog.newest_first()
        if Version(series_of(release.version)) >= lowest and (config.prereleases or not release.prerelease)
    ]


def newest_of_series(catalog: ReleaseCatalog, series: str) -> Release | None:
    """The release a series stands for: its newest final release, else its newest pre-release."""
    in_series = [r for r in catalog.newest_first() if series_of(r.version) == series]
    finals = [r for r in in_series if not r.prerelease]
    return (finals or in_series or [None])[0]


def add_hint(version: str) -> str:
    """How to add a release the catalog lacks (an air-gapped mirror has no python.org to ask)."""
    return f"add it with: buildfarm releases add {version} --sha256 HEX"


def known_near(catalog: ReleaseCatalog, series: str, limit: int = 5) -> str:
    """The known releases of `series`, else of the nearest known series, as a short phrase."""
    releases = catalog.newest_first()
    same = [r.version for r in releases if series_of(r.version) == series]
    if same:
        return f"known {series}.x: {', '.join(same[:limit])}"
    known_series = list(dict.fromkeys(series_of(r.version) for r in releases))
    if not known_series:
        return "no release is known"
    minor = Version(series).minor
    distance = min(abs(Version(s).minor - minor) for s in known_series)
    nearest = [s for s in known_series if abs(Version(s).minor - minor) == distance]
    near = [r.version for r in releases if series_of(r.version) in nearest]
    return f"no {series}.x is known; nearest: {', '.join(near[:limit])}"


def resolve_versions(
    requested: list[str] | None, catalog: ReleaseCatalog, config: FarmConfig
) -> list[Release]:
    """Requested versions/series -> releases (series = newest final release, or newest pre-release
    if the series has none). None = the version policy. ReleaseLookupError names a bad value,
    the known releases nearest to it and how to add one."""
    if requested is None:
        return admitted(catalog, config)
    chosen: dict[str, Release] = {}
    for text in requested:
        try:
            series = text if is_series(text) else series_of(text)
        except VersionError as error:
            raise ReleaseLookupError(str(error)) from None
        if problem := config.unsupported_version(text):
            raise ReleaseLookupError(problem)
        pick = newest_of_series(catalog, series) if series == text else catalog.releases.get(text)
        if pick is None:
            raise ReleaseLookupError(unknown_release(text, catalog))
        chosen[pick.version] = pick
    return sorted(chosen.values(), key=lambda r: Version(r.version), reverse=True)


def unknown_release(text: str, catalog: ReleaseCatalog) -> str:
    """One line for a version or series the catalog lacks: what is known near it, how to add it."""
    if is_series(text):
        known = list(dict.fromkeys(series_of(r.version) for r in catalog.newest_first()))
        return (
            f"unknown series {text!r}: no release of it in releases.json (known series: "
            f"{', '.join(known) or 'none'}); add one with: buildfarm releases add {text}.N --sha256 HEX"
        )
    return (
        f"unknown Python version {text!r}: not in releases.json ({known_near(catalog, series_of(text))}); "
        f"{add_hint(text)}"
    )
