"""pyperformance's own benchmark scripts, for benchmarks/interpreter_speed.py --suite pyperformance.

The subset is chosen by a rule, not by results: every benchmark of pyperformance PYPERFORMANCE
that needs no package beyond the standard library (no requirements.txt), run with its own
default options (its pyproject.toml's extra_opts), except the few in EXCLUDED, which measure
something other than the interpreter. Each script is a pyperf script; with the thread timer,
THREAD_TIMER_SITECUSTOMIZE makes pyperf (and the scripts that time themselves) read the
thread's CPU time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PYPERFORMANCE = "1.14.0"
EXCLUDED = {
    "2to3": "installs its vendored lib2to3 into the interpreter with pip first",
    "asyncio_tcp": "loopback sockets: the kernel's network stack",
    "concurrent_imap": "a thread pool: the OS scheduler on a 2-core machine",
    "pathlib": "the file system",
    "python_startup": "process start-up: the dynamic loader and each site-packages' contents",
    "sqlite_synth": "the system's SQLite library, the same one for both",
}
# Installed with the scripts as sitecustomize.py (on PYTHONPATH, so pyperf's workers import it
# too): pyperf's bench_func and the scripts read time.perf_counter when they run.
THREAD_TIMER_SITECUSTOMIZE = """\
import time
time.perf_counter = time.thread_time
"""
_EXTRA_OPTS = re.compile(r"^extra_opts\s*=\s*\[(.*)\]\s*$", re.M)


def downloaded_wheel(dest: Path, requirement: str, pattern: str, *pip_options: str) -> Path:
    """The newest wheel in dest whose name matches pattern, fetched with pip (no dependencies)
    the first time."""
    if not any(dest.glob(pattern)):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             *pip_options, "--dest", str(dest), requirement],
            check=True,
        )  # fmt: skip
    return max(dest.glob(pattern))


def suite_benchmarks(wheels: Path) -> Path:
    """pyperformance's data-files/benchmarks, from its wheel (fetched once with pip into wheels)."""
    directory = wheels / f"pyperformance-{PYPERFORMANCE}"
    benchmarks = directory / "pyperformance" / "data-files" / "benchmarks"
    if benchmarks.is_dir():
        return benchmarks
    download = wheels / "download"
    pattern = f"pyperformance-{PYPERFORMANCE}-*.whl"
    with zipfile.ZipFile(downloaded_wheel(download, f"pyperformance=={PYPERFORMANCE}", pattern)) as wheel:
        members = [name for name in wheel.namelist() if name.startswith("pyperformance/data-files/")]
        wheel.extractall(directory, members)
    return benchmarks


def selected(benchmarks: Path) -> dict[str, list[str]]:
    """{benchmark directory name: its default extra options} of the subset (the module docstring)."""
    chosen = {}
    for directory in sorted(benchmarks.glob("bm_*")):
        name = directory.name.removeprefix("bm_")
        if name in EXCLUDED or (directory / "requirements.txt").exists():
            continue
        match = _EXTRA_OPTS.search((directory / "pyproject.toml").read_text())
        options = re.findall(r'"([^"]*)"', match[1]) if match else []
        chosen[directory.name] = options
    return chosen


def install(bench_dir: Path, benchmarks: Path, thread_timer: bool) -> dict[str, list[str]]:
    """The subset's scripts under bench_dir/pyperformance (the timer's sitecustomize in
    bench_dir/lib); returns {directory name: the script's path and options in the root}."""
    commands = {}
    for name, options in selected(benchmarks).items():
        shutil.copytree(benchmarks / name, bench_dir / "pyperformance" / name)
        commands[name] = [f"/opt/bench/pyperformance/{name}/run_benchmark.py", *options]
    if thread_timer:
        (bench_dir / "lib" / "sitecustomize.py").write_text(THREAD_TIMER_SITECUSTOMIZE)
    return commands
