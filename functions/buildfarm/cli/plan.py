"""`buildfarm plan` (what would be built, and why the rest is skipped; a dry run) and
`buildfarm status` (the published matrix from versions.json)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from buildfarm.attest.listed_files import MissingFile, missing_files, missing_files_error
from buildfarm.catalog import VERSIONS_KEY, iter_cells, read_versions
from buildfarm.catalog.install_script import store_fingerprints
from buildfarm.cli.store_errors import STORE_FAILURES, store_failure
from buildfarm.config import ConfigError, FarmConfig
from buildfarm.errors import UsageError
from buildfarm.store import LocalStore, Store, StoreError, open_store
from buildfarm.workflow_input import (
    InputError,
    add_matrix_arguments,
    parse_workflow_input,
    raw_input_from_args,
)

if TYPE_CHECKING:
    from buildfarm.plan import Plan


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="DIR|s3://BUCKET/PREFIX",
        help="the store (default: $BUILDFARM_STORE, else ./dist)",
    )


def _config_and_store(args: argparse.Namespace) -> tuple[FarmConfig, Store]:
    try:
        config = FarmConfig.from_env(store=args.store)  # --store, else $BUILDFARM_STORE, else ./dist
    except ConfigError as error:
        raise UsageError(str(error)) from None
    try:
        store = open_store(config.store)
    except StoreError as error:
        raise UsageError(str(error)) from None
    require_existing_store(store, "`buildfarm run` creates one")
    return config, store


def require_existing_store(store: Store, remedy: str) -> None:
    """Refuse a local store directory that does not exist: a mistyped --store must not look like
    an empty store (commands that read) nor quietly become a new one (commands that write)."""
    if isinstance(store, LocalStore) and not store.root.is_dir():
        raise UsageError(
            f"store {store.location} does not exist: pass --store (or set BUILDFARM_STORE) to an "
            f"existing store; {remedy}"
        )


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_plan(args: argparse.Namespace) -> int:
    from buildfarm.plan import new_execution_id, plan

    try:
        raw = raw_input_from_args(args)  # the user's own mistake first, before the store's
    except InputError as error:
        raise UsageError(str(error)) from None
    config, store = _config_and_store(args)
    try:
        # The input's own dry_run is validated as given ("perhaps" is an error) before the
        # CLI sets it: `buildfarm plan` never claims or writes.
        parse_workflow_input(raw, config)
        result = plan({**raw, "dry_run": True}, store, config, new_execution_id())
    except InputError as error:
        raise UsageError(str(error)) from None
    except STORE_FAILURES as error:  # exit 2, as `run` and `reindex` of the same store
        raise store_failure(store.location, error) from None
    return print_plan(result, store, as_json=args.json)


def print_plan(result: Plan, store: Store, *, as_json: bool = False) -> int:
    """A dry run's plan: each cell with its build number, and why the others are skipped."""
    if as_json:
        document: dict[str, Any] = {
            **result.summary,
            "policy": result.policy.model_dump(mode="json") if result.policy else None,
            "build": [{"cell": item.cell, "build": item.spec.build} for item in result.items],
            "skipped": [s.model_dump(mode="json") for s in result.skipped],
        }
        json.dump(document, sys.stdout, indent=1)
        print()
        return 0

    counts = result.counts
    print(f"store: {store.location}    releases: {result.releases_refresh}")
    for line in result.policy.lines() if result.policy else []:
        print(line)
    print(
        f"{counts['cells']} cells: {counts['planned']} to build, {counts['skipped_published']} published, "
        f"{counts['skipped_claimed']} claimed by another execution"
        + (f", {counts['skipped_failing']} failing (retried later)" if counts["skipped_failing"] else "")
        + ("  (force)" if result.force else "")
    )
    if counts["deferred"]:
        print(
            f"{counts['deferred']} more left for later runs: one execution builds at most {result.budget} "
            "(BUILDFARM_MAX_CELLS_PER_EXECUTION, else concurrency x timeout / job estimate x 0.5)"
        )
    rows = [
        [item.cell, str(item.spec.build), "build", "forced rebuild" if result.force else "not published"]
        for item in result.items
    ]
    rows += [[s.cell, str(s.build), "skip", s.detail] for s in result.skipped]
    if rows:
        print()
        print(format_table(rows, ["CELL", "BUILD", "ACTION", "WHY"]))
    print("\n(dry run: nothing claimed or written)")
    return 0


