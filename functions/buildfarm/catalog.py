"""The published catalogs: versions.json (the source of truth), and what is derived from it:
download-metadata/<platform>.json for uv, and index.html for people.

versions.json is updated read-modify-write with conditional puts, retried on conflict, so
concurrent publishers never lose each other's cells. A cell is only ever replaced by a
higher build of itself.
"""

from __future__ import annotations

import html
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from importlib import resources
from string import Template
from typing import Any

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field

from buildfarm.platforms import ARCHES, Registry
from buildfarm.releases import iso
from buildfarm.store import Store, StoreConflict, StoreNotFound
from buildfarm.versions import sort_newest_first

log = logging.getLogger(__name__)

VERSIONS_KEY = "versions.json"
INDEX_KEY = "index.html"
DOWNLOAD_METADATA_PREFIX = "download-metadata"
SCHEMA_VERSION = 1

Cell = tuple[str, str, str]  # (version, platform, arch)


def cell_name(version: str, platform: str, arch: str) -> str:
    return f"{version}/{platform}/{arch}"


def parse_cell(name: str) -> Cell:
    version, platform, arch = name.split("/")
    return version, platform, arch


class CatalogArtifact(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class CatalogCell(BaseModel):
    """versions.json builds[version][platform][arch]."""

    model_config = ConfigDict(extra="allow")
    build: int = Field(ge=1)
    published: str
    manifest: str
    artifacts: list[CatalogArtifact]


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
    for version, platforms in (document.get("builds") or {}).items():
        for platform, arches in platforms.items():
            for arch, entry in arches.items():
                yield (version, platform, arch), entry


def merge_cells(
    document: dict[str, Any], cells: dict[Cell, CatalogCell], now: datetime
) -> tuple[dict[str, Any], list[Cell]]:
    """versions.json with `cells` merged in: (new document, cells actually added or replaced).

    An existing entry is replaced only by a higher build (an older, slower publisher never
    rolls a cell back). python_versions: newest first, versions with at least one cell.
    """
    merged = {
        "schema_version": SCHEMA_VERSION,
        "updated": document.get("updated"),
        "python_versions": [],
        "builds": {
            version: {platform: dict(arches) for platform, arches in platforms.items()}
            for version, platforms in (document.get("builds") or {}).items()
        },
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
        arches[arch] = entry.model_dump(mode="json")
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
    return merged, accepted


def read_versions(store: Store) -> tuple[dict[str, Any], str | None]:
    """(versions.json, etag) or (empty catalog, None) when nothing is published yet."""
    try:
        document, etag = store.read_json(VERSIONS_KEY)
    except StoreNotFound:
        return empty_versions(), None
    if not isinstance(document, dict):
        raise ValueError(f"{store.url(VERSIONS_KEY)} is not a JSON object")
    return document, etag


def update_versions(
    store: Store,
    cells: dict[Cell, CatalogCell],
    now: datetime,
    *,
    max_attempts: int = 200,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, Any], list[Cell]]:
    """Merge cells into versions.json with If-Match / If-None-Match, retried on conflict."""
    delay = 0.01
    for attempt in range(1, max_attempts + 1):
        document, etag = read_versions(store)
        merged, accepted = merge_cells(document, cells, now)
        if not accepted:
            return document, []
        try:
            if etag is None:
                store.put_json(VERSIONS_KEY, merged, if_none_match=True)
            else:
                store.put_json(VERSIONS_KEY, merged, if_match=etag)
            if attempt > 1:
                log.info("versions.json updated after %d attempts", attempt)
            return merged, accepted
        except StoreConflict:
            # Someone else published in between: back off with jitter, re-read, re-merge.
            sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 0.5)
    raise RuntimeError(f"versions.json: gave up after {max_attempts} conflicting attempts")


# -- uv download metadata -----------------------------------------------------------------


def uv_key(version: str, arch: str) -> str:
    return f"cpython-{version}-linux-{arch}-gnu"


