"""buildfarm build: build, self-test, package and store one cell with a local runner.

A standalone build: it claims its cell like a farm run (so no farm run builds the same cell
under the same number meanwhile) with an execution id of its own, and releases the claim when
done. It never publishes, and no farm run publishes it either: publish accepts only builds
whose manifest carries the spec, execution id included, that the farm itself planned."""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime

from buildfarm.claims import claim_cell, release_claims
from buildfarm.config import FarmConfig
from buildfarm.models import BuildSpec, artifact_dir
from buildfarm.platforms import UnknownPlatformError, load_registry
from buildfarm.recovery import local_execution_id, local_liveness
from buildfarm.store import Store, open_store
from buildfarm.versions import VersionError, parse_release

DEFAULT_MIRROR = "https://www.python.org/ftp/python"
DEFAULT_STORE = "./dist"
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    parser.add_argument("version", metavar="VERSION", help="exact release, e.g. 3.13.5 or 3.14.0rc2")
    parser.add_argument("--platform", required=True, help="registry platform id, e.g. debian-12")
    parser.add_argument("--arch", help="x86_64 or aarch64 (default: this machine's)")
    parser.add_argument("--runner", default="auto", choices=("auto", "host", "chroot", "docker"))
    parser.add_argument(
        "--optimization",
        choices=("pgo+lto", "none"),
        default=None,
        help="default: $BUILDFARM_OPTIMIZATION or pgo+lto",
    )
    parser.add_argument(
        "--store", help="a directory or s3://BUCKET/PREFIX (default: $BUILDFARM_STORE or ./dist)"
    )
    parser.add_argument(
        "--source-mirror",
        help=f"python.org-shaped mirror (default: $BUILDFARM_SOURCE_MIRROR or {DEFAULT_MIRROR})",
    )
    parser.add_argument(
        "--source-sha256",
        help="sha256 of Python-VERSION.tar.xz (default: the catalog's file, .tar.xz or .tgz, and its sha256)",
    )
    parser.add_argument("--build", type=int, help="build number (default: the next free one in the store)")
    parser.set_defaults(func=run_build)


def _error(message: str) -> Exception:
    from buildfarm.cli import CliError  # the CLI package imports this module

    return CliError(message)


def known_source(version: str) -> tuple[str, str] | None:
    """(file name, sha256) of the version's source from the releases catalog shipped with the
    package (python.org has .tar.xz and .tgz; the catalog says which one it knows), if any."""
    try:
        from buildfarm.releases import load_seed

        release = load_seed().releases.get(version)
    except Exception:  # no or unreadable seed catalog: the caller asks for --source-sha256
        return None
    return (release.file or f"Python-{version}.tar.xz", release.sha256) if release else None


def source_url(version: str, mirror: str, file: str | None = None) -> str:
    """<mirror>/<X.Y.Z>/<file> (default Python-<version>.tar.xz): the planner's layout."""
    from buildfarm.releases import source_url as catalog_source_url

    return catalog_source_url(version, mirror, file)


def make_spec(args: argparse.Namespace, execution_id: str) -> BuildSpec:
    """Validate the command line into a build spec (no side effects)."""
    try:
        parse_release(args.version)
    except VersionError as error:
        raise _error(str(error)) from None
    registry = load_registry()
    try:
        platform = registry.get(args.platform)
    except UnknownPlatformError as error:
        raise _error(str(error)) from None
    from buildfarm.runners.local import host_arch

    arch = args.arch or host_arch()
    if arch not in platform.arches:
        raise _error(f"unknown arch {arch!r} for {platform.id} (arches: {', '.join(platform.arches)})")
    optimization = args.optimization or os.environ.get("BUILDFARM_OPTIMIZATION") or "pgo+lto"
    if optimization not in ("pgo+lto", "none"):
        raise _error(f"unknown optimization {optimization!r} in BUILDFARM_OPTIMIZATION (pgo+lto or none)")
    known = known_source(args.version)
    sha256 = args.source_sha256 or (known[1] if known else None)
    # The catalog's file (.tar.xz or .tgz) when its digest is the one used, else .tar.xz.
    file = known[0] if known and known[1] == sha256 else None
    if sha256 is None:
        raise _error(f"no known sha256 for Python-{args.version}.tar.xz: pass --source-sha256")
    if not _SHA256.fullmatch(sha256):
        raise _error(f"malformed --source-sha256 {sha256!r} (64 lowercase hex digits)")
    store = args.store or os.environ.get("BUILDFARM_STORE") or DEFAULT_STORE
    if not store.startswith("s3://"):
        if "://" in store and not store.startswith("file://"):
            raise _error(f"unsupported store {store!r} (a directory or s3://BUCKET/PREFIX)")
        store = os.path.abspath(store.removeprefix("file://"))
        if os.path.exists(store) and not os.path.isdir(store):
            raise _error(f"store {store!r} is not a directory")
    elif not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", store):
        raise _error(f"malformed S3 store {store!r} (s3://BUCKET/PREFIX)")
    mirror = args.source_mirror or os.environ.get("BUILDFARM_SOURCE_MIRROR") or DEFAULT_MIRROR
    if not mirror.startswith(("http://", "https://", "file://")):
        raise _error(f"source mirror {mirror!r} must be an http://, https:// or file:// URL")
    if args.build is not None and args.build < 1:
        raise _error(f"build number must be >= 1, not {args.build}")
    build = args.build or 1
    return BuildSpec(
        version=args.version,
        platform=platform.id,
        arch=arch,
        build=build,
        source={"url": source_url(args.version, mirror, file), "sha256": sha256},
        prefix=f"/opt/python/{args.version}",
        optimization=optimization,
        store=store,
        artifact_dir=artifact_dir(args.version, platform.id, arch, build),
        execution_id=execution_id,
    )


