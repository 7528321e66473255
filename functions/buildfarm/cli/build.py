"""buildfarm build: build, self-test, package and store one cell with a local runner.

A standalone build: it claims its cell like a farm run (so no farm run builds the same cell
under the same number meanwhile) with an execution id of its own, and releases the claim when
done. It never publishes, and no farm run publishes it either: publish accepts only builds
whose manifest carries the spec, execution id included, that the farm itself planned."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from buildfarm import clock
from buildfarm.claims import Claimant, claim_cell, release_claims
from buildfarm.cli.arg_types import build_number
from buildfarm.cli.live_build import build_showing_progress
from buildfarm.config import DEFAULT_SOURCE_MIRROR, FarmConfig
from buildfarm.digests import SHA256
from buildfarm.errors import UsageError
from buildfarm.farm import terminate_on_signals
from buildfarm.layout import failure_log_key
from buildfarm.models import BuildSpec, artifact_dir
from buildfarm.platforms import (
    Platform,
    UnknownArchError,
    UnknownPlatformError,
    arch_names,
    canonical_arch,
    load_registry,
)
from buildfarm.python_org import source_file_name
from buildfarm.recovery import local_execution_id, local_liveness
from buildfarm.releases import (
    ReleaseCatalog,
    add_hint,
    known_near,
    newest_of_series,
    source_url,
    stored_catalog,
    unknown_release,
)
from buildfarm.runners import RUNNER_CHOICES, RunnerUnavailable, host_arch, select_runner
from buildfarm.runners.base import STOP_AFTER, check_driver_settings, discard_log
from buildfarm.store import Store, StoreError, open_store
from buildfarm.versions import VersionError, check_version_or_series, is_series, series_of


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build one version for one platform and arch with a local runner (never published)",
        description="Build CPython VERSION for one platform/arch: fetch, verify, configure, make, "
        "install, self-test, package and store it under builds/<version>/<platform>/<arch>/<build>/. "
        "A standalone build: it claims the cell while it builds (as a farm run does) but is never "
        "published into versions.json, by this command or by a later farm run (`buildfarm run` and "
        "the cloud workflow publish only the builds they planned).",
    )
    parser.add_argument(
        "version",
        metavar="VERSION",
        help="a release, e.g. 3.13.5 or 3.14.0rc2, or a series, e.g. 3.13 (its newest known release)",
    )
    parser.add_argument("--platform", required=True, help="registry platform id, e.g. debian-12")
    parser.add_argument("--arch", help=f"{arch_names(' or ')} (default: this machine's)")
    parser.add_argument(
        "--runner",
        default="auto",
        choices=RUNNER_CHOICES,
        help="auto (default): host if it is the platform, else a chroot for Debian and Ubuntu, else docker",
    )
    parser.add_argument(
        "--optimization",
        choices=("pgo+lto", "none"),
        default=None,
        help="default: $BUILDFARM_OPTIMIZATION or pgo+lto",
    )
    parser.add_argument(
        "--store",
        help="a directory (created if missing, as `run` does) or s3://BUCKET/PREFIX "
        "(default: $BUILDFARM_STORE, else ./dist)",
    )
    parser.add_argument(
        "--source-mirror",
        help=f"python.org-shaped mirror (default: $BUILDFARM_SOURCE_MIRROR or {DEFAULT_SOURCE_MIRROR})",
    )
    parser.add_argument(
        "--source-sha256",
        help="sha256 of Python-VERSION.tar.xz (default: the file, .tar.xz or .tgz, and sha256 that "
        "releases.json in the store or the packaged seed knows; see `buildfarm releases`)",
    )
    parser.add_argument(
        "--build", type=build_number, help="build number (default: the next free one in the store)"
    )
    parser.set_defaults(func=run_build)


def known_releases(store_location: str) -> ReleaseCatalog:
    """The releases the store's releases.json and the packaged seed know (no python.org)."""
    try:
        return stored_catalog(open_store(store_location))[0]
    except StoreError as error:
        raise UsageError(f"cannot read the store {store_location}: {error}") from None


