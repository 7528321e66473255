"""Upstream CPython releases the farm knows (releases.json), their refresh from python.org,
and the version policy that says which of them the schedule builds.

releases.json only ever holds releases whose source sha256 is known. A refresh adds what
python.org lists; it never removes entries and never changes a known checksum. Any bad or
partial answer from python.org leaves the catalog as it was (and is logged).
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from buildfarm.config import FarmConfig
from buildfarm.store import Store, StoreConflict, StoreError, StoreNotFound
from buildfarm.versions import VersionError, is_series, parse_release, series_of

log = logging.getLogger(__name__)

RELEASES_KEY = "releases.json"
SEED_RESOURCE = "releases-seed.json"
MAX_ANSWER_BYTES = 32 * 1024 * 1024
FETCH_THREADS = 8
# After a failed refresh, try again sooner than the normal max age.
RETRY_AFTER_FAILURE = timedelta(hours=1)
_RELEASE_NAME = re.compile(r"Python (3\.[0-9]{1,2}\.[0-9]{1,2}(?:(?:a|b|rc)[0-9]{1,2})?)")
_RELEASE_ID = re.compile(r".*/release/([0-9]+)/?")
# python.org publishes every release's source as both; the first is preferred.
SOURCE_SUFFIXES = (".tar.xz", ".tgz")


def source_file_name(version: str, suffix: str = SOURCE_SUFFIXES[0]) -> str:
    return f"Python-{version}{suffix}"


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

    def newest_first(self) -> list[Release]:
        return sorted(self.releases.values(), key=lambda r: Version(r.version), reverse=True)


class ReleaseFetchError(Exception):
    """python.org answered badly (HTTP error, timeout, not JSON, missing fields)."""


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


def _get_json(url: str, timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ReleaseFetchError(f"{url!r} is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, headers={"Accept": "application/json", "User-Agent": "buildfarm"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured http(s) URL
            body = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise ReleaseFetchError(f"GET {url}: HTTP {error.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ReleaseFetchError(f"GET {url}: {reason}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise ReleaseFetchError(f"GET {url}: answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as error:
        raise ReleaseFetchError(f"GET {url}: not JSON ({error})") from None


class _ApiRelease(BaseModel):
    """One element of /api/v2/downloads/release/ (fields we rely on; others ignored)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    is_published: bool
    pre_release: bool
    release_date: str | None = None
    resource_uri: str


class _ApiReleaseFile(BaseModel):
    """One element of /api/v2/downloads/release_file/?release=<id>."""

    model_config = ConfigDict(extra="ignore")
    url: str
    sha256_sum: str | None = None


def _api_release(url: str, index: int, element: Any) -> _ApiRelease:
    try:
        return _ApiRelease.model_validate(element)
    except ValidationError as error:
        detail = error.errors()[0]
        raise ReleaseFetchError(
            f"GET {url}: element {index} is malformed ({'.'.join(map(str, detail['loc']))}: {detail['msg']})"
        ) from None


def fetch_python_org(
    base_url: str, *, lowest_series: str, known: set[str], timeout: float = 10.0
) -> dict[str, Release]:
    """New releases (>= lowest_series, not in `known`) with their source sha256, from python.org.

    Raises ReleaseFetchError if any answer is bad or incomplete: the caller then keeps
    its catalog unchanged. Releases python.org lists without a source sha256 are skipped.
    """
    base = base_url.rstrip("/")
    answer = _get_json(f"{base}/release/", timeout)
    if not isinstance(answer, list):
        raise ReleaseFetchError(f"GET {base}/release/: expected a JSON array, got {type(answer).__name__}")
    lowest = Version(lowest_series)
    candidates: list[tuple[str, str, _ApiRelease]] = []
    python3_releases = 0
    for index, element in enumerate(answer):
        entry = _api_release(f"{base}/release/", index, element)
        match = _RELEASE_NAME.fullmatch(entry.name)
        if not match:
            continue  # Python 2, install manager, ...
        python3_releases += 1
        version = match.group(1)
        if not entry.is_published or version in known:
            continue
        if Version(series_of(version)) < lowest:
            continue
        release_id = _RELEASE_ID.fullmatch(entry.resource_uri)
        if not release_id:
            raise ReleaseFetchError(f"release {entry.name!r}: unexpected resource_uri {entry.resource_uri!r}")
        candidates.append((version, release_id.group(1), entry))
    if python3_releases == 0:
        raise ReleaseFetchError(f"GET {base}/release/: no Python 3 releases in the answer")

    def files_of(candidate: tuple[str, str, _ApiRelease]) -> Release | None:
        version, release_id, entry = candidate
        url = f"{base}/release_file/?release={release_id}"
        files = _get_json(url, timeout)
        if not isinstance(files, list):
            raise ReleaseFetchError(f"GET {url}: expected a JSON array, got {type(files).__name__}")
        source = _pick_source_file(version, files, url)
        if source is None:
            return None
        file, sha = source
        return Release(
            version=version,
            sha256=sha,
            url=file.url,
            file=file.url.rsplit("/", 1)[-1],
            release_date=entry.release_date,
            prerelease=entry.pre_release or parse_release(version).is_prerelease,
        )

    found: dict[str, Release] = {}
    if candidates:
        with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(candidates))) as pool:
            for release in pool.map(files_of, candidates):
                if release is not None:
                    found[release.version] = release
    return found