def _claim(store: Store, spec: BuildSpec, requested: int | None, taken: set[int]) -> BuildSpec:
    """Claim the cell for this build (as a farm planner would) -> the spec at the claimed number.

    The number is past every build under builds/ and logs/ and the claim marker's last one.
    An explicit --build is claimed as asked or not at all (the farm may have taken it)."""
    cell = (spec.version, spec.platform, spec.arch)
    outcome = claim_cell(
        store,
        cell,
        execution_id=spec.execution_id,
        plan_id=spec.execution_id,  # no plan: a planner takes the claim over once we are gone
        published_build=requested - 1 if requested else max(taken, default=0),
        now=datetime.now(UTC),
        ttl_seconds=FarmConfig.model_fields["claim_ttl_seconds"].default,
        is_running=local_liveness,
    )
    name = "/".join(cell)
    if outcome.status == "held":
        raise _error(
            f"{name} is being built by {outcome.holder} (build {outcome.build}, claimed until "
            f"{outcome.expires_at}): try again when it is done"
        )
    if requested and outcome.build != requested:
        release_claims(store, [cell], execution_id=spec.execution_id, now=datetime.now(UTC))
        raise _error(
            f"build {requested} of {name} was already claimed (the next free number is {outcome.build})"
        )
    build = outcome.build
    update = {"build": build, "artifact_dir": artifact_dir(spec.version, spec.platform, spec.arch, build)}
    return spec.model_copy(update=update)


def run_build(args: argparse.Namespace) -> int:
    from buildfarm.runners import RunnerUnavailable, select_runner

    spec = make_spec(args, local_execution_id())
    try:
        runner = select_runner(spec.platform, args.runner, spec.arch)
    except RunnerUnavailable as error:
        raise _error(str(error)) from None
    try:
        store = open_store(spec.store)
        taken = store.build_numbers(spec.version, spec.platform, spec.arch)
    except Exception as error:  # unreadable store: say which and stop before building
        raise _error(f"cannot read the store {spec.store}: {error}") from None
    if args.build in taken:
        raise _error(
            f"build {args.build} of {spec.version}/{spec.platform}/{spec.arch} already exists in the store "
            "(builds are never overwritten; omit --build for the next number)"
        )
    spec = _claim(store, spec, args.build, taken)
    cell = f"{spec.version}/{spec.platform}/{spec.arch}"
    print(f"buildfarm build: {cell} build {spec.build} ({spec.optimization}) with the {runner.name} runner")
    sys.stdout.flush()
    try:
        result = runner.run(spec)
    finally:
        cells = [(spec.version, spec.platform, spec.arch)]
        release_claims(store, cells, execution_id=spec.execution_id, now=datetime.now(UTC))
    if result.ok:
        print(
            f"buildfarm build: {cell} build {spec.build} stored in {spec.store}/{spec.artifact_dir} "
            "(standalone: not published)"
        )
        return 0
    where = f" (full log: {result.log_path})" if result.log_path else ""
    print(
        f"buildfarm build: {cell} build {spec.build} FAILED in phase {result.failed_phase}: "
        f"{result.reason}{where}",
        file=sys.stderr,
    )
    return 1
