"""The farm store used by the `buildfarm run`, installer and uv tests: real builds of 3.13.5
for debian-12 (host runner) and debian-11 (chroot runner), published by `buildfarm run`
into one store that a loopback HTTP server serves, as a CDN would.

The store goes through the steps of the issue one after another (session-scoped, each step
a fixture that depends on the one before): first run, no-op rerun, forced rebuild, a run
killed mid-build and its rerun. Each step keeps what it saw, so a test can look at the
store as it was after its step.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_VERSION = "3.13.5"

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
CELLS = (f"{TEST_VERSION}/debian-11/x86_64", f"{TEST_VERSION}/debian-12/x86_64")


@dataclass
class Step:
    returncode: int
    output: str
    versions: dict

    def build_of(self, cell: str) -> int:
        version, platform, arch = cell.split("/")
        return self.versions["builds"][version][platform][arch]["build"]


class Farm:
    def __init__(self, store: Path, base_url: str, mirror: str, env: dict[str, str]) -> None:
        self.store = store
        self.base_url = base_url
        self.mirror = mirror
        self.env = env
        self.buildfarm = BUILDFARM

    def argv(self, *args: str) -> list[str]:
        return [
            BUILDFARM, "run", "--versions", TEST_VERSION, "--platforms", "debian-12", "debian-11",
            "--store", str(self.store), "--source-mirror", self.mirror, "--optimization", "none", *args,
        ]  # fmt: skip

    def versions(self) -> dict:
        path = self.store / "versions.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def run(self, *args: str) -> Step:
        result = subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=3600, cwd=REPO
        )
        output = result.stdout + result.stderr
        print(output)
        return Step(result.returncode, output, self.versions())

    def run_and_kill(self, *args: str, when: str) -> str:
        """Start a run, and once a line of its output contains `when`, SIGKILL it and every
        process under it (a crash: nothing gets to clean up)."""
        process = subprocess.Popen(
            self.argv(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=REPO, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if when in line:
                break
        else:
            raise AssertionError(f"run ended before {when!r}:\n{''.join(seen)}")
        kill_tree(process.pid)
        process.wait(timeout=60)
        return "".join(seen)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def kill_tree(pid: int) -> None:
    """SIGSTOP the whole tree first (so nobody forks or cleans up), then SIGKILL it."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            os.kill(current, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        tree.append(current)
        todo.extend(_children(current))
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    time.sleep(0.5)


@pytest.fixture(scope="session")
def farm(tmp_path_factory, http_dir_server, source_mirror, fast_build_env) -> Farm:
    if os.geteuid() != 0:
        pytest.skip("the chroot runner needs root")
    store = tmp_path_factory.mktemp("farm-store")
    base_url = http_dir_server(store)
    env = {**os.environ, "BUILDFARM_PUBLIC_BASE_URL": base_url}
    return Farm(store, base_url, source_mirror, env)


@pytest.fixture(scope="session")
def first_run(farm: Farm) -> Step:
    return farm.run()


@pytest.fixture(scope="session")
def second_run(farm: Farm, first_run: Step) -> Step:
    return farm.run()


@pytest.fixture(scope="session")
def forced_run(farm: Farm, second_run: Step) -> Step:
    return farm.run("--force", "--jobs", "2")


@pytest.fixture(scope="session")
def killed_and_rerun(farm: Farm, forced_run: Step) -> tuple[str, Step]:
    """A forced run killed while building its second cell (its first cell is built by then),
    then a plain rerun."""
    seen = farm.run_and_kill("--force", "--jobs", "1", when=f"{CELLS[1]} build 3: building")
    return seen, farm.run()
