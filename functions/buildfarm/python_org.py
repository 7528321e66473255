"""The python.org downloads API client: which new CPython releases python.org lists, with the
sha256 of their source tarball.

Everything python.org says is input from outside, checked here before the catalog sees it. A
listing that is malformed anywhere (a non-ASCII digit or a stray newline in a release name, a
series that cannot exist yet, an absurd number of entries) fails the whole refresh: the caller
keeps its catalog. A failed request for one release's files only skips that release.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, ValidationError

from buildfarm.digests import SHA256, Sha256
from buildfarm.errors import first_error
from buildfarm.versions import VersionError, parse_release, series_of

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 32 * 1024 * 1024
# python.org's whole listing (every product, Python 2 included) is about 600 entries and grows
# by a few dozen a year; an answer far beyond that is not python.org's.
MAX_LISTED_ENTRIES = 2_000
# New releases fetched per refresh, newest first. A fresh farm (seed catalog) sees ~200 real
# ones and catches up over a few refreshes; a runaway answer adds at most this many per run,
# and the release_file requests stay well inside the Plan Lambda's time.
MAX_NEW_PER_REFRESH = 50
FETCH_THREADS = 8
_RELEASE_ID = re.compile(r"https?://[A-Za-z0-9.:-]+(?:/[A-Za-z0-9._-]+)*/release/([0-9]{1,9})/?")
# python.org publishes every release's source as both; the first is preferred.
SOURCE_SUFFIXES = (".tar.xz", ".tgz")


def source_file_name(version: str, suffix: str = SOURCE_SUFFIXES[0]) -> str:
    return f"Python-{version}{suffix}"


class ReleaseFetchError(Exception):
    """python.org answered badly (HTTP error, timeout, not JSON, malformed or implausible)."""


class UpstreamRelease(BaseModel):
    """A new release as python.org lists it, with its source file's sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    sha256: Sha256
    url: str
    file: str
    release_date: str | None = None
    prerelease: bool = False


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


def get_json(url: str, timeout: float) -> Any:
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


def listed_version(name: str) -> str | None:
    """The CPython 3 release an entry's name gives ("Python 3.13.5" -> "3.13.5"); None for other
    products (Python 2, the install manager). ReleaseFetchError for a name that looks like a
    release but is not a well-formed one: python.org never writes those, so the answer is bad."""
    rest = name.removeprefix("Python ")
    # isdecimal, not [0-9], on purpose: "Python ٣.13.5" must be caught here, not skipped.
    if rest == name or not rest[:1].isdecimal():
        return None
    if rest.isascii() and rest.isprintable() and " " not in rest:
        try:
            parse_release(rest)
            return rest
        except VersionError:
            if not rest.startswith("3."):
                return None  # Python 2.x (and a hypothetical 4.x): not ours
    raise ReleaseFetchError(f"malformed release name {name!r}")


def _minor(version: str) -> int:
    return int(series_of(version).split(".")[1])


def check_series(listed: set[str], known: set[str]) -> None:
    """Series come one after another: every series listed must follow the newest known one
    through series python.org also lists (3.14 then 3.15 after a known 3.13; never 3.99)."""
    listed_minors = {_minor(v) for v in listed}
    known_minors = {_minor(v) for v in known}
    newest = max(known_minors) if known_minors else min(listed_minors, default=0)
    while newest + 1 in listed_minors:
        newest += 1
    beyond = sorted(m for m in listed_minors if m > newest)
    if beyond:
        raise ReleaseFetchError(
            f"series 3.{beyond[0]} listed, but the newest known series is 3.{max(known_minors or {newest})} "
            f"and python.org lists none in between"
        )


