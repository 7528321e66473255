"""`buildfarm releases` (the releases the farm knows, by series, and how to add one) and
`buildfarm platforms` (the registry, and which runner on this machine can build each platform)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from typing import Any

from buildfarm import clock
from buildfarm.catalog import iter_cells, read_versions
from buildfarm.cli.plan import format_table, require_existing_store
from buildfarm.config import ConfigError, FarmConfig, resolve_store_location
from buildfarm.errors import UsageError
from buildfarm.platforms import Platform, Registry, UnknownPlatformError, load_registry
from buildfarm.release_import import (
    CatalogChange,
    ReleaseInputError,
    add_releases,
    new_release,
    parse_sha256sums,
    read_sha256sums,
)
from buildfarm.releases import Release, ReleaseCatalog, stored_catalog
from buildfarm.runners import availability
from buildfarm.store import LocalStore, Store, StoreError, open_store
from buildfarm.suggest import unknown_name
from buildfarm.versions import is_series, series_of, sort_newest_first

ADD_USAGE = "buildfarm releases add X.Y.Z --sha256 HEX [--file Python-X.Y.Z.tgz]"
IMPORT_USAGE = "buildfarm releases import MIRROR/SHA256SUMS"


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_releases(subparsers)
    parser = subparsers.add_parser(
        "platforms",
        help="the platforms the farm builds for, and which runner here can build each",
        description="List the registry's platforms: distribution, arches, package type, end of "
        "support, whether the schedule builds it, and which local runner on this machine can build "
        "each arch. With a PLATFORM: its details, and why each runner can or cannot build it here.",
    )
    parser.add_argument("platform", nargs="?", metavar="PLATFORM", help="one platform id, e.g. debian-12")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_platforms)


def _register_releases(subparsers: argparse._SubParsersAction) -> None:
    store_help = "the store whose releases.json is read or written (default: $BUILDFARM_STORE, else ./dist)"
    parser = subparsers.add_parser(
        "releases",
        help="the CPython releases the farm knows, by series; add one for an air-gapped mirror",
        description="List the releases the store's releases.json (and the packaged seed) knows, by "
        "series with its end of life: source file, sha256, and whether it is published. `run` and "
        "the schedule refresh releases.json from python.org (`plan` saves nothing); without "
        f"python.org, add releases by hand ({ADD_USAGE}) or from a mirror's checksum list ({IMPORT_USAGE}).",
    )
    parser.add_argument("--store", metavar="DIR|s3://BUCKET/PREFIX", help=store_help)
    parser.add_argument("--series", metavar="X.Y", help="only this series, e.g. 3.13")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_releases)
    actions = parser.add_subparsers(dest="releases_action", metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="add a release to releases.json",
        description="Add one release to the store's releases.json: its version, the sha256 of its "
        "source tarball and which tarball that is. A release already known with another sha256 is "
        "refused (the digest is what every build verifies its source against) unless --force.",
    )
    add.add_argument("version", metavar="VERSION", help="an exact release, e.g. 3.12.1 or 3.14.0rc2")
    add.add_argument("--sha256", required=True, metavar="HEX", help="sha256 of the source tarball")
    add.add_argument("--file", metavar="NAME", help="Python-VERSION.tar.xz (default) or Python-VERSION.tgz")
    add.add_argument("--force", action="store_true", help="replace a known release's sha256")
    add.add_argument("--store", dest="action_store", metavar="DIR|s3://BUCKET/PREFIX", help=store_help)
    add.set_defaults(func=run_releases_add)

    imported = actions.add_parser(
        "import",
        help="add every CPython source tarball a mirror's SHA256SUMS lists",
        description="Add the releases a SHA256SUMS file lists (sha256sum's format; a path, or an "
        "http(s):// or file:// URL): every Python-X.Y.Z.tar.xz or .tgz in it (.tar.xz if both). "
        "All or nothing: a digest that contradicts a known release stops the import unless --force.",
    )
    imported.add_argument("source", metavar="SHA256SUMS", help="a file or URL")
    imported.add_argument("--force", action="store_true", help="replace known releases' sha256")
    imported.add_argument("--store", dest="action_store", metavar="DIR|s3://BUCKET/PREFIX", help=store_help)
    imported.set_defaults(func=run_releases_import)


# -- releases ---------------------------------------------------------------------------------


def _open_store(args: argparse.Namespace) -> Store:
    location = resolve_store_location(getattr(args, "action_store", None) or args.store)
    try:
        return open_store(location)
    except StoreError as error:
        raise UsageError(str(error)) from None


def _read(store: Store, explicit: bool) -> tuple[ReleaseCatalog, str, dict[str, int]]:
    """(catalog, where it comes from, published cells per version) of a store. A store that
    does not exist yet is fine unless it was named: the catalog is then the packaged seed."""
    if isinstance(store, LocalStore) and not store.root.is_dir():
        if explicit:
            raise UsageError(f"store {store.location} does not exist (omit --store for the packaged seed)")
        return stored_catalog(store)[0], f"the packaged seed (no store at {store.location} yet)", {}
    try:
        catalog, etag = stored_catalog(store)
        versions, _ = read_versions(store)
    except (StoreError, ValueError) as error:
        raise UsageError(f"store {store.location}: {error}") from None
    published: dict[str, int] = {}
    for (version, _, _), _ in iter_cells(versions):
        published[version] = published.get(version, 0) + 1
    if etag is None:
        return catalog, f"the packaged seed (no releases.json in {store.location} yet)", published
    updated = f", refreshed from python.org {catalog.updated}" if catalog.updated else ""
    return catalog, f"{store.location}/releases.json{updated}", published


def release_rows(
    catalog: ReleaseCatalog, published: dict[str, int], registry: Registry, today: date
) -> list[dict[str, Any]]:
    """One entry per series (newest first): its end of life and releases. A version published
    in the store but not in the catalog is listed with its sha256 'missing'."""
    versions = sort_newest_first([*catalog.releases, *published])
    series = sort_newest_first([*registry.series_end_of_life, *map(series_of, versions)])
    rows = []
    for name in series:
        end = registry.series_end_of_life.get(name)
        releases = []
        for version in (v for v in versions if series_of(v) == name):
            release: Release | None = catalog.releases.get(version)
            releases.append(
                {
                    "version": version,
                    "file": release.file if release else None,
                    "sha256": release.sha256 if release else None,
                    "sha256_state": "known" if release else "missing",
                    "release_date": release.release_date if release else None,
                    "prerelease": release.prerelease if release else None,
                    "published_cells": published.get(version, 0),
                }
            )
        rows.append(
            {
                "series": name,
                "end_of_life": end.isoformat() if end else None,
                "ended": bool(end and today > end),
                "releases": releases,
            }
        )
    return rows


def run_releases(args: argparse.Namespace) -> int:
    if args.series is not None and not is_series(args.series):
        raise UsageError(f"malformed series {args.series!r} (expected e.g. 3.13)")
    explicit = bool(args.store)
    catalog, source, published = _read(_open_store(args), explicit)
    rows = release_rows(catalog, published, load_registry(), clock.now().date())
    if args.series is not None:
        known = [row["series"] for row in rows]
        if args.series not in known:
            raise UsageError(unknown_name("series", args.series, known))
        rows = [row for row in rows if row["series"] == args.series]
    if args.json:
        json.dump({"catalog": source, "series": rows}, sys.stdout, indent=1)
        print()
        return 0
    print(f"releases known to {source}")
    print()
    print(format_table(_release_table(rows), _RELEASE_HEADER))
    print(f"\nadd a release: {ADD_USAGE}\nor every release a mirror lists: {IMPORT_USAGE}")
    return 0


_RELEASE_HEADER = ["SERIES", "END OF LIFE", "VERSION", "RELEASED", "SOURCE", "SHA256", "PUBLISHED"]


def _release_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    table = []
    for row in rows:
        end = (row["end_of_life"] or "unknown") + (" (ended)" if row["ended"] else "")
        lead = [row["series"], end]
        if not row["releases"]:
            table.append([*lead, "none known", "-", "-", "-", "-"])
        for release in row["releases"]:
            cells = release["published_cells"]
            table.append(
                [
                    *lead,
                    release["version"] + (" (pre)" if release["prerelease"] else ""),
                    (release["release_date"] or "-")[:10],
                    release["file"] or "-",
                    release["sha256_state"],
                    f"{cells} cell{'s' * (cells != 1)}" if cells else "-",
                ]
            )
            lead = ["", ""]
    return table


def _named_store(args: argparse.Namespace) -> bool:
    """Whether the store was named (--store or $BUILDFARM_STORE), not the default ./dist."""
    return bool(
        getattr(args, "action_store", None) or args.store or os.environ.get("BUILDFARM_STORE", "").strip()
    )


def _store_errors(action: str, store: Store, new: list[Release], force: bool, named: bool) -> CatalogChange:
    # A named store that does not exist is a typo, not a new store; the default ./dist may start here.
    if named:
        require_existing_store(
            store, f"to start a new one, create its directory first (mkdir {store.location})"
        )
    try:
        return add_releases(store, new, force=force)
    except ReleaseInputError as error:
        raise UsageError(str(error)) from None
    except StoreError as error:
        raise UsageError(f"{action}: store {store.location}: {error}") from None


def run_releases_add(args: argparse.Namespace) -> int:
    try:
        release = new_release(args.version, args.sha256, args.file)
    except ReleaseInputError as error:
        raise UsageError(str(error)) from None
    if problem := FarmConfig.from_env().unsupported_version(release.version):  # as plan and build
        raise UsageError(problem)
    store = _open_store(args)
    change = _store_errors("add", store, [release], args.force, _named_store(args))
    what = f"{release.version} ({release.file}, sha256 {release.sha256})"
    if change.replaced:
        print(f"replaced {what} in {store.location}/releases.json (--force)")
    elif change.added:
        print(f"added {what} to {store.location}/releases.json")
    else:
        print(f"{what} is already known to {store.location}: nothing to do")
    return 0


def run_releases_import(args: argparse.Namespace) -> int:
    try:
        releases, others = parse_sha256sums(read_sha256sums(args.source), args.source)
    except ReleaseInputError as error:
        raise UsageError(str(error)) from None
    if not releases:
        raise UsageError(f"{args.source} lists no CPython source tarball (Python-X.Y.Z.tar.xz or .tgz)")
    store = _open_store(args)
    change = _store_errors("import", store, releases, args.force, _named_store(args))
    added = ", ".join(r.version for r in change.added) or "none"
    replaced = (
        f", replaced (--force): {', '.join(r.version for r in change.replaced)}" if change.replaced else ""
    )
    print(
        f"imported into {store.location}/releases.json from {args.source}: added {added}{replaced}; "
        f"{len(change.unchanged)} already known, {others} other file(s) ignored"
    )
    return 0


# -- platforms --------------------------------------------------------------------------------


def platform_entry(
    platform: Platform, registry: Registry, enabled: tuple[str, ...], today: date
) -> dict[str, Any]:
    """What `buildfarm platforms` shows of a platform, runners included (None: can build here)."""
    ended = today > platform.end_of_support
    return {
        "id": platform.id,
        "name": platform.name,
        "arches": list(platform.arches),
        "package": registry.family_of(platform.id).package_format,
        "end_of_support": platform.end_of_support.isoformat(),
        "ended": ended,
        "enabled": platform.id in enabled,
        "scheduled": platform.id in enabled and not ended,
        "unbuildable_series": platform.unbuildable_series,
        "runners": {arch: availability(platform, arch, registry) for arch in platform.arches},
    }


def _builds_here(runners: dict[str, dict[str, str | None]]) -> str:
    return "; ".join(
        f"{arch}: {', '.join(name for name, why in by_runner.items() if why is None) or 'none'}"
        for arch, by_runner in runners.items()
    )


def run_platforms(args: argparse.Namespace) -> int:
    registry = load_registry()
    try:
        enabled = FarmConfig.from_env(registry=registry).enabled_platforms
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if args.platform is not None:
        try:
            chosen = [registry.get(args.platform)]
        except UnknownPlatformError as error:
            raise UsageError(str(error)) from None
    else:
        chosen = list(registry.platforms.values())
    today = clock.now().date()
    entries = [platform_entry(platform, registry, enabled, today) for platform in chosen]
    if args.json:
        json.dump(entries if args.platform is None else entries[0], sys.stdout, indent=1)
        print()
    elif args.platform is not None:
        _print_platform(entries[0])
    else:
        print(format_table([_platform_row(entry) for entry in entries], _PLATFORM_HEADER))
        print("\nwhy a runner cannot build a platform here: buildfarm platforms PLATFORM")
    return 0


_PLATFORM_HEADER = [
    "PLATFORM",
    "DISTRIBUTION",
    "ARCHES",
    "PACKAGE",
    "END OF SUPPORT",
    "SCHEDULED",
    "BUILDS HERE",
]


def _platform_row(entry: dict[str, Any]) -> list[str]:
    scheduled = "yes" if entry["scheduled"] else ("ended" if entry["ended"] else "not enabled")
    return [
        entry["id"],
        entry["name"],
        ", ".join(entry["arches"]),
        entry["package"],
        entry["end_of_support"],
        scheduled,
        _builds_here(entry["runners"]),
    ]


def _print_platform(entry: dict[str, Any]) -> None:
    ended = " (ended: built only when named)" if entry["ended"] else ""
    print(f"{entry['id']}: {entry['name']}, .{entry['package']} packages")
    print(f"end of support: {entry['end_of_support']}{ended}")
    if not entry["enabled"]:
        print("not enabled here (BUILDFARM_ENABLED_PLATFORMS)")
    for series, reason in entry["unbuildable_series"].items():
        print(f"never built for {series}: {reason}")
    for arch, by_runner in entry["runners"].items():
        print(f"{arch}:")
        for name, why in by_runner.items():
            print(f"  {name:<7} {'can build it here' if why is None else why}")