def uv_download_metadata(
    document: dict[str, Any], platform: str, public_url: Callable[[str], str]
) -> dict[str, dict[str, Any]]:
    """The UV_PYTHON_DOWNLOADS_JSON_URL document for one platform: one entry per published
    (version, arch) that has a tarball; newest first, as uv lists them."""
    entries: dict[str, dict[str, Any]] = {}
    for version in sort_newest_first(list((document.get("builds") or {}).keys())):
        arches = (document["builds"][version] or {}).get(platform) or {}
        parsed = Version(version)
        prerelease = f"{parsed.pre[0]}{parsed.pre[1]}" if parsed.pre else ""
        for arch in sorted(arches, key=lambda a: ARCHES.index(a) if a in ARCHES else 99):
            entry = arches[arch]
            tarball = next((a for a in entry.get("artifacts", []) if a.get("type") == "tarball"), None)
            if tarball is None:
                continue
            entries[uv_key(version, arch)] = {
                "name": "cpython",
                "arch": {"family": arch, "variant": None},
                "os": "linux",
                "libc": "gnu",
                "major": parsed.major,
                "minor": parsed.minor,
                "patch": parsed.micro,
                "prerelease": prerelease,
                "url": public_url(tarball["key"]),
                "sha256": tarball["sha256"],
                "variant": None,
                "build": str(entry["build"]),
            }
    return entries


def public_url_function(store: Store, public_base_url: str | None) -> Callable[[str], str]:
    """key -> absolute URL: <public base>/<key>, else the store's own URL (file:// or S3 https).

    uv rejects relative URLs ("relative URL without a base"), so they are always absolute.
    """
    if public_base_url:
        base = public_base_url.rstrip("/")
        return lambda key: f"{base}/{key}"
    return store.default_public_url


# -- index.html ---------------------------------------------------------------------------


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def render_index(
    document: dict[str, Any],
    registry: Registry,
    platforms: Iterable[str],
    now: datetime,
    failed: dict[Cell, tuple[int, str]] | None = None,
) -> str:
    """The build matrix: versions (rows) x platform/arch (columns); relative links only."""
    failed = failed or {}
    builds = document.get("builds") or {}
    columns: list[tuple[str, str]] = []
    seen_platforms = list(dict.fromkeys([*platforms, *(p for v in builds.values() for p in v)]))
    seen_platforms += [p for _, p, _ in failed if p not in seen_platforms]
    for platform in seen_platforms:
        known = registry.platforms.get(platform)
        arches = list(known.arches) if known else []
        for version_cells in builds.values():
            arches += [a for a in version_cells.get(platform, {}) if a not in arches]
        arches += [a for _, p, a in failed if p == platform and a not in arches]
        columns += [(platform, arch) for arch in arches]
    versions = sort_newest_first([*builds.keys(), *(v for v, _, _ in failed)])

    head1 = ['<th rowspan="2">Python</th>']
    head2 = []
    for platform in dict.fromkeys(p for p, _ in columns):
        span = sum(1 for p, _ in columns if p == platform)
        known = registry.platforms.get(platform)
        title = html.escape(known.name if known else platform)
        head1.append(f'<th colspan="{span}" title="{title}">{html.escape(platform)}</th>')
    head2 = [f"<th>{html.escape(arch)}</th>" for _, arch in columns]

    rows = []
    published_count = 0
    for version in versions:
        cells_html = []
        for platform, arch in columns:
            entry = (builds.get(version) or {}).get(platform, {}).get(arch)
            failure = failed.get((version, platform, arch))
            if failure and (entry is None or entry.get("build", 0) < failure[0]):
                build, reason = failure
                # No link to logs/: the CDN does not serve it, and a killed build has no record.
                cells_html.append(
                    f'<td class="failed" title="{html.escape(reason)}">'
                    f"failed #{build}"
                    + (f'<br><span class="old">published #{entry["build"]}</span>' if entry else "")
                    + "</td>"
                )
            elif entry:
                published_count += 1
                links = []
                tarball = None
                for artifact in entry.get("artifacts", []):
                    kind = artifact.get("type", "file")
                    if kind == "tarball":
                        tarball = artifact
                        continue
                    links.append(f'<a href="{html.escape(artifact["key"])}">{html.escape(kind)}</a>')
                links.append(f'<a href="{html.escape(entry.get("manifest", ""))}">manifest</a>')
                main = (
                    f'<a href="{html.escape(tarball["key"])}">#{entry["build"]}</a> '
                    f'<span class="size">{_size(int(tarball.get("size", 0)))}</span>'
                    if tarball
                    else f"#{entry['build']}"
                )
                published = html.escape(str(entry.get("published", "")))
                cells_html.append(
                    f'<td class="published" title="published {published}">{main}<br>'
                    f'<span class="links">{" · ".join(links)}</span></td>'
                )
            else:
                cells_html.append('<td class="missing">—</td>')
        rows.append(f'<tr><th class="version">{html.escape(version)}</th>{"".join(cells_html)}</tr>')

    table = (
        '<table class="matrix">\n<thead>\n'
        f"<tr>{''.join(head1)}</tr>\n<tr>{''.join(head2)}</tr>\n"
        "</thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
    )
    if not versions:
        table = "<p>Nothing published yet.</p>"
    failures = ""
    if failed:
        items = "".join(
            f"<li><code>{html.escape(cell_name(*cell))}</code> build {build}: {html.escape(reason)}</li>"
            for cell, (build, reason) in sorted(failed.items())
        )
        failures = f'<h2>Failed in the latest publish</h2>\n<ul class="failures">{items}</ul>'
    summary = (
        f"{published_count} published builds of {len(document.get('python_versions') or [])} Python versions "
        f"on {len({p for _, p, _ in (cell for cell, _ in iter_cells(document))})} platforms"
    )
    with_cells = sorted({p for _, p, _ in (cell for cell, _ in iter_cells(document))})
    metadata_links = (
        " ".join(
            f'<a href="{DOWNLOAD_METADATA_PREFIX}/{html.escape(p)}.json">{html.escape(p)}</a>'
            for p in with_cells
        )
        or "none yet"
    )
    template = Template((resources.files("buildfarm") / "data" / "index.html").read_text())
    return template.substitute(
        updated=html.escape(str(document.get("updated") or "never")),
        generated=html.escape(iso(now)),
        summary=html.escape(summary),
        table=table,
        failures=failures,
        metadata_links=metadata_links,
    )