def check_version(text: str, config: FarmConfig) -> None:
    """UsageError naming a malformed version or series, or one below the lowest supported
    series ($BUILDFARM_LOWEST_SERIES), which `plan` and `run` refuse too."""
    try:
        check_version_or_series(text)
    except VersionError as error:
        raise UsageError(str(error)) from None
    if problem := config.unsupported_version(text):
        raise UsageError(problem)


def resolve_version(text: str, catalog: ReleaseCatalog) -> str:
    """The release to build: VERSION (checked: check_version) as given, or a series' newest
    known release (the one `plan` and `run` pick for it). UsageError names an unknown series."""
    if not is_series(text):
        return text
    release = newest_of_series(catalog, text)
    if release is None:
        raise UsageError(unknown_release(text, catalog))
    return release.version


def known_source(version: str, catalog: ReleaseCatalog) -> tuple[str, str] | None:
    """(file name, sha256) of the version's source as the catalog knows it (python.org has
    .tar.xz and .tgz; the catalog says which one its digest is of), if it does."""
    release = catalog.releases.get(version)
    return (release.file or source_file_name(version), release.sha256) if release else None


def _arch(requested: str | None, platform: Platform) -> str:
    if requested is None:
        here = host_arch()
        if here not in platform.arches:
            raise UsageError(
                f"this machine is {here}: pass --arch ({platform.id}: {', '.join(platform.arches)})"
            )
        return here
    try:
        return canonical_arch(requested, platform.arches)  # amd64 -> x86_64, arm64 -> aarch64
    except UnknownArchError as error:
        raise UsageError(f"{error} (for {platform.id})") from None


def _source(args: argparse.Namespace, version: str, catalog: ReleaseCatalog) -> tuple[str | None, str]:
    """(file, sha256) of the source: --source-sha256 or the catalog's; the catalog's file
    (.tar.xz or .tgz) when its digest is the one used, else None (.tar.xz)."""
    known = known_source(version, catalog)
    sha256 = args.source_sha256 or (known[1] if known else None)
    if sha256 is None:
        raise UsageError(
            f"no known sha256 for {source_file_name(version)} ({known_near(catalog, series_of(version))}): "
            f"pass --source-sha256, or {add_hint(version)}"
        )
    if not SHA256.fullmatch(sha256):
        raise UsageError(f"malformed --source-sha256 {sha256!r} (64 lowercase hex digits)")
    return (known[0] if known and known[1] == sha256 else None), sha256


def make_spec(args: argparse.Namespace, execution_id: str) -> BuildSpec:
    """Validate the command line into a build spec (reads the store's releases.json, writes nothing)."""
    registry = load_registry()
    config = FarmConfig.from_env(registry=registry, store=args.store)  # ConfigError is a UsageError
    check_version(args.version, config)
    try:
        platform = registry.get(args.platform)
    except UnknownPlatformError as error:
        raise UsageError(str(error)) from None
    arch = _arch(args.arch, platform)
    optimization = args.optimization or os.environ.get("BUILDFARM_OPTIMIZATION") or "pgo+lto"
    if optimization not in ("pgo+lto", "none"):
        raise UsageError(f"unknown optimization {optimization!r} in BUILDFARM_OPTIMIZATION (pgo+lto or none)")
    store = config.store  # --store, else $BUILDFARM_STORE, else ./dist (resolve_store_location)
    mirror = args.source_mirror or os.environ.get("BUILDFARM_SOURCE_MIRROR") or DEFAULT_SOURCE_MIRROR
    if not mirror.startswith(("http://", "https://", "file://")):
        raise UsageError(f"source mirror {mirror!r} must be an http://, https:// or file:// URL")
    catalog = known_releases(store)
    version = resolve_version(args.version, catalog)
    file, sha256 = _source(args, version, catalog)
    build = args.build or 1
    return BuildSpec(
        version=version,
        platform=platform.id,
        arch=arch,
        build=build,
        source={"url": source_url(version, mirror, file), "sha256": sha256},
        prefix=f"/opt/python/{version}",
        optimization=optimization,
        store=store,
        artifact_dir=artifact_dir(version, platform.id, arch, build),
        execution_id=execution_id,
    )


