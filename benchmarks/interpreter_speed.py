"""Interpreter speed: our pgo+lto CPython against the distribution's interpreter of the same
series, on a pyperformance subset run with pyperf, both in the same Debian root.

    .venv/bin/python benchmarks/interpreter_speed.py [--series 3.9|3.11|3.13] [--tarball PATH]
        [--suite pyperformance|builtin] [--profile-task TASK] [--rigorous] [--rounds N]
        [--against PATH] [--timer thread|wall] [--statistic mean|min]

--suite pyperformance (the default) runs pyperformance's own scripts: every benchmark of it that
needs nothing beyond the standard library, less six that measure something else (the rule and
the list: benchmarks/pyperformance_suite.py): 44 scripts, 65-66 benchmarks, about 22 minutes a
round for two interpreters here. --suite builtin runs the eight short pyperformance-style
scripts below (what the measurements before 2026-12-04 used), a round in about 2 minutes.

Series and reference: 3.9 against bullseye's python3.9 (debian-11 root), 3.11 against
bookworm's python3.11 (debian-12), 3.13 against trixie's python3.13 (debian-13). Without
--tarball it first builds the newest release of the series in ../shared/cpython-src, pgo+lto,
for that platform with the chroot runner (CPython's own PGO task unless --profile-task).
Prints per-benchmark times and the geometric mean of reference/ours; the target is >= 1.05.
--against adds another pgo+lto tarball of the series (e.g. a build before a change) to the same
rounds, with its own ratio, to tell what the change did per benchmark.
--timer thread (the default) times each benchmark by its thread's CPU time, not the wall
clock: on a shared 2-core machine the wall clock counts the time a process waits for a core,
which moved single benchmarks by up to 2x between runs; wall is pyperf's own clock.
--statistic min takes each run's fastest value instead of its mean: CPU time still varies
with what shares the core, and the fastest value varied least here.
After the headline (the medians over the rounds) it prints each round's own speed-up and the
one from each interpreter's fastest time over all rounds: how much of a result is the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pyperf
import pyperformance_suite
from machine import cpu_model, describe, reference_seconds
from shared_sources import REFERENCE, local_mirror, newest_source

from buildfarm import roots
from buildfarm.farm import terminate_on_signals
from buildfarm.models import BuildSpec, artifact_dir
from buildfarm.runners import select_runner

TARGET = 1.05
REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".cache" / "wheels"

# Self-contained pyperformance-style benchmarks (no third-party packages), each a pyperf script.
BENCHMARKS = {
    "nbody": """
PI = 3.14159265358979323; SOLAR_MASS = 4 * PI * PI; DAYS_PER_YEAR = 365.24
BODIES = {
    "sun": ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], SOLAR_MASS),
    "jupiter": ([4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01],
                [1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
                 -6.90460016972063023e-05 * DAYS_PER_YEAR], 9.54791938424326609e-04 * SOLAR_MASS),
    "saturn": ([8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01],
               [-2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
                2.30417297573763929e-05 * DAYS_PER_YEAR], 2.85885980666130812e-04 * SOLAR_MASS)}
def combinations(l):
    return [(x, y) for i, x in enumerate(l) for y in l[i + 1:]]
SYSTEM = list(BODIES.values()); PAIRS = combinations(SYSTEM)
def advance(dt, n):
    for _ in range(n):
        for ([x1, y1, z1], v1, m1), ([x2, y2, z2], v2, m2) in PAIRS:
            dx = x1 - x2; dy = y1 - y2; dz = z1 - z2
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** (-1.5))
            b1m = m1 * mag; b2m = m2 * mag
            v1[0] -= dx * b2m; v1[1] -= dy * b2m; v1[2] -= dz * b2m
            v2[0] += dx * b1m; v2[1] += dy * b1m; v2[2] += dz * b1m
        for (r, [vx, vy, vz], m) in SYSTEM:
            r[0] += dt * vx; r[1] += dt * vy; r[2] += dt * vz
def bench():
    advance(0.01, 20000)
""",
    "spectral_norm": """
