"""Build time per phase (optimization none and pgo+lto) and tarball size, against the targets.

    .venv/bin/python benchmarks/build_phases.py [--series 3.9|3.11|3.13 | --version X.Y.Z]
        [--runner auto|host|chroot|docker] [--platform P] [--optimization none pgo+lto] [--ccache [DIR]]
        [--profile-task '-m test --pgo ...']

Builds the newest release of the series in ../shared/cpython-src (3.13: 3.13.15), or --version's.
Targets on 2 cores: none <= 2 min, pgo+lto <= 8 min, tarball <= 35 MB. Prints each phase's
seconds, the build's (their sum: what a Batch job runs), the local runner's own (the rest of
the wall time: e.g. a chroot root made the first time), and the ratios
measured/target (<= 1.0 meets the target). By default the builds are cold (no
ccache) with CPython's own PGO task and the production self-test, as in production.
Each build's make steps are timed too (PGO's stages, BOLT). With --ccache (cache directory
DIR, default .cache/ccache) it also prints ccache's hits and misses for each build: run it
twice to see what a warm cache gives (the driver builds a cell in the same directory each
time then, so even PGO's instrumented build, whose objects embed their build directory, hits
the cache the second time).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, reference_seconds
from shared_sources import SOURCES, local_mirror, newest_source

from buildfarm.farm import terminate_on_signals
from buildfarm.models import BuildSpec, artifact_dir
from buildfarm.platforms import load_registry
from buildfarm.runners import host_platform_id, select_runner

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = {"none": 120.0, "pgo+lto": 480.0}
TARGET_TARBALL_MB = 35.0
_MAKE_STEP = re.compile(r"buildfarm: make: (.+) done in ([0-9]{1,9}\.[0-9]) s")
_MAKE_STEP_CCACHE = re.compile(r"buildfarm: make: (.+): ccache ([0-9a-z ,]+)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", default="3.13", help="3.9, 3.11 or 3.13 (default 3.13)")
    parser.add_argument("--version", help="a release in ../shared/cpython-src (default: the series' newest)")
    parser.add_argument("--platform", default=host_platform_id(load_registry()) or "debian-12")
    parser.add_argument("--runner", default="auto")
    parser.add_argument("--optimization", nargs="+", default=["none", "pgo+lto"])
    parser.add_argument(
        "--ccache",
        nargs="?",
        const=str(REPO / ".cache" / "ccache"),
        metavar="DIR",
        help="use ccache with this cache directory (default .cache/ccache; warm caches are not the target)",
    )
    parser.add_argument("--profile-task", help="override PGO's PROFILE_TASK (default: CPython's)")
    parser.add_argument("--keep", type=Path, help="keep the stores (with the artifacts) under this directory")
    return parser.parse_args()


def set_driver_environment(args: argparse.Namespace) -> None:
    """ccache and the PGO task as asked; the production self-test."""
    if args.ccache:
        os.environ["BUILDFARM_CCACHE"] = "1"
        os.environ["CCACHE_DIR"] = str(Path(args.ccache).resolve())
    else:
        os.environ.pop("BUILDFARM_CCACHE", None)
    if args.profile_task:
        os.environ["BUILDFARM_PROFILE_TASK"] = args.profile_task
    else:
        os.environ.pop("BUILDFARM_PROFILE_TASK", None)
    os.environ.pop("BUILDFARM_SELFTEST_TESTS", None)


def print_report(args: argparse.Namespace, version: str, rows: list[tuple], reference: float) -> None:
    """Per-phase times of each optimization, then build time and tarball size against the targets."""
    print()
    ccache = "on" if args.ccache else "off"
    print(f"CPython {version} on {args.platform}, ccache={ccache}, "
          f"PROFILE_TASK={args.profile_task or 'CPython default'}")  # fmt: skip
    print(describe(reference))
    phases = list(rows[0][1])
    print(f"{'phase':<12}" + "".join(f"{opt:>12}" for opt, *_ in rows))
    for phase in phases:
        print(f"{phase:<12}" + "".join(f"{timings.get(phase, 0):>11.1f}s" for _, timings, *_ in rows))
    builds = [sum(timings.values()) for _, timings, *_ in rows]
    runners = [total - build for (_, _, total, _), build in zip(rows, builds, strict=True)]
    print(f"{'build':<12}" + "".join(f"{build:>11.1f}s" for build in builds))
    print(f"{'runner':<12}" + "".join(f"{runner:>11.1f}s" for runner in runners))
    print()
    # The target is the build's: its phases, what a Batch job runs in its ready image. The
    # local runner's own time (a chroot root made the first time) is shown above.
    for (optimization, *_), build in zip(rows, builds, strict=True):
        target = TARGET_SECONDS[optimization]
        print(f"build time {optimization:<8} {build / 60:6.1f} min  target {target / 60:4.0f} min  "
              f"ratio {build / target:.2f}")  # fmt: skip
    for optimization, _, _, size_mb in rows:
        print(f"tarball    {optimization:<8} {size_mb:6.1f} MB   target {TARGET_TARBALL_MB:4.0f} MB   "
              f"ratio {size_mb / TARGET_TARBALL_MB:.2f}")  # fmt: skip


def ccache_stats(*argv: str) -> str:
    """ccache's output for argv (its CCACHE_DIR is the driver's), or "" when it has none."""
    ccache = shutil.which("ccache")
    if not ccache:
        return ""
    done = subprocess.run([ccache, *argv], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def print_make_steps(log: str, total: float) -> None:
    """The make steps' times from the build's log (each PGO stage, BOLT, install's make)."""
    for step, seconds in _MAKE_STEP.findall(log):
        print(f"  make: {step}: {float(seconds):.1f} s")
    print(f"  total {total:.1f} s")


def print_cache_use(log: str) -> None:
    """ccache's hits and misses per make step (from the build's log) and since zeroed."""
    for step, counts in _MAKE_STEP_CCACHE.findall(log):
        print(f"  make: {step}: ccache {counts}")
    stats = dict(line.split("\t", 1) for line in ccache_stats("--print-stats").splitlines() if "\t" in line)
    hits = int(stats.get("direct_cache_hit", 0)) + int(stats.get("preprocessed_cache_hit", 0))
    print(f"  ccache: {hits} hits, {stats.get('cache_miss', '?')} misses")


def chosen_source(args: argparse.Namespace) -> tuple[str, Path]:
    """(version, tarball): --version's from the shared sources, else the series' newest."""
    if not args.version:
        return newest_source(args.series)
    if not re.fullmatch(r"3\.[0-9]{1,2}\.[0-9]{1,2}", args.version):
        raise SystemExit(f"--version {args.version!r} is not a release X.Y.Z")
    for name in (f"Python-{args.version}.tar.xz", f"Python-{args.version}.tgz"):
        if (SOURCES / name).is_file():
            return args.version, SOURCES / name
    raise SystemExit(f"--version {args.version}: no Python-{args.version}.tar.xz or .tgz in {SOURCES}")


def main() -> int:
    args = parse_args()
    set_driver_environment(args)
    runner = select_runner(args.platform, args.runner)
    version, source = chosen_source(args)
    reference = reference_seconds()
    rows = []
    # SIGTERM/SIGHUP stop it as Ctrl-C does: the runner stops its build and undoes its mounts.
    with terminate_on_signals(), tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        workdir = Path(tmp)
        url, sha256 = local_mirror(workdir, version, source)
        for optimization in args.optimization:
            store = (args.keep or workdir) / f"store-{optimization.replace('+', '-')}"
            spec = BuildSpec(
                version=version,
                platform=args.platform,
                arch="x86_64",
                build=1,
                source={"url": url, "sha256": sha256},
                prefix=f"/opt/python/{version}",
                optimization=optimization,
                store=str(store),
                artifact_dir=artifact_dir(version, args.platform, "x86_64", 1),
                execution_id="benchmark",
            )
            what = f"{version} {args.platform} {optimization}"
            print(f"building {what} with the {runner.name} runner ...", flush=True)
            if args.ccache:
                ccache_stats("--zero-stats")
            started = time.monotonic()
            result = runner.run(spec, output=io.StringIO())
            total = time.monotonic() - started
            if not result.ok:
                print(f"  FAILED in {result.failed_phase}: {result.reason} (log: {result.log_path})")
                return 1
            log = result.log_path.read_text(errors="replace") if result.log_path else ""
            print_make_steps(log, total)
            if args.ccache:
                print_cache_use(log)
            tarball = store / spec.artifact_dir / f"python-{version}-{args.platform}-x86_64.tar.gz"
            rows.append((optimization, result.timings, total, tarball.stat().st_size / 1e6))
    print_report(args, version, rows, reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