def _claim(store: Store, spec: BuildSpec, requested: int | None, taken: set[int]) -> BuildSpec:
    """Claim the cell for this build (as a farm planner would) -> the spec at the claimed number.

    The number is past every build under builds/ and logs/ and the claim marker's last one.
    An explicit --build is claimed as asked or not at all (the farm may have taken it)."""
    cell = (spec.version, spec.platform, spec.arch)
    claimant = Claimant(
        execution_id=spec.execution_id,
        plan_id=spec.execution_id,  # no plan: a planner takes the claim over once we are gone
        now=clock.now(),
        ttl_seconds=FarmConfig.model_fields["claim_ttl_seconds"].default,
        is_running=local_liveness,
    )
    floor = requested - 1 if requested else max(taken, default=0)
    outcome = claim_cell(store, cell, claimant, published_build=floor)
    name = "/".join(cell)
    if outcome.status == "held":
        raise UsageError(
            f"{name} is being built by {outcome.holder} (build {outcome.build}, claimed until "
            f"{outcome.expires_at}): try again when it is done"
        )
    if requested and outcome.build != requested:
        release_claims(store, [cell], execution_id=spec.execution_id, now=clock.now())
        raise UsageError(
            f"build {requested} of {name} was already claimed (the next free number is {outcome.build})"
        )
    build = outcome.build
    update = {"build": build, "artifact_dir": artifact_dir(spec.version, spec.platform, spec.arch, build)}
    return spec.model_copy(update=update)


def run_build(args: argparse.Namespace) -> int:
    spec = make_spec(args, local_execution_id())
    check_driver_settings(os.environ)
    try:
        runner = select_runner(spec.platform, args.runner, spec.arch)
    except RunnerUnavailable as error:
        raise UsageError(str(error)) from None
    try:
        store = open_store(spec.store)
        taken = store.build_numbers(spec.version, spec.platform, spec.arch)
    except Exception as error:  # unreadable store: say which and stop before building
        raise UsageError(f"cannot read the store {spec.store}: {error}") from None
    if args.build in taken:
        raise UsageError(
            f"build {args.build} of {spec.version}/{spec.platform}/{spec.arch} already exists in the store "
            "(builds are never overwritten; omit --build for the next number)"
        )
    spec = _claim(store, spec, args.build, taken)
    cell = f"{spec.version}/{spec.platform}/{spec.arch}"
    print(f"buildfarm build: {cell} build {spec.build} ({spec.optimization}) with the {runner.name} runner")
    sys.stdout.flush()
    try:
        # SIGTERM/SIGHUP as Ctrl-C: the runner stops its driver (its own session, so no signal
        # reaches it from here) and unmounts its root before the claim is released.
        with terminate_on_signals():
            result = build_showing_progress(runner, spec)
    finally:
        cells = [(spec.version, spec.platform, spec.arch)]
        release_claims(store, cells, execution_id=spec.execution_id, now=clock.now())
    if result.ok:
        if result.log_path is not None and STOP_AFTER not in os.environ:
            discard_log(result.log_path)  # the store holds the build's build.log
        print(
            f"buildfarm build: {cell} build {spec.build} stored in {spec.store}/{spec.artifact_dir} "
            "(standalone: not published)"
        )
        return 0
    where = _failure_log(store, spec, result.log_path)
    print(
        f"buildfarm build: {cell} build {spec.build} FAILED in phase {result.failed_phase}: "
        f"{result.reason}{where}",
        file=sys.stderr,
    )
    return 1


def _failure_log(store: Store, spec: BuildSpec, log_path: Path | None) -> str:
    """Where the failed build's full log is: the store's logs/ copy, which the driver recorded
    with failure.json (the temporary one is then removed), else the runner's copy, kept."""
    key = failure_log_key(spec.version, spec.platform, spec.arch, spec.build)
    try:
        recorded = STOP_AFTER not in os.environ and store.exists(key)
    except Exception:  # an unreadable store: the temporary copy is the only one to name
        recorded = False
    if recorded:
        if log_path is not None:
            discard_log(log_path)
        return f" (full log: {spec.store}/{key})"
    return f" (full log: {log_path})" if log_path else ""
