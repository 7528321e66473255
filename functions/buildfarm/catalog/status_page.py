"""index.html: the status page for people, derived from versions.json (its builds and failing
cells) and the latest publish's failures.

What it shows: the store's signing key(s) (keys/keys.json, or "unsigned"), an install box
(install.sh's one-liner, uv's UV_PYTHON_DOWNLOADS_JSON_URL per platform), the cells failing
now, a (platform, arch) x series overview, then one section per series: the newest build of each cell
up front, older versions behind a <details>; last the runtimes (versions.json's `runtimes`).
Every build row has its date, size, sha256 and links to its packages, SHA256SUMS, manifest.json
and build.log, and the attestations its catalog entry records (files_beside). The template's
platform/arch filter hides the rows (overview, builds, failing, runtimes) of other ones (a link
to a part it hides clears it); an overview cell's ✗ links to the cell's line under failing. Links
are relative to the store's root, so the page works wherever the store is served; only the
install box's commands carry absolute URLs (a shell and uv need them).

The markup is the Jinja2 template data/index.html.jinja (autoescaping on); this module only
decides what the page shows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import jinja2
from packaging.version import Version

from buildfarm.catalog.status_page_text import day_of, human_size, utc_minute
from buildfarm.catalog.versions_json import (
    failing_cells,
    published_builds,
    published_platforms,
    runtime_cells,
)
from buildfarm.keys_index import KeysIndex, read_keys_index
from buildfarm.layout import (
    BUILD_LOG_FILE,
    FILE_NAME_PATTERN,
    INSTALLER_KEY,
    SUMS_FILE,
    Cell,
    cell_name,
    download_metadata_key,
    public_key_key,
)
from buildfarm.platforms import Registry
from buildfarm.releases import iso
from buildfarm.store import Store, StoreError
from buildfarm.versions import series_of, sort_newest_first

TEMPLATE = "index.html.jinja"
# Beside manifest.json in a build's artifact_dir: the builder writes build.log (uploaded before
# the manifest; a runtime build has none), the publish side SHA256SUMS before it merges the entry:
# the page links these two. The publish side's other files (the signatures: none when it published
# unsigned; the SBOM, the provenance) as the entry records them (recorded_attestations; entries
# from before the record: none).
PACKAGE_LABELS = {"tarball": "tar.gz", "deb": ".deb", "rpm": ".rpm"}
ATTESTATIONS_FIELD = "attestations"
CHECKSUMS_ROLES = ("checksums", "checksums_signature")  # linked before the manifest
DOCUMENT_LABELS = {"sbom": "SBOM", "provenance": "provenance", "provenance_signature": "provenance.sig"}
FILE_NAME = re.compile(FILE_NAME_PATTERN)

FailedCells = dict[Cell, tuple[int, str]]  # cell -> (build number, reason) of the latest publish


@dataclass(slots=True)
class Column:
    platform: str
    arch: str


@dataclass(slots=True)
class Link:
    href: str
    label: str
    title: str = ""


@dataclass(slots=True)
class PublishedBuild:
    build: int
    published: str  # ISO time it was published
    links: list[Link]  # packages, then the files beside the manifest (files_beside)
    size: str = ""  # the tarball's (else the first package's), human-readable
    sha256: str = ""  # of the same file
    sha256_of: str = ""  # that file's label


@dataclass(slots=True)
class Failure:
    build: int  # the newest failed build
    reason: str
    since: str = ""  # ISO time the cell started failing ("" if unknown: not on record)
    since_build: int = 0  # the first failed build since it last published (0 if unknown)


@dataclass(slots=True)
class MatrixCell:
    """One (version, platform, arch) as the page shows it: failed when its newest decided build
    failed (the older published build, if any, stays downloadable), else published, else missing."""

    state: Literal["published", "failed", "missing"]
    published: PublishedBuild | None = None
    failure: Failure | None = None

    @property
    def build(self) -> int:
        if self.failure is not None:
            return self.failure.build
        return self.published.build if self.published else 0

    @property
    def superseded_build(self) -> int | None:
        """failed: the older build that stays published."""
        return self.published.build if self.failure is not None and self.published else None


@dataclass(slots=True)
class BuildRow:
    version: str
    platform: str
    arch: str
    cell: MatrixCell
    platform_title: str = ""


@dataclass(slots=True)
class SeriesSection:
    series: str
    newest: str
    current: list[BuildRow]  # per cell, its newest version (and newer failing ones)
    older: list[BuildRow] = field(default_factory=list)
    older_versions: list[str] = field(default_factory=list)


@dataclass(slots=True)
class OverviewCell:
    series: str
    newest: str  # the newest version published, "" if none
    failing: BuildRow | None  # the newest failing build of the series, if any


@dataclass(slots=True)
class OverviewRow:
    platform: str
    arch: str
    title: str
    metadata: Link | None  # the platform's uv download metadata, if anything is published
    cells: list[OverviewCell]  # per series, newest first


@dataclass(slots=True)
class UvLine:
    platform: str
    metadata_key: str
    url: str
    version: str


@dataclass(slots=True)
class InstallBox:
    script_url: str
    version: str
    uv: list[UvLine]
    generic_uv_url: str  # the uv metadata URL with PLATFORM for the platform's id


def matrix_columns(
    builds: dict[str, Any], registry: Registry, platforms: Iterable[str], failed: Mapping[Cell, Any]
) -> list[Column]:
    """The given platforms, then any other with a published or failed cell; per platform the
    registry's arches, then any other arch with a published or failed cell. The page's order."""
    shown = list(dict.fromkeys([*platforms, *(p for cells in builds.values() for p in cells)]))
    shown += [p for _, p, _ in failed if p not in shown]
    columns: list[Column] = []
    for platform in dict.fromkeys(shown):
        known = registry.platforms.get(platform)
        arches = list(known.arches) if known else []
        for version_cells in builds.values():
            arches += [a for a in version_cells.get(platform, {}) if a not in arches]
        arches += [a for _, p, a in failed if p == platform and a not in arches]
        columns += [Column(platform, arch) for arch in arches]
    return columns


def recorded_attestations(entry: Mapping[str, Any]) -> dict[str, str] | None:
    """The publish side's files a catalog entry records under ATTESTATIONS_FIELD
    (entries.CatalogCell.attestations): role -> file name, as manifest.json's "attestations"
    names them (models.Attestations), a role left out or null having no file; None when the
    entry records none. Kept: the known roles whose name is a file name
    (layout.FILE_NAME_PATTERN), so a link stays in the build's directory whatever a hand-edited
    catalog holds (the page never fails over it)."""
    recorded = entry.get(ATTESTATIONS_FIELD)
    if not isinstance(recorded, dict):
        return None
    known = (*CHECKSUMS_ROLES, *DOCUMENT_LABELS)
    return {
        role: name
        for role, name in recorded.items()
        if role in known and isinstance(name, str) and FILE_NAME.fullmatch(name)
    }


def files_beside(
    manifest: str, attestations: Mapping[str, str] | None = None, build_log: bool = True
) -> list[Link]:
    """The files side by side with the manifest in the build's directory: SHA256SUMS (and its
    .sig), the manifest, the SBOM, the provenance (and its .sig), build.log; hrefs as the
    manifest's, relative to the store's root. attestations: what the entry records
    (recorded_attestations), None: SHA256SUMS only. build_log: False for a runtime build."""
    directory = manifest.rpartition("/")[0]
    if not directory:
        return [Link(manifest, "manifest")]
    names = {"checksums": SUMS_FILE} if attestations is None else attestations

    def beside(name: str, label: str) -> Link:
        return Link(f"{directory}/{name}", label, "" if label == name else name)

    links = [beside(names[role], names[role]) for role in CHECKSUMS_ROLES if role in names]
    links.append(Link(manifest, "manifest"))
    links += [beside(names[role], label) for role, label in DOCUMENT_LABELS.items() if role in names]
    if build_log:
        links.append(beside(BUILD_LOG_FILE, BUILD_LOG_FILE))
    return links


def published_build(entry: dict[str, Any], build_log: bool = True) -> PublishedBuild:
    """A catalog entry: its packages, the tarball first (its size and sha256 are shown), then the
    files beside its manifest."""
    packages = sorted(entry.get("artifacts") or [], key=lambda artifact: artifact.get("type") != "tarball")
    links = [
        Link(
            a["key"],
            PACKAGE_LABELS.get(a.get("type", ""), str(a.get("type", "file"))),
            a["key"].rsplit("/", 1)[-1],
        )
        for a in packages
    ]
    beside = files_beside(str(entry.get("manifest", "")), recorded_attestations(entry), build_log)
    once: dict[str, Link] = {}  # each file once, should a recorded name be another file's
    for link in [*links, *beside]:
        once.setdefault(link.href, link)
    links = list(once.values())
    shown = packages[0] if packages else {}
    return PublishedBuild(
        build=int(entry["build"]),
        published=str(entry.get("published", "")),
        links=links,
        size=human_size(int(shown.get("size", 0))) if shown else "",
        sha256=str(shown.get("sha256", "")),
        sha256_of=links[0].label if shown else "",
    )


def matrix_cell(entry: dict[str, Any] | None, failure: Failure | None) -> MatrixCell:
    """A failure newer than what is published shows as failed (with the published build, if
    any); else the published build, if any."""
    published = published_build(entry) if entry else None
    if failure and (published is None or published.build < failure.build):
        return MatrixCell("failed", published, failure)
    if published:
        return MatrixCell("published", published)
    return MatrixCell("missing")


def known_failures(document: dict[str, Any], failed: FailedCells) -> dict[Cell, Failure]:
    """versions.json's failing cells, and the latest publish's failures not on record there
    (an older publisher's, which do not record them)."""
    failures = {
        cell: Failure(entry.build, entry.reason, entry.since, entry.since_build)
        for cell, entry in failing_cells(document).items()
    }
    for cell, (build, reason) in failed.items():
        if cell not in failures or failures[cell].build < build:
            failures[cell] = Failure(build, reason)
    return failures


def build_rows(
    builds: dict[str, Any], columns: list[Column], failures: dict[Cell, Failure], registry: Registry
) -> list[BuildRow]:
    """One row per published or failed (version, platform, arch): versions newest first, then
    in column order."""
    rows = []
    for version in sort_newest_first([*builds.keys(), *(v for v, _, _ in failures)]):
        version_cells = builds.get(version) or {}
        for column in columns:
            entry = version_cells.get(column.platform, {}).get(column.arch)
            cell = matrix_cell(entry, failures.get((version, column.platform, column.arch)))
            if cell.state != "missing":
                known = registry.platforms.get(column.platform)
                title = known.name if known else column.platform
                rows.append(BuildRow(version, column.platform, column.arch, cell, title))
    return rows


def series_sections(rows: list[BuildRow], columns: list[Column]) -> list[SeriesSection]:
    """Per series (newest first): each cell's newest version up front, down to and including its
    newest published build; the rest (older versions) in `older`."""
    sections: dict[str, SeriesSection] = {}
    reached_published: set[tuple[str, str, str]] = set()
    for row in rows:  # versions newest first
        series = series_of(row.version)
        section = sections.setdefault(series, SeriesSection(series, row.version, []))
        key = (series, row.platform, row.arch)
        if key in reached_published:
            section.older.append(row)
            if row.version not in section.older_versions:
                section.older_versions.append(row.version)
        else:
            section.current.append(row)
        if row.cell.published is not None:
            reached_published.add(key)
    order = {(column.platform, column.arch): index for index, column in enumerate(columns)}
    for section in sections.values():
        section.current.sort(key=lambda row: order[(row.platform, row.arch)])  # stable: newest first
    return sorted(sections.values(), key=lambda section: Version(section.series), reverse=True)


def overview_rows(
    rows: list[BuildRow],
    columns: list[Column],
    registry: Registry,
    series: list[str],
    with_metadata: set[str],
) -> list[OverviewRow]:
    """Per platform and arch (the page's columns, so that the arch filter hides a row as it hides
    that arch's builds) with a build or a failure: per series the newest version published
    there, and its newest failing build, if any. A pair with neither (an arch the store
    does not build) has no row; the filter still lists its platform and arch."""
    by_column: dict[tuple[str, str], list[BuildRow]] = {}
    for row in rows:
        by_column.setdefault((row.platform, row.arch), []).append(row)
    overview = []
    for column in columns:
        platform, known = column.platform, registry.platforms.get(column.platform)
        cells = []
        for name in series:
            mine = [
                row for row in by_column.get((platform, column.arch), []) if series_of(row.version) == name
            ]
            newest = next((row.version for row in mine if row.cell.published is not None), "")
            failing = next((row for row in mine if row.cell.state == "failed"), None)
            cells.append(OverviewCell(name, newest, failing))
        if not any(cell.newest or cell.failing for cell in cells):
            continue
        metadata = Link(download_metadata_key(platform), "uv metadata") if platform in with_metadata else None
        overview.append(
            OverviewRow(platform, column.arch, known.name if known else platform, metadata, cells)
        )
    return overview


def newest_stable(versions: Iterable[str]) -> str:
    """The newest final release among versions, else the newest pre-release, else ''."""
    ordered = sort_newest_first(list(versions))
    return next((v for v in ordered if not Version(v).is_prerelease), ordered[0] if ordered else "")


def install_box(
    document: dict[str, Any], platforms: list[str], public_url: Callable[[str], str] | None
) -> InstallBox | None:
    """install.sh's one-liner and uv's variable per platform with a published cell, for the
    newest final release published (per platform for uv)."""
    published = published_builds(document)
    if not published:
        return None
    url = public_url or (lambda key: f"BASE_URL/{key}")
    uv = []
    for platform in platforms:
        versions = [version for version, p, _ in published if p == platform]
        if versions:
            key = download_metadata_key(platform)
            uv.append(UvLine(platform, key, url(key), newest_stable(versions)))
    newest = newest_stable(version for version, _, _ in published)
    return InstallBox(url(INSTALLER_KEY), newest, uv, url(download_metadata_key("PLATFORM")))


@dataclass(slots=True)
class RuntimeRow:
    name: str
    version: str
    platform: str
    arch: str
    python: str  # "3.13.5 build 2"
    published: PublishedBuild


@dataclass(slots=True)
class SigningKey:
    fingerprint: str  # "SHA256:<hex>"
    href: str  # keys/<hex>.pub
    current: bool


def runtime_rows(document: dict[str, Any]) -> list[RuntimeRow]:
    """Every published runtime cell: by name, versions newest first, then platform and arch.
    Its links: the packages, SHA256SUMS (and what the entry records) and the manifest (a runtime
    build has no build.log)."""
    rows = []
    for (name, version, platform, arch), entry in runtime_cells(document).items():
        published = published_build(entry.model_dump(mode="json"), build_log=False)
        python = entry.python.version + (f" build {entry.python.build}" if entry.python.build else "")
        rows.append(RuntimeRow(name, version, platform, arch, python, published))
    rows.sort(key=lambda row: (row.platform, row.arch))
    rows.sort(key=lambda row: _version_key(row.version), reverse=True)
    return sorted(rows, key=lambda row: row.name)


def _version_key(version: str) -> tuple[int, Version | str]:
    """Runtime versions are free-form: PEP 440 ones compare as versions, the rest as text."""
    try:
        return (1, Version(version))
    except ValueError:
        return (0, version)


def stored_keys_index(store: Store) -> KeysIndex | None:
    """The store's keys/keys.json for render_index; None when it cannot be read or is not a
    key list (a page must not fail over it: it then says unsigned)."""
    try:
        return read_keys_index(store)[0]
    except StoreError:
        return None


def signing_keys(keys_index: KeysIndex | None) -> list[SigningKey]:
    """The keys keys/keys.json lists, the current one first; [] (the page says unsigned) when
    there is none."""
    if keys_index is None:
        return []
    return [
        SigningKey(found, public_key_key(found), found == keys_index.current)
        for found in keys_index.fingerprints()
    ]


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("buildfarm", "data"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["day"] = day_of
    environment.filters["utc_minute"] = utc_minute
    return environment.get_template(TEMPLATE)


def render_index(
    document: dict[str, Any],
    registry: Registry,
    platforms: Iterable[str],
    now: datetime,
    failed: FailedCells | None = None,
    public_url: Callable[[str], str] | None = None,
    keys_index: KeysIndex | None = None,
) -> str:
    """The status page. public_url (key -> absolute URL) fills the install box's commands;
    without it they say BASE_URL. keys_index: the store's keys/keys.json (None: unsigned).
    Every link is relative."""
    builds = document.get("builds") or {}
    failures = known_failures(document, failed or {})
    columns = matrix_columns(builds, registry, platforms, failures)
    rows = build_rows(builds, columns, failures, registry)
    sections = series_sections(rows, columns)
    with_cells = published_platforms(document)
    platform_order = list(dict.fromkeys(column.platform for column in columns))
    return _template().render(
        published_count=len(published_builds(document)),
        version_count=len(document.get("python_versions") or []),
        platform_count=len(with_cells),
        updated=str(document.get("updated") or ""),
        generated=iso(now),
        install=install_box(document, [p for p in platform_order if p in with_cells], public_url),
        platforms=platform_order,
        arches=list(dict.fromkeys(column.arch for column in columns)),
        failing=[row for row in rows if row.cell.state == "failed"],
        overview=overview_rows(rows, columns, registry, [s.series for s in sections], with_cells)
        if rows
        else [],
        sections=sections,
        runtimes=runtime_rows(document),
        keys=signing_keys(keys_index),
        cell_name=cell_name,
    )
