"""index.html: the build matrix for people, derived from versions.json and the latest publish's
failures. Versions are rows, platform/arch pairs are columns; links are relative to the store's
root, so the page works wherever the store is served.

The markup is the Jinja2 template data/index.html.jinja (autoescaping on); this module only
decides what the page shows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import jinja2

from buildfarm.catalog.versions_json import published_platforms
from buildfarm.layout import Cell, cell_name, download_metadata_key
from buildfarm.platforms import Registry
from buildfarm.releases import iso
from buildfarm.versions import sort_newest_first

TEMPLATE = "index.html.jinja"

FailedCells = dict[Cell, tuple[int, str]]  # cell -> (build number, reason) of the latest publish


@dataclass(slots=True)
class Column:
    platform: str
    arch: str


@dataclass(slots=True)
class PlatformHeading:
    platform: str
    title: str  # the registry's name of the platform
    arch_count: int


@dataclass(slots=True)
class Link:
    href: str
    label: str


@dataclass(slots=True)
class MatrixCell:
    """One (version, platform, arch) of the matrix as the page shows it."""

    state: Literal["published", "failed", "missing"]
    build: int = 0
    reason: str = ""  # failed: why
    superseded_build: int | None = None  # failed: the older build that stays published
    published: str = ""  # published: when
    tarball: str | None = None  # published: the tarball's key, if the build has one
    size: str = ""  # published: the tarball's size, human-readable
    links: list[Link] = field(default_factory=list)  # published: the other artifacts, the manifest


@dataclass(slots=True)
class MatrixRow:
    version: str
    cells: list[MatrixCell]


@dataclass(slots=True)
class FailureLine:
    cell: str
    build: int
    reason: str


def human_size(size: float) -> str:
    """1234567 -> '1.2 MB' (whole bytes below 1 KB; GB is the largest unit)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def matrix_columns(
    builds: dict[str, Any], registry: Registry, platforms: Iterable[str], failed: FailedCells
) -> list[Column]:
    """The given platforms, then any other with a published or failed cell; per platform the
    registry's arches, then any other arch with a published or failed cell."""
    shown = list(dict.fromkeys([*platforms, *(p for cells in builds.values() for p in cells)]))
    shown += [p for _, p, _ in failed if p not in shown]
    columns: list[Column] = []
    for platform in shown:
        known = registry.platforms.get(platform)
        arches = list(known.arches) if known else []
        for version_cells in builds.values():
            arches += [a for a in version_cells.get(platform, {}) if a not in arches]
        arches += [a for _, p, a in failed if p == platform and a not in arches]
        columns += [Column(platform, arch) for arch in arches]
    return columns


def platform_headings(columns: list[Column], registry: Registry) -> list[PlatformHeading]:
    headings = []
    for platform in dict.fromkeys(column.platform for column in columns):
        known = registry.platforms.get(platform)
        count = sum(1 for column in columns if column.platform == platform)
        headings.append(PlatformHeading(platform, known.name if known else platform, count))
    return headings


def published_cell(entry: dict[str, Any]) -> MatrixCell:
    """A published build: its tarball (with size) first, then its other artifacts and manifest."""
    tarball = None
    links = []
    for artifact in entry.get("artifacts", []):
        kind = artifact.get("type", "file")
        if kind == "tarball":
            tarball = artifact
        else:
            links.append(Link(artifact["key"], kind))
    links.append(Link(entry.get("manifest", ""), "manifest"))
    return MatrixCell(
        state="published",
        build=entry["build"],
        published=str(entry.get("published", "")),
        tarball=tarball["key"] if tarball else None,
        size=human_size(int(tarball.get("size", 0))) if tarball else "",
        links=links,
    )


def matrix_cell(entry: dict[str, Any] | None, failure: tuple[int, str] | None) -> MatrixCell:
    """A failure newer than what is published shows as failed; else the published build, if any."""
    if failure and (entry is None or entry.get("build", 0) < failure[0]):
        build, reason = failure
        return MatrixCell("failed", build, reason, superseded_build=entry["build"] if entry else None)
    if entry:
        return published_cell(entry)
    return MatrixCell("missing")


def matrix_rows(builds: dict[str, Any], columns: list[Column], failed: FailedCells) -> list[MatrixRow]:
    """One row per version with a published or failed cell, newest first."""
    rows = []
    for version in sort_newest_first([*builds.keys(), *(v for v, _, _ in failed)]):
        version_cells = builds.get(version) or {}
        cells = [
            matrix_cell(
                version_cells.get(column.platform, {}).get(column.arch),
                failed.get((version, column.platform, column.arch)),
            )
            for column in columns
        ]
        rows.append(MatrixRow(version, cells))
    return rows


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
    return environment.get_template(TEMPLATE)


def render_index(
    document: dict[str, Any],
    registry: Registry,
    platforms: Iterable[str],
    now: datetime,
    failed: FailedCells | None = None,
) -> str:
    """The build matrix: versions (rows) x platform/arch (columns); relative links only."""
    failed = failed or {}
    builds = document.get("builds") or {}
    columns = matrix_columns(builds, registry, platforms, failed)
    rows = matrix_rows(builds, columns, failed)
    published_count = sum(cell.state == "published" for row in rows for cell in row.cells)
    with_cells = sorted(published_platforms(document))
    summary = (
        f"{published_count} published builds of {len(document.get('python_versions') or [])} "
        f"Python versions on {len(with_cells)} platforms"
    )
    return _template().render(
        summary=summary,
        updated=str(document.get("updated") or "never"),
        generated=iso(now),
        metadata_links=[Link(download_metadata_key(platform), platform) for platform in with_cells],
        headings=platform_headings(columns, registry),
        columns=columns,
        rows=rows,
        failures=[
            FailureLine(cell_name(*cell), build, reason) for cell, (build, reason) in sorted(failed.items())
        ],
    )
