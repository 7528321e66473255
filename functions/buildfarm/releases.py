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
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
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

    # Seed releases are always known (e.g. a store created before a seed entry was added).
    seed = load_seed()
    missing = {v: r for v, r in seed.releases.items() if v not in catalog.releases}
    if missing:
        catalog = catalog.model_copy(update={"releases": {**catalog.releases, **missing}})
        changed = True

    if refresh_due(catalog, now, config.releases_max_age_hours):
        catalog, refresh = _refreshed(catalog, config, now, fetch)
        changed = True
    return ReleasesState(catalog=catalog, etag=etag, changed=changed, refresh=refresh)


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
    ordered = dict(sorted(state.catalog.releases.items(), key=lambda kv: Version(kv[0]), reverse=True))
    document = state.catalog.model_copy(update={"releases": ordered}).model_dump(mode="json")
    try:
        if state.etag is None:
            store.put_json(RELEASES_KEY, document, if_none_match=True)
        else:
            store.put_json(RELEASES_KEY, document, if_match=state.etag)
    except StoreConflict:
        log.info("releases.json was updated concurrently; keeping that version")


# -- version policy ------------------------------------------------------------------------


def admitted(catalog: ReleaseCatalog, config: FarmConfig) -> list[Release]:
    """Every release the schedule builds: series >= lowest, pre-releases only if enabled. Newest first."""
    lowest = Version(config.lowest_series)
    return [
        release
        for release in catalog.newest_first()
        if Version(series_of(release.version)) >= lowest and (config.prereleases or not release.prerelease)
    ]


def resolve_versions(
    requested: list[str] | None, catalog: ReleaseCatalog, config: FarmConfig
) -> list[Release]:
    """Requested versions/series -> releases (series = newest final release, or newest pre-release
    if the series has none). None = the version policy. ReleaseLookupError names a bad value."""
    if requested is None:
        return admitted(catalog, config)
    lowest = Version(config.lowest_series)
    chosen: dict[str, Release] = {}
    for text in requested:
        try:
            series = text if is_series(text) else series_of(text)
        except VersionError as error:
            raise ReleaseLookupError(str(error)) from None
        if Version(series) < lowest:
            raise ReleaseLookupError(
                f"version {text!r} is below the lowest supported series {config.lowest_series}"
            )
        if series == text:
            in_series = [r for r in catalog.newest_first() if series_of(r.version) == series]
            finals = [r for r in in_series if not r.prerelease]
            pick = (finals or in_series or [None])[0]
            if pick is None:
                raise ReleaseLookupError(f"unknown series {text!r}: no release of it in releases.json")
        else:
            pick = catalog.releases.get(text)
            if pick is None:
                same = [r.version for r in catalog.newest_first() if series_of(r.version) == series][:5]
                hint = f" (known {series}.x: {', '.join(same)})" if same else ""
                raise ReleaseLookupError(f"unknown Python version {text!r}: not in releases.json{hint}")
        chosen[pick.version] = pick
    return sorted(chosen.values(), key=lambda r: Version(r.version), reverse=True)