def signing_keys_line(fingerprints: list[str]) -> str:
    """What status says about the keys that sign the store (keys/keys.json, current first)."""
    if not fingerprints:
        return "signing key: none (unsigned store)"
    current, *older = fingerprints
    line = f"signing key: {current}"
    return line + (f" (older keys still listed: {', '.join(older)})" if older else "")


def run_status(args: argparse.Namespace) -> int:

    _, store = _config_and_store(args)
    try:
        document, etag = read_versions(store)
        fingerprints = store_fingerprints(store)
        # Cheap (a listing per version, nothing read): `buildfarm verify` checks the sha256s.
        missing = missing_files(store, document) if etag is not None else []
    except STORE_FAILURES as error:  # exit 2, worded as `run`, `reindex` and `plan` word it
        raise store_failure(store.location, error) from None

    cells = [
        {
            "cell": f"{version}/{platform}/{arch}",
            "build": entry.get("build"),
            "published": entry.get("published"),
            "artifacts": entry.get("artifacts", []),
        }
        for (version, platform, arch), entry in iter_cells(document)
    ]
    if args.json:
        json.dump(
            {
                "store": store.location,
                "updated": document.get("updated"),
                "python_versions": document.get("python_versions", []),
                "signing_keys": fingerprints,
                "cells": cells,
                "missing": [{"cell": f.cell, "build": f.build, "key": f.key} for f in missing],
            },
            sys.stdout,
            indent=1,
        )
        print()
    elif etag is None:
        print(f"nothing published yet in {store.location}")
        print(signing_keys_line(fingerprints))
    else:
        _print_matrix(store, document, fingerprints, len(cells))
        _print_missing(missing)
    if missing:  # shown above; then the error `reindex` and `run` stop with, exit 2
        raise store_failure(store.location, missing_files_error(missing))
    return 0


def _print_matrix(store: Store, document: dict[str, Any], fingerprints: list[str], published: int) -> None:
    """The published builds, a version per row and a platform/arch per column."""
    builds = document.get("builds") or {}
    columns = sorted({(p, a) for (_, p, a), _ in iter_cells(document)})
    header = ["VERSION", *(f"{p}/{a}" for p, a in columns)]
    rows = []
    for version in document.get("python_versions", []):
        row = [version]
        for platform, arch in columns:
            entry = (builds.get(version) or {}).get(platform, {}).get(arch)
            row.append(f"#{entry['build']}" if entry else "-")
        rows.append(row)
    print(f"store: {store.location}    updated: {document.get('updated')}")
    print(signing_keys_line(fingerprints))
    print(f"{published} published cells, {len(document.get('python_versions', []))} versions")
    print()
    print(format_table(rows, header))


def _print_missing(missing: list[MissingFile]) -> None:
    if missing:
        print(f"\nlisted in {VERSIONS_KEY} but not in the store:")
        print(format_table([[f.cell, f.build, f.key] for f in missing], ["CELL", "BUILD", "MISSING FILE"]))


def register(subparsers: argparse._SubParsersAction) -> None:
    plan_parser = subparsers.add_parser(
        "plan",
        help="show what would be built and why other cells are skipped (dry run)",
        description="Plan the build matrix without claiming or writing anything.",
    )
    add_matrix_arguments(plan_parser)
    add_store_argument(plan_parser)
    plan_parser.add_argument("--json", action="store_true", help="machine-readable output")
    plan_parser.set_defaults(func=run_plan)

    status_parser = subparsers.add_parser(
        "status",
        help="the published matrix (versions.json)",
        description="Show what is published in the store.",
    )
    add_store_argument(status_parser)
    status_parser.add_argument("--json", action="store_true", help="machine-readable output")
    status_parser.set_defaults(func=run_status)