def _listing(base: str, timeout: float) -> list[tuple[str, _ApiRelease]]:
    """(version, entry) for every CPython 3 release in python.org's listing, all checked."""
    url = f"{base}/release/"
    answer = get_json(url, timeout)
    if not isinstance(answer, list):
        raise ReleaseFetchError(f"GET {url}: expected a JSON array, got {type(answer).__name__}")
    if len(answer) > MAX_LISTED_ENTRIES:
        raise ReleaseFetchError(f"GET {url}: {len(answer)} entries (more than {MAX_LISTED_ENTRIES})")
    releases: list[tuple[str, _ApiRelease]] = []
    for index, element in enumerate(answer):
        try:
            entry = _ApiRelease.model_validate(element)
        except ValidationError as error:
            raise ReleaseFetchError(
                f"GET {url}: element {index} is malformed ({first_error(error)})"
            ) from None
        version = listed_version(entry.name)
        if version is not None:
            releases.append((version, entry))
    if not releases:
        raise ReleaseFetchError(f"GET {url}: no Python 3 releases in the answer")
    return releases


def _candidates(
    releases: list[tuple[str, _ApiRelease]], lowest_series: str, known: set[str]
) -> list[tuple[str, str, _ApiRelease]]:
    """(version, release id, entry) of the published releases to fetch, newest first, capped."""
    lowest = Version(lowest_series)
    chosen: dict[str, tuple[str, str, _ApiRelease]] = {}
    for version, entry in releases:
        if not entry.is_published or version in known or Version(series_of(version)) < lowest:
            continue
        release_id = _RELEASE_ID.fullmatch(entry.resource_uri)
        if not release_id:
            raise ReleaseFetchError(f"release {entry.name!r}: unexpected resource_uri {entry.resource_uri!r}")
        chosen.setdefault(version, (version, release_id.group(1), entry))
    ordered = sorted(chosen.values(), key=lambda c: parse_release(c[0]), reverse=True)
    if len(ordered) > MAX_NEW_PER_REFRESH:
        log.info(
            "python.org lists %d new releases; fetching the newest %d, the rest on later refreshes",
            len(ordered),
            MAX_NEW_PER_REFRESH,
        )
    return ordered[:MAX_NEW_PER_REFRESH]


def fetch_new_releases(
    base_url: str, *, lowest_series: str, known: set[str], timeout: float = 10.0
) -> dict[str, UpstreamRelease]:
    """New releases (>= lowest_series, not in `known`) with their source sha256.

    ReleaseFetchError if the listing is bad, or if every release's file list failed: the caller
    keeps its catalog. One release whose file list fails is skipped (logged); the others count.
    Releases python.org lists without a source sha256 are skipped too.
    """
    base = base_url.rstrip("/")
    releases = _listing(base, timeout)
    check_series({version for version, _ in releases}, known)
    candidates = _candidates(releases, lowest_series, known)

    def files_of(candidate: tuple[str, str, _ApiRelease]) -> UpstreamRelease | ReleaseFetchError | None:
        version, release_id, entry = candidate
        url = f"{base}/release_file/?release={release_id}"
        try:
            return _release_of(version, entry, get_json(url, timeout), url)
        except ReleaseFetchError as error:
            log.warning("python.org release %s skipped (tried again next refresh): %s", version, error)
            return error

    if not candidates:
        return {}
    with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(candidates))) as pool:
        results = list(pool.map(files_of, candidates))
    failures = [r for r in results if isinstance(r, ReleaseFetchError)]
    if len(failures) == len(results):
        raise ReleaseFetchError(f"every release_file request failed, e.g. {failures[0]}")
    return {r.version: r for r in results if isinstance(r, UpstreamRelease)}


def _release_of(version: str, entry: _ApiRelease, files: Any, url: str) -> UpstreamRelease | None:
    if not isinstance(files, list):
        raise ReleaseFetchError(f"GET {url}: expected a JSON array, got {type(files).__name__}")
    source = _pick_source_file(version, files, url)
    if source is None:
        return None
    file, sha = source
    return UpstreamRelease(
        version=version,
        sha256=sha,
        url=file.url,
        file=file.url.rsplit("/", 1)[-1],
        release_date=entry.release_date,
        prerelease=entry.pre_release or parse_release(version).is_prerelease,
    )


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
        sha = ((file and file.sha256_sum) or "").lower()
        if file is not None and SHA256.fullmatch(sha):
            return file, sha
    log.info("python.org lists no sha256 for %s; skipped", version)
    return None