def eval_A(i, j):
    return 1.0 / ((i + j) * (i + j + 1) // 2 + i + 1)
def part_A_times_u(i_u):
    i, u = i_u
    return sum(eval_A(i, j) * u_j for j, u_j in enumerate(u))
def part_At_times_u(i_u):
    i, u = i_u
    return sum(eval_A(j, i) * u_j for j, u_j in enumerate(u))
def times_AtA(u):
    n = range(len(u))
    v = [part_A_times_u((i, u)) for i in n]
    return [part_At_times_u((i, v)) for i in n]
def bench():
    u = [1] * 100
    for _ in range(3):
        v = times_AtA(u)
        u = times_AtA(v)
""",
    "fannkuch": """
def fannkuch(n):
    count = list(range(1, n + 1)); max_flips = 0; m = n - 1; r = n; perm1 = list(range(n))
    perm = list(range(n)); perm1_ins = perm1.insert; perm1_pop = perm1.pop
    while 1:
        while r != 1:
            count[r - 1] = r; r -= 1
        if perm1[0] != 0 and perm1[m] != m:
            perm = perm1[:]; flips_count = 0; k = perm[0]
            while k:
                perm[:k + 1] = perm[k::-1]; flips_count += 1; k = perm[0]
            if flips_count > max_flips:
                max_flips = flips_count
        while r != n:
            perm1_ins(r, perm1_pop(0)); count[r] -= 1
            if count[r] > 0:
                break
            r += 1
        else:
            return max_flips
def bench():
    fannkuch(8)
""",
    "float": """
from math import sin, cos, sqrt
class Point:
    __slots__ = ("x", "y", "z")
    def __init__(self, i):
        self.x = x = sin(i); self.y = cos(i) * 3; self.z = (x * x) / 2
    def normalize(self):
        norm = sqrt(self.x * self.x + self.y * self.y + self.z * self.z)
        self.x /= norm; self.y /= norm; self.z /= norm
    def maximize(self, other):
        self.x = self.x if self.x > other.x else other.x
        self.y = self.y if self.y > other.y else other.y
        self.z = self.z if self.z > other.z else other.z
        return self
def bench():
    points = [Point(i) for i in range(50000)]
    for p in points:
        p.normalize()
    nxt = points[0]
    for p in points[1:]:
        nxt = nxt.maximize(p)
""",
    "json_roundtrip": """
import json
DATA = {"key": [{"id": i, "name": "item %d" % i, "tags": ["a", "b", "c"], "price": i * 1.5,
                 "nested": {"ok": True, "none": None}} for i in range(300)]}
TEXT = json.dumps(DATA)
def bench():
    for _ in range(20):
        json.loads(json.dumps(DATA)); json.loads(TEXT)
""",
    "regex": """
import re
TEXT = ("The quick brown fox jumps over the lazy dog 12345 times; email me at fox@example.org "
        "or visit https://example.org/path?q=1. ") * 200
PATTERNS = [re.compile(p) for p in (r"\\b\\w+@\\w+\\.\\w+\\b", r"https?://[^\\s]+", r"\\d+", r"\\b[A-Z]\\w*",
                                   r"(\\w+)\\s+over\\s+(\\w+)")]
def bench():
    for _ in range(10):
        for pattern in PATTERNS:
            pattern.findall(TEXT)
""",
    "generators_and_closures": """
def gen(n):
    for i in range(n):
        yield i * 2
def make_adder(k):
    return lambda x: x + k
def bench():
    add = make_adder(3)
    total = 0
    for value in gen(200000):
        total = add(total) ^ value
    return total
""",
    "dict_and_str": """
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu " * 50).split()
def bench():
    counts = {}
    for _ in range(200):
        for word in WORDS:
            key = word.upper() + "-" + str(len(word))
            counts[key] = counts.get(key, 0) + 1
        "-".join(sorted(counts)).lower().split("-")
        f"{len(counts)}:{sum(counts.values())}".encode()
""",
}

# How each benchmark script times bench(): pyperf's wall clock, or the thread's CPU time
# (--timer), which leaves out the time the process waits for a core on a shared machine.
SCRIPT_FOOTER = {
    "wall": """
import pyperf
runner = pyperf.Runner()
runner.bench_func(NAME, bench)
""",
    "thread": """
import time
import pyperf
def timed(loops):
    started = time.thread_time()
    for _ in range(loops):
        bench()
    return time.thread_time() - started
runner = pyperf.Runner()
runner.bench_time_func(NAME, timed)
""",
}

# What one pyperf run contributes to a benchmark's rounds (--statistic).
STATISTIC = {"mean": lambda bench: bench.mean(), "min": lambda bench: min(bench.get_values())}


def build_ours(series: str, profile_task: str | None, workdir: Path) -> Path:
    """Our pgo+lto build of the series' newest shared source, for its reference platform."""
    version, source = newest_source(series)
    platform = REFERENCE[series][0]
    url, sha256 = local_mirror(workdir, version, source)
    if profile_task:
        os.environ["BUILDFARM_PROFILE_TASK"] = profile_task
    else:
        os.environ.pop("BUILDFARM_PROFILE_TASK", None)
    runner = select_runner(platform, "chroot")
    spec = BuildSpec(
        version=version,
        platform=platform,
        arch="x86_64",
        build=1,
        source={"url": url, "sha256": sha256},
        prefix=f"/opt/python/{version}",
        optimization="pgo+lto",
        store=str(workdir / "store"),
        artifact_dir=artifact_dir(version, platform, "x86_64", 1),
        execution_id="benchmark",
    )
    print(f"building {version} {platform} pgo+lto with the chroot runner (takes a while) ...", flush=True)
    result = runner.run(spec, output=io.StringIO())
    if not result.ok:
        raise SystemExit(f"build failed in {result.failed_phase}: {result.reason} (log: {result.log_path})")
    return workdir / "store" / spec.artifact_dir / f"python-{version}-{platform}-x86_64.tar.gz"


def install_pyperf(series: str, lib: Path) -> None:
    """pyperf for the interpreters of the series, into lib: this venv's own where its
    Python requirement admits the series, else the newest pyperf wheel that does (pyperf
    2.11 needs 3.11; 3.9 gets 2.10, fetched once with pip into .cache/wheels). The wheel's
    dist-info goes along: on 3.9 pyperf looks its hooks up by entry point group."""
    if int(series.split(".")[1]) >= 11:
        shutil.copytree(Path(pyperf.__file__).parent, lib / "pyperf")
        return
    wheels = WHEELS / f"pyperf-py{series}"
    wheel_path = pyperformance_suite.downloaded_wheel(
        wheels, "pyperf", "pyperf-*.whl", "--python-version", series
    )
    with zipfile.ZipFile(wheel_path) as wheel:
        wheel.extractall(lib)


def prepare_bench_dir(
    bench_dir: Path,
    series: str,
    tarball: Path,
    against: Path | None,
    timer: str = "wall",
    suite: str = "pyperformance",
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """pyperf, the suite's scripts and our tarball (and --against's) under the root's
    /opt/bench; returns ({label: interpreter path in the root}, {script: its command line
    after the interpreter})."""
    if bench_dir.exists():
        shutil.rmtree(bench_dir)
    (bench_dir / "lib").mkdir(parents=True)
    (bench_dir / "out").mkdir()
    install_pyperf(series, bench_dir / "lib")
    interpreters = {}
    for label, path, target in (("ours", tarball, bench_dir), ("against", against, bench_dir / "against")):
        if path:
            with tarfile.open(path) as archive:
                archive.extractall(target, filter="tar")
            interpreters[label] = "/" + str(
                (target / "python" / "bin" / "python3").relative_to(bench_dir.parents[1])
            )
    if suite == "pyperformance":
        benchmarks = pyperformance_suite.suite_benchmarks(WHEELS)
        return interpreters, pyperformance_suite.install(bench_dir, benchmarks, timer == "thread")
    for name, body in BENCHMARKS.items():
        (bench_dir / f"bm_{name}.py").write_text(body + f"\nNAME = {name!r}\n" + SCRIPT_FOOTER[timer])
    return interpreters, {name: [f"/opt/bench/bm_{name}.py"] for name in BENCHMARKS}


def report(
    means: dict[str, dict[str, list[float]]],
    series: str,
    codename: str,
    reference_python: str,
    against: Path | None,
    timer: str = "wall",
    reference_loop: float | None = None,
) -> None:
    """Per-benchmark medians and speed-ups, their geometric mean against the target, and with
    --against the other build's."""
    print()
    columns = f"{'against (ms)':>14}{'speed-up':>10}" if against else ""
    print(f"{'benchmark':<26}{codename + ' (ms)':>14}{'ours (ms)':>12}{'speed-up':>10}{columns}")
    ratios, against_ratios = [], []
    for name, runs in means.items():
        reference, ours = statistics.median(runs[codename]), statistics.median(runs["ours"])
        ratio = reference / ours
        ratios.append(ratio)
        line = f"{name:<26}{reference * 1e3:>14.2f}{ours * 1e3:>12.2f}{ratio:>9.3f}x"
        if against:
            other = statistics.median(runs["against"])
            against_ratios.append(reference / other)
            line += f"{other * 1e3:>14.2f}{reference / other:>9.3f}x"
        print(line)
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    if against_ratios:
        other_mean = math.exp(sum(math.log(r) for r in against_ratios) / len(against_ratios))
        print(f"\n--against {against}: {other_mean:.3f}x; ours / against {geomean / other_mean:.3f}")
    print(f"\ngeometric mean speed-up vs {codename}'s {reference_python}: {geomean:.3f}x "
          f"(target >= {TARGET}); ratio to target {geomean / TARGET:.3f}")  # fmt: skip
    spread = spread_over_rounds(means, codename)
    print(f"each round alone: {' '.join(f'{r:.3f}x' for r in spread['rounds'])}; "
          f"fastest of all rounds: {spread['fastest']:.3f}x")  # fmt: skip
    rounds = [round(r, 4) for r in spread["rounds"]]
    print(
        json.dumps(
            {
                "series": series,
                "geomean": round(geomean, 4),
                "target": TARGET,
                "timer": timer,
                "rounds": rounds,
                "fastest": round(spread["fastest"], 4),
                "cpu": cpu_model(),
                "reference_loop_s": None if reference_loop is None else round(reference_loop, 2),
            }
        )
    )


def spread_over_rounds(means: dict[str, dict[str, list[float]]], codename: str) -> dict:
    """How far the rounds agree: each round's own geometric mean speed-up, and the one from
    each interpreter's fastest time over all rounds. On a shared VM a slow spell can hit one
    interpreter's runs of a round and not the other's; the headline (medians) and these
    together show how much of a result is the machine."""

    def geomean(ratios: list[float]) -> float:
        return math.exp(sum(math.log(r) for r in ratios) / len(ratios))

    count = len(next(iter(means.values()))["ours"])
    per_round = [geomean([run[codename][i] / run["ours"][i] for run in means.values()]) for i in range(count)]
    fastest = geomean([min(runs[codename]) / min(runs["ours"]) for runs in means.values()])
    return {"rounds": per_round, "fastest": fastest}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", choices=sorted(REFERENCE), default="3.13", help="default 3.13")
    parser.add_argument("--tarball", type=Path, help="an existing pgo+lto tarball of the series")
    parser.add_argument("--profile-task", help="PGO task for the build (default: CPython's)")
    parser.add_argument("--rigorous", action="store_true", help="pyperf --rigorous instead of --fast")
    parser.add_argument(
        "--statistic",
        choices=sorted(STATISTIC),
        default="mean",
        help="each run's mean (default, pyperf's) or its fastest value (steadier on a loaded machine)",
    )
    parser.add_argument(
        "--timer",
        choices=sorted(SCRIPT_FOOTER),
        default="thread",
        help="thread: each benchmark's CPU time (default; steady on a loaded machine); wall: pyperf's clock",
    )
    parser.add_argument(
        "--suite",
        choices=("pyperformance", "builtin"),
        default="pyperformance",
        help=f"pyperformance {pyperformance_suite.PYPERFORMANCE}'s own scripts (default; the subset is "
        "in benchmarks/pyperformance_suite.py) or this file's eight short ones (quicker)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median; default 3)")
    parser.add_argument("--against", type=Path, help="another tarball of the series, measured alongside")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    return args


def main() -> int:
    args = parse_args()
    reference_loop = reference_seconds()
    print(describe(reference_loop), flush=True)

    # SIGTERM/SIGHUP stop it as Ctrl-C does, through the finally blocks: the root's /proc, /sys
    # and /dev are unmounted (a killed run left them mounted in the cached root).
    with terminate_on_signals(), tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        workdir = Path(tmp)
        platform, reference_python, codename = REFERENCE[args.series]
        tarball = args.tarball or build_ours(args.series, args.profile_task, workdir)
        runner = select_runner(platform, "chroot")
        # The root's build dependencies include python3: the distribution's interpreter.
        root = runner.ensure_root(runner.packages(str(workdir)), io.StringIO())
        bench_dir = root / "opt" / "bench"
        interpreters, commands = prepare_bench_dir(
            bench_dir, args.series, tarball, args.against, args.timer, args.suite
        )
        interpreters[codename] = reference_python
        mode = "--rigorous" if args.rigorous else "--fast"
        env = {"PYTHONPATH": "/opt/bench/lib"}
        means: dict[str, dict[str, list[float]]] = {}
        with roots.mounted(root):
            for label, python in interpreters.items():
                version = roots.run_in_root(
                    root, [python, "-c", "import sys; print(sys.version)"]
                ).stdout.strip()
                print(f"{label:>7}: {python}  {version.strip().splitlines()[0]}", flush=True)
            # The reference's package version: Debian's security updates rebuild it.
            package = roots.run_in_root(
                root, ["dpkg-query", "-W", "-f=${Package} ${Version}", f"python{args.series}"]
            ).stdout.strip()
            print(f"{codename:>7}: Debian package {package}", flush=True)
            # Rounds alternate which interpreter goes first, so drift on a shared machine
            # hits both; each benchmark's time is the median over the rounds.
            for round_number in range(args.rounds):
                order = list(interpreters.items())
                if round_number % 2:
                    order.reverse()
                for script, command in commands.items():
                    for label, python in order:
                        out = f"/opt/bench/out/{label}-{script}-{round_number}.json"
                        roots.run_in_root(root, [python, *command, mode, "--quiet", "-o", out], env)
                        # A script may run several benchmarks (pyperformance's scimark, logging, ...).
                        for bench in pyperf.BenchmarkSuite.load(str(root / out.lstrip("/"))).get_benchmarks():
                            means.setdefault(bench.get_name(), {}).setdefault(label, []).append(
                                STATISTIC[args.statistic](bench)
                            )
                print(f"round {round_number + 1}/{args.rounds} done", flush=True)
        shutil.rmtree(bench_dir, ignore_errors=True)

    report(means, args.series, codename, reference_python, args.against, args.timer, reference_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
