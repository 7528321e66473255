"""Benchmark: plan a >=1,500-cell matrix against a directory store and S3 (moto in-process).

  .venv/bin/python benchmarks/plan_matrix.py [--versions 70] [--repeat 3]

Prints, per store: wall time and store calls for the scheduled no-op plan (everything
published) and for a forced plan of the whole matrix, against the targets:
no-op < 1 s and <= 2 store list/read calls per 1,000 cells. Exit status 1 if a no-op target
is missed. S3 calls are counted with botocore's before-call event hook.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from buildfarm.catalog import CatalogArtifact, CatalogCell, merge_cells
from buildfarm.config import FarmConfig
from buildfarm.plan import plan
from buildfarm.releases import iso
from buildfarm.store import LocalStore, S3Store, Store

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOOP_SECONDS = 1.0
NOOP_CALLS_PER_1000 = 2.0
READS = {"GetObject", "HeadObject", "ListObjectsV2", "ListObjects", "read", "head", "list"}


def versions(count: int) -> list[str]:
    found = []
    for minor, last in ((14, 20), (13, 20), (12, 20), (11, 20), (10, 20), (9, 25)):
        found += [f"3.{minor}.{patch}" for patch in range(last, -1, -1)]
    return found[:count]


def seed(store: Store, config: FarmConfig, release_versions: list[str]) -> int:
    sha = "ab" * 32
    store.put_json(
        "releases.json",
        {
            "schema_version": 1,
            "updated": iso(NOW),
            "checked": iso(NOW),
            "source": "benchmark",
            "releases": {
                v: {"version": v, "sha256": sha, "url": f"https://x.invalid/{v}"} for v in release_versions
            },
        },
    )
    cells = {}
    for version in release_versions:
        for platform in config.enabled_platforms:
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
    cells = seed(store, config, versions(args.versions))
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
    for round_ in range(args.forced_repeat):
        counter.clear()
        start = time.perf_counter()
        result = plan({"force": True}, store, config, f"forced-{round_}", NOW)
        forced_times.append(time.perf_counter() - start)
        forced_calls = collections.Counter(counter)
        assert result.counts["planned"] == cells, result.counts

    reads = sum(n for op, n in noop_calls.items() if op in READS)
    per_1000 = reads * 1000 / cells
    noop = statistics.median(noop_times)
    ok = noop < NOOP_SECONDS and per_1000 <= NOOP_CALLS_PER_1000
    print(
        f"\n{name}: {cells} cells "
        f"({args.versions} versions x {len(config.enabled_platforms)} platforms x 2 arches)"
    )
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
        f"  forced : {forced * 1000:8.1f} ms median of {args.forced_repeat} ({cells} claims + items)"
        f"   calls {dict(forced_calls)}"
    )
    print(f"  {'OK' if ok else 'MISSED'}")
    return ok


def counting_local_store(directory: Path) -> tuple[LocalStore, collections.Counter]:
    store = LocalStore(directory)
    return store, store.calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--versions", type=int, default=70, help="release count (x 22 cells each; default 70)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="no-op rounds")
    parser.add_argument("--forced-repeat", type=int, default=1, help="forced rounds")
    args = parser.parse_args()
    config = FarmConfig.defaults(releases_url="http://127.0.0.1:9/never")

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        store, counter = counting_local_store(Path(tmp) / "store")
        ok &= measure(f"directory store {store.location}", store, counter, config, args)

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
        ok &= measure("S3 (moto in-process) s3://bench-bucket/python", store, counter, config, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
