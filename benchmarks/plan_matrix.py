"""Benchmark: the planner on big matrices, and the schedule's convergence (issue 11).

  .venv/bin/python benchmarks/plan_matrix.py [--versions 70] [--repeat 5]
      [--concurrency 20 100 500] [--batch-capacity 20] [--cells-per-series 25] [--skip-convergence]

Prints, against the targets, with the ratio measured/target (<= 1.0 meets it):
- per store (directory, S3 on moto in-process): wall time and store calls of the scheduled
  no-op plan (everything published; target < 1 s and <= 2 list/read calls per 1,000 cells)
  and of a forced plan (claims up to the execution's budget, defers the rest);
- plan() on a 10,000-cell matrix (directory store): the first scheduled run on an empty
  store and the no-op; target < 1 s;
- the convergence simulation (tests/functions/convergence.py: the real Recover, Plan,
  PublishCell and Finalize on a simulated clock, hourly schedule, a stand-in builder taking
  20-40 simulated minutes per cell): for 2,000 cells at each --concurrency, the executions
  needed and the simulated wall time (MaxConcurrency is per execution, so overlapping
  executions run more jobs at once; --batch-capacity repeats a concurrency with Batch running
  at most that many jobs farm-wide);
- on a converged store, the simulated time from a new release appearing on python.org (just
  after a scheduled run refreshed) to its last cell published, at the default concurrency
  and job estimate; target <= 3 h.
Exit status 1 if a target is missed. S3 calls are counted with botocore's before-call hook.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from buildfarm.catalog import CatalogArtifact, CatalogCell, merge_cells
from buildfarm.config import FarmConfig
from buildfarm.plan import plan
from buildfarm.platforms import load_registry
from buildfarm.releases import iso
from buildfarm.store import LocalStore, S3Store, Store

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from functions.convergence import (  # noqa: E402  (the simulator lives with the tests)
    START,
    Scenario,
    release_to_published,
    scratch_directory,
    simulate,
)

NOW = START  # 2026-11-22 10:00 UTC: the policy's live series are 3.11-3.15
NOOP_SECONDS = 1.0
NOOP_CALLS_PER_1000 = 2.0
PLAN_SECONDS = 1.0
RELEASE_HOURS = 3.0
READS = {"GetObject", "HeadObject", "ListObjectsV2", "ListObjects", "read", "head", "list"}
SERIES = Scenario().series  # 3.14-3.11, live on NOW
# 10,000 cells: 100 releases (the most two-digit patch numbers allow) of each of the five
# live series x 10 live platforms x 2 arches.
SERIES_10000 = ("3.15", *SERIES)


def versions(count: int) -> list[str]:
    """`count` releases (rounded up to a multiple of 4) of the live series 3.11-3.14, newest
    first, as the convergence simulation makes them (above the seed catalog's own releases)."""
    return Scenario(releases_per_series=-(-count // len(SERIES))).versions()


def schedule_config(release_versions: list[str], **overrides: object) -> FarmConfig:
    """The default configuration, with every seeded release in the schedule's policy."""
    per_series = collections.Counter(v.rsplit(".", 1)[0] for v in release_versions)
    return FarmConfig.defaults(
        releases_url="http://127.0.0.1:9/never",
        releases_per_series=max(per_series.values(), default=1),
        **overrides,
    )


SHA = "ab" * 32


def seed(store: Store, config: FarmConfig, release_versions: list[str]) -> int:
    """releases.json listing release_versions, and every cell of them published."""
    write_catalog(store, release_versions)
    return publish_all(store, config, release_versions)


def write_catalog(store: Store, release_versions: list[str]) -> None:
    store.put_json(
        "releases.json",
        {
            "schema_version": 1,
            "updated": iso(NOW),
            "checked": iso(NOW),
            "source": "benchmark",
            "releases": {
                v: {"version": v, "sha256": SHA, "url": f"https://x.invalid/{v}"} for v in release_versions
            },
        },
    )


def publish_all(store: Store, config: FarmConfig, release_versions: list[str]) -> int:
    """versions.json with every live cell of release_versions published at build 1."""
    sha = SHA
    cells = {}
    live = load_registry().live_platforms(NOW.date(), among=config.enabled_platforms)
    for version in release_versions:
        for platform in live:
            for arch in config.enabled_arches:
                adir = f"builds/{version}/{platform}/{arch}/1"
                cells[(version, platform, arch)] = CatalogCell(
                    build=1,
                    published=iso(NOW),
                    manifest=f"{adir}/manifest.json",
                    artifacts=[
                        CatalogArtifact(
                            type="tarball", key=f"{adir}/python.tar.gz", sha256=sha, size=30_000_000
                        ),
                        CatalogArtifact(type="deb", key=f"{adir}/python.deb", sha256=sha, size=31_000_000),
                    ],
                )
    document, _ = merge_cells({}, cells, NOW)
    store.put_json("versions.json", document)
    return len(cells)


def measure(name: str, store: Store, counter: collections.Counter, config: FarmConfig, args) -> bool:
    seed(store, config, versions(args.versions))
    noop_times, forced_times = [], []
    noop_calls: collections.Counter = collections.Counter()
    forced_calls: collections.Counter = collections.Counter()
    for round_ in range(args.repeat):
        counter.clear()
        start = time.perf_counter()
        result = plan({}, store, config, f"noop-{round_}", NOW)
        noop_times.append(time.perf_counter() - start)
        noop_calls = collections.Counter(counter)
        assert result.counts["planned"] == 0, result.counts
    cells = result.counts["cells"]
    for round_ in range(args.forced_repeat):
        counter.clear()
        start = time.perf_counter()
        forced_plan = plan({"force": True}, store, config, f"forced-{round_}", NOW)
        forced_times.append(time.perf_counter() - start)
        forced_calls = collections.Counter(counter)
        counts = forced_plan.counts
        assert counts["planned"] == min(cells, config.cells_per_execution), counts

    reads = sum(n for op, n in noop_calls.items() if op in READS)
    per_1000 = reads * 1000 / cells
    noop = statistics.median(noop_times)
    ok = noop < NOOP_SECONDS and per_1000 <= NOOP_CALLS_PER_1000
    print(f"\n{name}: {cells} cells ({len(result.versions)} versions x 10 live platforms x 2 arches)")
    print(
        f"  no-op  : {noop * 1000:8.1f} ms median of {args.repeat}   target < {NOOP_SECONDS * 1000:.0f} ms"
        f"   ratio {noop / NOOP_SECONDS:.3f}"
    )
    print(
        f"           {reads} list/read calls = {per_1000:.2f} per 1,000 cells"
        f"   target <= {NOOP_CALLS_PER_1000}"
        f"   ratio {per_1000 / NOOP_CALLS_PER_1000:.3f}   ({dict(noop_calls)})"
    )
    forced = statistics.median(forced_times)
    print(
        f"  forced : {forced * 1000:8.1f} ms median of {args.forced_repeat}"
        f" ({counts['planned']} claims + items, {counts['deferred']} deferred to later runs)"
        f"   calls {dict(forced_calls)}"
    )
    print(f"  {'OK' if ok else 'MISSED'}")
    return ok


def plan_10000(directory: Path) -> bool:
    """plan() over a 10,000-cell schedule (SERIES_10000), directory store: the first
    run on an empty store (claims its budget, defers the rest), then the no-op."""
    release_versions = Scenario(releases_per_series=100, series=SERIES_10000).versions()
    config = schedule_config(release_versions, store=str(directory))
    store = LocalStore(directory)
    write_catalog(store, release_versions)  # nothing published yet
    start = time.perf_counter()
    first = plan({}, store, config, "first", NOW)
    first_seconds = time.perf_counter() - start
    assert first.counts["cells"] == 10_000, first.counts
    publish_all(store, config, release_versions)  # everything published
    start = time.perf_counter()
    noop = plan({}, store, config, "noop", NOW)
    noop_seconds = time.perf_counter() - start
    assert noop.counts["planned"] == 0, noop.counts
    print("\nplan() on 10,000 cells (directory store)")
    for what, seconds in (
        (
            f"first run ({first.counts['planned']} claimed, {first.counts['deferred']} deferred)",
            first_seconds,
        ),
        ("no-op (all published)", noop_seconds),
    ):
        print(
            f"  {what:45s} {seconds * 1000:8.1f} ms   target < {PLAN_SECONDS * 1000:.0f} ms"
            f"   ratio {seconds / PLAN_SECONDS:.3f}"
        )
    return max(first_seconds, noop_seconds) < PLAN_SECONDS


def convergence(concurrencies: list[int], capped: list[int], per_series: int) -> None:
    """The schedule from an empty store to everything published, at each concurrency: Map
    slots per execution (overlapping executions each have theirs), then with Batch running at
    most that many jobs farm-wide (`capped`)."""
    # A timed-out execution's Recover logs each of its unfinished cells as not published.
    logging.getLogger("buildfarm").setLevel(logging.ERROR)
    scenario = Scenario(releases_per_series=per_series)
    print(
        f"\nconvergence: {len(scenario.versions()) * 20} cells, hourly schedule, timeout"
        f" {scenario.execution_timeout_hours:g} h, jobs {scenario.job_minutes[0]}-{scenario.job_minutes[1]}"
        f" simulated min (estimate {scenario.job_minutes_estimate:g})"
    )
    runs = [(c, None) for c in concurrencies] + [(c, c) for c in capped]
    for concurrency, capacity in runs:
        scenario = Scenario(
            releases_per_series=per_series, max_concurrency=concurrency, batch_capacity=capacity
        )
        started = time.perf_counter()
        with scratch_directory() as directory:
            simulation = simulate(directory, scenario)
        first = simulation.executions[0].started
        wall = (max(simulation.published_at.values()) - first).total_seconds() / 3600
        longest = max(e.duration for e in simulation.executions if e.duration is not None)
        timed_out = sum(1 for e in simulation.executions if e.end == "timed out")
        built_twice = sum(1 for n in simulation.builds.values() if n > 1)
        limit = f"Batch <= {capacity} jobs" if capacity else "per execution"
        print(
            f"  max_concurrency {concurrency:4d} ({limit:16s}): budget"
            f" {simulation.config.cells_per_execution:5d} cells/execution,"
            f" {len(simulation.working()):3d} executions needed ({len(simulation.executions)} started),"
            f" simulated wall time {wall:5.1f} h, longest execution {longest.total_seconds() / 3600:4.1f} h,"
            f" peak {simulation.peak_jobs} jobs, {timed_out} timed out, {built_twice} built twice"
            f"   [{time.perf_counter() - started:.0f} s real]"
        )


def release_latency() -> bool:
    """Converged store (default policy and configuration), then a new release."""
    with scratch_directory() as directory:
        latency = release_to_published(directory, Scenario(releases_per_series=2), "3.14.25")
    print(
        f"\nnew release -> last cell published (converged store, hourly schedule, default concurrency"
        f" {Scenario().max_concurrency} and job estimate {Scenario().job_minutes_estimate:g} min;"
        f" appears 1 min after a scheduled run):"
    )
    print(
        f"  {latency.cells} cells in {latency.executions} execution(s): {latency.hours:.2f} h simulated"
        f"   target <= {RELEASE_HOURS:g} h   ratio {latency.hours / RELEASE_HOURS:.3f}"
    )
    return latency.hours <= RELEASE_HOURS


def counting_local_store(directory: Path) -> tuple[LocalStore, collections.Counter]:
    store = LocalStore(directory)
    return store, store.calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--versions", type=int, default=70, help="release count (x 20 cells each; default 70)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="no-op rounds")
    parser.add_argument("--forced-repeat", type=int, default=1, help="forced rounds")
    parser.add_argument(
        "--concurrency", type=int, nargs="*", default=[20, 100, 500], help="convergence: Map slots"
    )
    parser.add_argument(
        "--batch-capacity",
        type=int,
        nargs="*",
        default=[20],
        help="convergence: also at these concurrencies with Batch running at most as many jobs farm-wide",
    )
    parser.add_argument(
        "--cells-per-series",
        type=int,
        default=25,
        help="convergence: releases of each of 4 series (x 20 cells; default 25: 2,000 cells)",
    )
    parser.add_argument("--skip-convergence", action="store_true", help="only the planner measurements")
    args = parser.parse_args()
    config = schedule_config(versions(args.versions))

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        store, counter = counting_local_store(Path(tmp) / "store")
        ok &= measure(f"directory store {store.location}", store, counter, config, args)

    ok &= measure_s3(config, args)
    with tempfile.TemporaryDirectory() as tmp:
        ok &= plan_10000(Path(tmp) / "store")
    if not args.skip_convergence:
        convergence(args.concurrency, args.batch_capacity, args.cells_per_series)
        ok &= release_latency()
    print(f"\n{'all targets met' if ok else 'a target was MISSED'}")
    return 0 if ok else 1


def measure_s3(config: FarmConfig, args: argparse.Namespace) -> bool:
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bench-bucket")
        counter = collections.Counter()

        def hook(model, **kwargs) -> None:
            counter[model.name] += 1

        client.meta.events.register("before-call.s3", hook)
        store = S3Store("bench-bucket", "python", client=client)
        return measure("S3 (moto in-process) s3://bench-bucket/python", store, counter, config, args)


if __name__ == "__main__":
    sys.exit(main())