# -- install.sh -----------------------------------------------------------------------------

INSTALLER_KEY = "install.sh"
INSTALLER_PLACEHOLDER = "@BASE_URL@"
# The base URL is baked into a shell script: only characters that are inert in a
# double-quoted bash string are accepted.
_SHELL_INERT_URL = re.compile(r"(https?|file)://[A-Za-z0-9._~%+/:@=-]+")  # fullmatch: no newline


def render_installer(base_url: str) -> bytes:
    """install.sh with its default store URL set to base_url (left unset, so the script asks
    for --base-url, if base_url has characters a shell could act on)."""
    script = (resources.files("buildfarm") / "installer" / "install.sh").read_text()
    base_url = base_url.rstrip("/")
    if _SHELL_INERT_URL.fullmatch(base_url):
        script = script.replace(
            f'DEFAULT_BASE_URL="{INSTALLER_PLACEHOLDER}"', f'DEFAULT_BASE_URL="{base_url}"', 1
        )
    else:
        log.warning("not baking base URL %r into install.sh: unexpected characters", base_url)
    return script.encode()


def publish_installer(store: Store, public_url: Callable[[str], str]) -> bool:
    """Put install.sh at the store's root unless the same script is already there."""
    wanted = render_installer(public_url(INSTALLER_KEY).removesuffix(INSTALLER_KEY))
    try:
        current, _ = store.read(INSTALLER_KEY)
    except StoreNotFound:
        current = None
    if current == wanted:
        return False
    store.put(INSTALLER_KEY, wanted, content_type="text/x-shellscript; charset=utf-8")
    return True


def regenerate_derived(
    store: Store,
    registry: Registry,
    platforms: Iterable[str],
    public_url: Callable[[str], str],
    now: datetime,
    failed: dict[Cell, tuple[int, str]] | None = None,
    max_rounds: int = 10,
) -> list[str]:
    """Rewrite download-metadata/<platform>.json and index.html from versions.json (and put
    install.sh at the root if it is missing or outdated).

    After writing, check that versions.json did not change meanwhile; if it did, render
    again. Every publisher does this after its own write, so the last derived files written
    always reflect the newest versions.json. Returns the keys written.
    """
    platforms = list(platforms)
    written: list[str] = []
    if publish_installer(store, public_url):
        written.append(INSTALLER_KEY)
    for _ in range(max_rounds):
        document, etag = read_versions(store)
        published_platforms = {p for _, p, _ in (cell for cell, _ in iter_cells(document))}
        for platform in sorted(published_platforms):
            key = f"{DOWNLOAD_METADATA_PREFIX}/{platform}.json"
            store.put_json(key, uv_download_metadata(document, platform, public_url))
            written.append(key)
        store.put(
            INDEX_KEY,
            render_index(document, registry, platforms, now, failed).encode(),
            content_type="text/html; charset=utf-8",
        )
        written.append(INDEX_KEY)
        after = store.head(VERSIONS_KEY)
        if (after.etag if after else None) == etag:
            break
    return written