def _pick_source_file(version: str, files: list[Any], url: str) -> tuple[_ApiReleaseFile, str] | None:
    """The source file of `version` with a sha256: .tar.xz if python.org gives its digest, else
    .tgz; None (logged) if neither has one. ReleaseFetchError if an element is malformed."""
    by_suffix: dict[str, _ApiReleaseFile] = {}
    for element in files:
        try:
            file = _ApiReleaseFile.model_validate(element)
        except ValidationError:
            raise ReleaseFetchError(f"GET {url}: malformed release file {str(element)[:120]}") from None
        for suffix in SOURCE_SUFFIXES:
            if file.url.endswith("/" + source_file_name(version, suffix)):
                by_suffix[suffix] = file
    if not by_suffix:
        log.info("python.org lists no source tarball for %s; skipped", version)
        return None
    for suffix in SOURCE_SUFFIXES:
        file = by_suffix.get(suffix)
        sha = ((file and file.sha256_sum) or "").strip().lower()
        if file is not None and re.fullmatch(r"[0-9a-f]{64}", sha):
            return file, sha
    log.info("python.org lists no sha256 for %s; skipped", version)
    return None


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
    etag: str | None = None
    try:
        raw, etag = store.read_json(RELEASES_KEY)
        catalog = ReleaseCatalog.model_validate(raw)
        changed = False
        refresh = "not due"
    except StoreNotFound:
        catalog = load_seed()
        changed = True
        refresh = "seeded"
    except (StoreError, ValidationError) as error:
        # A damaged catalog is replaced by the seed plus a refresh; never fatal.
        log.warning("releases.json in %s is unreadable (%s); starting from the seed catalog", store, error)
        catalog = load_seed()
        changed = True
        refresh = "seeded"

    # Seed releases are always known (e.g. a store created before a seed entry was added).
    seed = load_seed()
    missing = {v: r for v, r in seed.releases.items() if v not in catalog.releases}
    if missing:
        catalog = catalog.model_copy(update={"releases": {**catalog.releases, **missing}})
        changed = True

    if refresh_due(catalog, now, config.releases_max_age_hours):
        try:
            new = fetch(
                config.releases_url,
                lowest_series=config.lowest_series,
                known=set(catalog.releases),
                timeout=config.releases_timeout_seconds,
            )
        except ReleaseFetchError as error:
            log.warning(
                "releases refresh from %s failed; keeping the old catalog: %s", config.releases_url, error
            )
            catalog = catalog.model_copy(update={"checked": iso(now)})
            changed = True
            refresh = f"failed: {error}"[:300]
        else:
            merged = _merged(catalog.releases, new)
            added = len(merged) - len(catalog.releases)
            catalog = catalog.model_copy(
                update={
                    "releases": merged,
                    "updated": iso(now),
                    "checked": iso(now),
                    "source": config.releases_url,
                }
            )
            changed = True
            refresh = f"refreshed (+{added})"
            log.info("releases refreshed from %s: %d new, %d known", config.releases_url, added, len(merged))
    return ReleasesState(catalog=catalog, etag=etag, changed=changed, refresh=refresh)


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
