"""`buildfarm runtime build NAME --platform P --arch A`: a runtime (a published Python build and
a venv of locked requirements at a fixed prefix), built, self-tested, packaged and published
under runtimes/<name>/<version>/<platform>/<arch>/<build>/ in the store. On this machine when it
is P and A (--runner host, the default; elsewhere refused, runtime_build.check_placement), or in
P's builder image (--runner docker, runtimes/docker_job.py).
`buildfarm runtime list`: the definitions and their cells."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from buildfarm.cli.arg_types import build_number, execution_id
from buildfarm.config import resolve_store_location
from buildfarm.errors import UsageError
from buildfarm.platforms import (
    UnknownArchError,
    UnknownPlatformError,
    arch_names,
    canonical_arch,
    load_registry,
)
from buildfarm.runtimes.cloud_items import DEFINITIONS_ENV
from buildfarm.runtimes.definitions import GIT_TAG, default_definitions, find_definition, load_definitions
from buildfarm.runtimes.farm_cells import default_cache
from buildfarm.runtimes.keys import RUNTIME_CACHE_DIR
from buildfarm.runtimes.python_source import check_local_tarball, tarball_cell_problem
from buildfarm.runtimes.runtime_build import CACHE_ENV, RuntimeRequest, build_runtime
from buildfarm.store import Store, StoreError, open_store

RUNNERS = ("host", "docker")


def register(subparsers: argparse._SubParsersAction) -> None:
    runtime = subparsers.add_parser(
        "runtime",
        help="build runtimes: Python plus a locked venv at a fixed prefix",
        description="Runtimes are defined as TOML files (the repository's runtimes/ or --definitions DIR).",
    )
    actions = runtime.add_subparsers(dest="runtime_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="build, self-test, package and store one runtime for a platform and arch "
        "(by hand: never published)",
        description="Takes the newest published Python build of the runtime's series for the cell, "
        "installs the locked requirements with uv in hash-checking mode, self-tests the tree and "
        "stores a tarball, the platform's package and a manifest under "
        "runtimes/<name>/<version>/<platform>/<arch>/<build>/. A farm's runtime job runs it with "
        "the --build and --execution-id its claim gave, and the farm then publishes that build into "
        "versions.json; run by hand it is a standalone build, which no run publishes (`buildfarm run` "
        "builds and publishes the runtime cells of this machine's platform and arch).",
    )
    build.add_argument("name", help="the runtime (a definition's name)")
    build.add_argument("--platform", required=True, help="a platform of the registry (debian-12, ...)")
    build.add_argument("--arch", default="x86_64", help=f"{arch_names(' or ')} (default x86_64)")
    add_common(build)
    build.add_argument(
        "--store", help="a directory or s3://BUCKET/PREFIX (default: $BUILDFARM_STORE or ./dist)"
    )
    build.add_argument(
        "--python-tarball",
        metavar="FILE",
        type=Path,
        help="use this Python build tarball instead of the store's newest published one",
    )
    build.add_argument(
        "--runtime-version",
        metavar="VERSION",
        help="override the definition's version (its prefix's {version} follows it)",
    )
    add_farm_job_options(build)
    build.add_argument(
        "--cache",
        metavar="DIR",
        type=Path,
        help=f"uv's download cache (default: ${CACHE_ENV}, else <store>/{RUNTIME_CACHE_DIR} for a "
        "directory store, else ~/.cache/buildfarm/uv)",
    )
    build.add_argument(
        "--runner",
        choices=RUNNERS,
        default="host",
        help="host: on this machine, which must be the platform and arch (default); docker: in the "
        "platform's builder image (built if missing), as the cloud builds it",
    )
    build.set_defaults(func=run_build)
    listing = actions.add_parser("list", help="the runtime definitions and their cells")
    add_common(listing)
    listing.set_defaults(func=run_list)


def add_farm_job_options(build: argparse.ArgumentParser) -> None:
    """What a farm's job adds to `runtime build`: the claimed build number and its execution."""
    build.add_argument(
        "--build",
        metavar="N",
        type=build_number,
        help="publish as build N (the number a farm's claim gave; taken already: an error) "
        "instead of the next free one",
    )
    build.add_argument(
        "--execution-id",
        metavar="ID",
        type=execution_id,
        help="the farm execution that claimed --build, recorded in the manifest: the farm publishes "
        "the build only for that execution",
    )


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--definitions",
        metavar="DIR",
        type=Path,
        help=f"the runtime definitions (default: ${DEFINITIONS_ENV}, else the repository's runtimes/)",
    )


def definitions_dir(args: argparse.Namespace) -> Path:
    return args.definitions or Path(os.environ.get(DEFINITIONS_ENV) or default_definitions())


def cache_dir(explicit: Path | None, store: Store) -> Path:
    """The download cache: --cache, else the cache variable, else the one a farm's builds use
    (farm_cells.default_cache)."""
    if explicit or os.environ.get(CACHE_ENV):
        return (explicit or Path(os.environ[CACHE_ENV])).resolve()
    return default_cache(store)


def _cell(args: argparse.Namespace) -> tuple[str, str]:
    try:
        load_registry().get(args.platform)
        return args.platform, canonical_arch(args.arch)
    except (UnknownPlatformError, UnknownArchError) as error:
        raise UsageError(str(error)) from None


def runtime_request(args: argparse.Namespace) -> RuntimeRequest:
    """The build `buildfarm runtime build` asks for (the cell, definition, store and build number
    checked; one-line UsageError naming a bad value)."""
    platform, arch = _cell(args)
    definition = find_definition(args.name, definitions_dir(args))
    version = definition.resolved_version(args.runtime_version)
    if args.python_tarball:  # before the store is opened: a refusal writes nothing
        if problem := tarball_cell_problem(args.python_tarball, platform, arch):
            raise UsageError(problem)
        check_local_tarball(args.python_tarball)
    try:
        store = open_store(resolve_store_location(args.store))
    except StoreError as error:
        raise UsageError(str(error)) from None
    return RuntimeRequest(
        definition=definition.at_version(version),  # installed at this version's prefix
        version=version,
        platform=platform,
        arch=arch,
        store=store,
        cache=cache_dir(args.cache, store),
        python_tarball=args.python_tarball.resolve() if args.python_tarball else None,
        build=args.build,
        execution_id=args.execution_id,
    )


def run_build(args: argparse.Namespace) -> int:
    request = runtime_request(args)
    if args.runner == "docker":
        from buildfarm.runtimes.docker_job import run_docker_job  # docker and images: only here

        return run_docker_job(request, definitions_dir(args).resolve())
    definition, platform, arch, store = request.definition, request.platform, request.arch, request.store
    directory, manifest = build_runtime(request)
    packages = ", ".join(f"{p['name']} {p['version']}" for p in manifest["packages"])
    print(f"{definition.name} {request.version} ({platform}/{arch}) build {manifest['build']}: "
          f"Python {manifest['python']['version']}; {packages}")  # fmt: skip
    print(f"moved to {definition.prefix}: {manifest['selftest']['moved']['status']}")
    standalone = "" if request.execution_id else " (standalone: not published)"
    print(f"stored {store.url(directory)}/{standalone}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    for definition in load_definitions(definitions_dir(args)):
        cells = ", ".join(f"{p}/{a}" for p in definition.platforms for a in definition.arches)
        prefix = (
            definition.prefix if definition.version == GIT_TAG else definition.prefix_for(definition.version)
        )
        where = f"Python {definition.python} at {prefix}"
        print(f"{definition.name} {definition.version}: {where}; {cells}")
    return 0
