"""The suite's real CPython builds: the farm store's runs, and a session cache of builds keyed
by spec (tests/conftest.py has the fixtures; this module the machinery, imported by name as
`from real_builds import ...`: pytest puts tests/ on sys.path for its conftest).

A test that inspects a build asks for its spec (`real_builds.get(HOST_NONE)`). The build is
made once per session: by the farm store's step that makes that spec anyway, when the session
runs that step (the farm tests), else alone, as `buildfarm run` of that one cell into a store
of its own. Either way it is the same command and environment, so a build test runs alone
(`pytest tests/builder/test_pgo_build.py`) and builds only what it needs, and the full suite
builds nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEST_VERSION = "3.13.5"
BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
# Cells of the farm store, in build order (request order).
FARM_CELLS = (f"{TEST_VERSION}/debian-12/x86_64", f"{TEST_VERSION}/debian-11/x86_64")
# The root of the farm store's fixture chain (first_run ... killed_and_rerun all need it), and
# the build cache, which may take its builds from that chain: a test reaches the farm's runs
# exactly when one of these is in its fixture closure.
FARM_FIXTURES = ("farm_store", "real_builds")


@dataclass(frozen=True)
class BuildSpec:
    """What a real build is keyed by. `runner` is the one `buildfarm run` picks for the
    platform on a debian-12 machine; the build's output is checked to name it."""

    version: str
    platform: str
    arch: str
    optimization: str
    runner: str

    @property
    def cell(self) -> str:
        return f"{self.version}/{self.platform}/{self.arch}"


HOST_NONE = BuildSpec(TEST_VERSION, "debian-12", "x86_64", "none", "host")
CHROOT_NONE = BuildSpec(TEST_VERSION, "debian-11", "x86_64", "none", "chroot")
HOST_PGO_LTO = BuildSpec(TEST_VERSION, "debian-12", "x86_64", "pgo+lto", "host")

# The builds the farm store's steps make anyway: spec -> (the step's fixture, the build number
# there, the fixtures whose presence in a session means the step runs). The farm store's first
# run also counts as run whenever a test reads the farm store: such tests expect its builds in it.
FARM_MADE: dict[BuildSpec, tuple[str, int, tuple[str, ...]]] = {
    HOST_NONE: ("first_run", 1, ("first_run", "farm_store")),
    CHROOT_NONE: ("first_run", 1, ("first_run", "farm_store")),
    # The killed run's finished cell (a forced pgo+lto run; see tests/conftest.py).
    HOST_PGO_LTO: ("killed_and_rerun", 2, ("killed_and_rerun",)),
}


@dataclass
class BuiltCell:
    """One finished build in a store; `output` is the driver's full log."""

    store: Path
    version: str
    platform: str
    arch: str
    build: int

    @property
    def dir(self) -> Path:
        return self.store / "builds" / self.version / self.platform / self.arch / str(self.build)

    @property
    def output(self) -> str:
        return (self.dir / "build.log").read_text(errors="replace")

    def check(self, spec: BuildSpec) -> BuiltCell:
        """Fail unless this is a build of `spec` (its manifest says so)."""
        made = json.loads((self.dir / "manifest.json").read_text())["spec"]
        wanted = {"version": spec.version, "platform": spec.platform, "arch": spec.arch}
        wanted["optimization"] = spec.optimization
        assert {name: made[name] for name in wanted} == wanted, (self.dir, made)
        return self


@dataclass
class Step:
    returncode: int
    output: str
    versions: dict

    def build_of(self, cell: str) -> int:
        version, platform, arch = cell.split("/")
        return self.versions["builds"][version][platform][arch]["build"]


@dataclass
class Farm:
    """`buildfarm run` over `cells` (their Python builds only; optimization none unless a run says
    otherwise) into a store."""

    store: Path
    base_url: str
    mirror: str
    env: dict[str, str]
    cells: tuple[str, ...] = FARM_CELLS
    buildfarm: str = BUILDFARM

    def argv(self, *args: str) -> list[str]:
        versions = _unique(cell.split("/")[0] for cell in self.cells)
        platforms = _unique(cell.split("/")[1] for cell in self.cells)
        # Python cells only: runs also build the runtime cells of their platforms by default, which
        # tests/farm/test_runtime_run.py covers in a store of its own.
        return [
            BUILDFARM, "run", "--versions", *versions, "--platforms", *platforms, "--no-runtimes",
            "--store", str(self.store), "--source-mirror", self.mirror, "--optimization", "none", *args,
        ]  # fmt: skip

    def built(self, cell: str, build: int) -> BuiltCell:
        version, platform, arch = cell.split("/")
        return BuiltCell(self.store, version, platform, arch, build)

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


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


class RealBuilds:
    """The session's real builds, keyed by spec, each made once (see the module's docstring).

    `session_fixtures` are the fixture names the session's tests use; `fixture(name)` sets up
    a fixture of the session (pytest's request.getfixturevalue); `root` holds the stores of the
    builds made alone; `mirror` is the source mirror's URL."""

    def __init__(
        self, session_fixtures: set[str], fixture: Callable[[str], Any], root: Path, mirror: str
    ) -> None:
        self.session_fixtures = session_fixtures
        self.fixture = fixture
        self.root = root
        self.mirror = mirror
        self.made: dict[BuildSpec, BuiltCell] = {}

    def get(self, spec: BuildSpec, needs_root: Callable[[], None]) -> BuiltCell:
        if spec not in self.made:
            step, build, triggers = FARM_MADE.get(spec, ("", 0, ()))
            if self.session_fixtures.intersection(triggers):
                self.made[spec] = self._from_farm(spec, step, build)
            else:
                if spec.runner != "host":
                    needs_root()
                self.made[spec] = self._alone(spec)
        return self.made[spec]

    def _from_farm(self, spec: BuildSpec, step: str, build: int) -> BuiltCell:
        made = self.fixture(step)
        if isinstance(made, Step):
            assert made.returncode == 0, made.output
        farm: Farm = self.fixture("farm_store")
        return farm.built(spec.cell, build).check(spec)

    def _alone(self, spec: BuildSpec) -> BuiltCell:
        store = self.root / f"{spec.platform}-{spec.arch}-{spec.version}-{spec.optimization}"
        alone = Farm(store, store.as_uri(), self.mirror, dict(os.environ), cells=(spec.cell,))
        print(f"real build of {spec} alone, into {store}")
        step = alone.run("--arches", spec.arch, "--optimization", spec.optimization)
        assert step.returncode == 0, step.output
        assert f"{spec.platform}/{spec.arch}: {spec.runner} runner" in step.output, step.output
        return alone.built(spec.cell, step.build_of(spec.cell)).check(spec)


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
