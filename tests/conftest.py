"""Shared fixtures: the loopback source mirror, debootstrap roots, and the farm store.

The farm store holds the suite's real CPython builds. They are made once per session by
`buildfarm run` and inspected by the builder, farm, installer and uv tests alike (a 2-core
CI run cannot afford a build per test module):

- first run: 3.13.5 for debian-12 (host runner) and debian-11 (chroot runner), optimization
  none, into a fresh store served over loopback HTTP -> build 1 of each;
- second run: builds nothing;
- forced run: build 2 of each (ccache makes it cheaper);
- a forced run with the default pgo+lto, killed (SIGKILL, whole tree) while building its
  second cell after the first (debian-12, pgo+lto, build 3) finished, then a plain rerun
  that must publish the dead run's finished cell without rebuilding it.
Each step keeps what it saw, so a test can look at the store as it was after its step.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CPYTHON_SRC = SHARED / "cpython-src"
TEST_VERSION = "3.13.5"
BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
# Keep real builds short in tests: a small PGO training run and self-test subset.
SHORT_PROFILE_TASK = (
    "-m test --pgo test_array test_float test_int test_json test_re test_str test_set test_functools"
)
SHORT_SELFTEST = "test_sqlite3 test_ctypes test_zlib test_lzma test_bz2 test_hashlib test_json"
# Cells of the farm store, in build order (request order).
FARM_CELLS = (f"{TEST_VERSION}/debian-12/x86_64", f"{TEST_VERSION}/debian-11/x86_64")
# Compiler cache and chroot build roots. CI points this outside the clone
# (BUILDFARM_TEST_CACHE, set by .ci/run) so that runs on the same machine share them.
TEST_CACHE = Path(os.environ.get("BUILDFARM_TEST_CACHE") or REPO / ".cache")


def _sha256sums() -> dict[str, str]:
    sums = {}
    for line in (CPYTHON_SRC / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name.lstrip("*")] = digest
    return sums


def _buildfarm_loggers() -> dict[str, logging.Logger]:
    return {
        name: logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if (name == "buildfarm" or name.startswith("buildfarm.")) and isinstance(logger, logging.Logger)
    }


@pytest.fixture(autouse=True)
def buildfarm_log_handlers_write_to_this_tests_stdout() -> None:
    """Importing a Lambda handler gives the buildfarm.* loggers Powertools' handler, bound to
    the stdout of that moment (under pytest's capture: None, or a test's stream closed since):
    point it at this test's stdout, so a log line never fails ("--- Logging error ---")."""
    for logger in _buildfarm_loggers().values():
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None) if isinstance(handler, logging.StreamHandler) else False
            if stream is None or getattr(stream, "closed", False):
                handler.setStream(sys.stdout)


@pytest.fixture(scope="session")
def source_sha256() -> str:
    """The upstream sha256 of Python-3.13.5.tar.xz."""
    return _sha256sums()[f"Python-{TEST_VERSION}.tar.xz"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def http_dir_server() -> Iterator[callable]:
    """serve(directory) -> base URL of a loopback HTTP server for it; all stopped at the end."""
    servers = []

    def serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="session")
def source_mirror(tmp_path_factory: pytest.TempPathFactory, http_dir_server) -> str:
    """A python.org-shaped mirror of ../shared/cpython-src served over loopback HTTP:
    <base>/<X.Y.Z>/Python-<version>.tar.xz or .tgz (the releases catalog says which), and
    its OpenPGP signature Python-<version>.<ext>.asc where the shared sources have one."""
    from buildfarm.versions import parse_release

    root = tmp_path_factory.mktemp("mirror")
    for tarball in [*CPYTHON_SRC.glob("Python-*.tar.xz"), *CPYTHON_SRC.glob("Python-*.tgz")]:
        version = tarball.name.removeprefix("Python-").removesuffix(".tar.xz").removesuffix(".tgz")
        directory = root / parse_release(version).base_version
        directory.mkdir(exist_ok=True)
        (directory / tarball.name).symlink_to(tarball)
        signature = tarball.with_name(tarball.name + ".asc")
        if signature.is_file():
            (directory / signature.name).symlink_to(signature)
    return http_dir_server(root)


@pytest.fixture(scope="session")
def fast_build_env() -> Iterator[None]:
    """Environment for real builds in tests: ccache and cached chroot build roots (under
    TEST_CACHE, so reruns are fast; a bare machine starts cold), a short PGO task and self-test."""
    settings = {
        "BUILDFARM_CCACHE": "1",
        "CCACHE_DIR": str(TEST_CACHE / "ccache"),
        "BUILDFARM_PROFILE_TASK": SHORT_PROFILE_TASK,
        "BUILDFARM_SELFTEST_TESTS": SHORT_SELFTEST,
        "BUILDFARM_ROOTS_DIR": os.environ.get("BUILDFARM_ROOTS_DIR", str(TEST_CACHE / "roots")),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def needs_root() -> None:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip("needs root and debootstrap")


@pytest.fixture(scope="session")
def pristine_roots(tmp_path_factory) -> Iterator[callable]:
    """pristine(codename) -> a minbase debootstrap root created once per session (never
    mounted; tests work on copies)."""
    needs_root()
    from buildfarm import roots

    base = tmp_path_factory.mktemp("pristine-roots")
    made: dict[str, Path] = {}

    def pristine(codename: str) -> Path:
        if codename not in made:
            made[codename] = roots.debootstrap(codename, base / codename)
        return made[codename]

    yield pristine
    for path in made.values():
        roots.remove_root(path)


@pytest.fixture
def fresh_root(pristine_roots, tmp_path) -> Iterator[callable]:
    """fresh(codename) -> a private copy of a pristine minbase root for this test."""
    from buildfarm import roots

    copies: list[Path] = []

    def fresh(codename: str) -> Path:
        copy = roots.copy_root(pristine_roots(codename), tmp_path / f"root-{codename}-{len(copies)}")
        copies.append(copy)
        return copy

    yield fresh
    for path in copies:
        roots.remove_root(path)


# The root of the farm store's fixture chain: every farm fixture (first_run ... pgo_build) needs it,
# so a test reaches the farm store exactly when it is in the test's fixture closure.
FARM_STORE_FIXTURE = "farm_store"
# Why a test may not run (its markers contradict its fixtures); set at collection.
MISPLACED = pytest.StashKey[str]()


def _xdist_groups(item: pytest.Item) -> set[str]:
    marks = item.iter_markers("xdist_group")
    return {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default")) for mark in marks}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups and before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers that follow from others: `build`, `root` and `farm` tests are `slow`; `farm` tests
    all run on one xdist worker (xdist_group "farm": the farm store's builds are made once, in
    order), everything else spreads over the other worker. A test that reaches the farm store
    without the `farm` marker, or a `farm` test in another xdist group, fails before any fixture
    is set up (an exception here would crash an xdist worker and lose the message)."""
    for item in items:
        farm = item.get_closest_marker("farm") is not None
        if FARM_STORE_FIXTURE in getattr(item, "fixturenames", ()) and not farm:
            item.stash[MISPLACED] = (
                f"{item.nodeid} uses the farm store's fixtures ({FARM_STORE_FIXTURE} and what depends "
                "on it) but is not marked `farm`: add pytest.mark.farm to its module's pytestmark"
            )
        elif farm and _xdist_groups(item) - {"farm"}:
            item.stash[MISPLACED] = (
                f"{item.nodeid} is marked `farm` but also in xdist group(s) "
                f"{sorted(_xdist_groups(item) - {'farm'})}: farm tests run only in the farm's group"
            )
        if farm:
            item.add_marker(pytest.mark.xdist_group("farm"))
        if farm or item.get_closest_marker("build") or item.get_closest_marker("root"):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)  # before the item's fixtures are set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    if MISPLACED in item.stash:
        pytest.fail(item.stash[MISPLACED], pytrace=False)


# -- the farm store --------------------------------------------------------------------------


@dataclass
class BuiltCell:
    """One finished build in the farm store; `output` is the driver's full log."""

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
        self.cells = FARM_CELLS

    def argv(self, *args: str) -> list[str]:
        return [
            BUILDFARM, "run", "--versions", TEST_VERSION,
            "--platforms", *(cell.split("/")[1] for cell in FARM_CELLS),
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
def farm_store(tmp_path_factory, http_dir_server, source_mirror, fast_build_env) -> Farm:
    needs_root()
    store = tmp_path_factory.mktemp("farm-store")
    base_url = http_dir_server(store)
    env = {**os.environ, "BUILDFARM_PUBLIC_BASE_URL": base_url}
    return Farm(store, base_url, source_mirror, env)


@pytest.fixture(scope="session")
def first_run(farm_store: Farm) -> Step:
    return farm_store.run()


@pytest.fixture(scope="session")
def second_run(farm_store: Farm, first_run: Step) -> Step:
    return farm_store.run()


@pytest.fixture(scope="session")
def forced_run(farm_store: Farm, second_run: Step) -> Step:
    return farm_store.run("--force", "--jobs", "2")


@pytest.fixture(scope="session")
def killed_and_rerun(farm_store: Farm, forced_run: Step) -> tuple[str, Step]:
    """A forced pgo+lto run killed while building its second cell (its first cell, debian-12
    build 3, is built by then), then a plain rerun."""
    seen = farm_store.run_and_kill(
        "--force", "--jobs", "1", "--optimization", "pgo+lto", when=f"{FARM_CELLS[1]} build 3: building"
    )
    return seen, farm_store.run()


# The builds the builder tests inspect, taken from the farm store.


@pytest.fixture(scope="session")
def host_build(farm_store: Farm, first_run: Step) -> BuiltCell:
    """debian-12 build 1: optimization none, host runner."""
    assert first_run.returncode == 0, first_run.output
    return farm_store.built(FARM_CELLS[0], 1)


@pytest.fixture(scope="session")
def chroot_build(farm_store: Farm, first_run: Step) -> BuiltCell:
    """debian-11 build 1: optimization none, chroot runner (bullseye root)."""
    assert first_run.returncode == 0, first_run.output
    return farm_store.built(FARM_CELLS[1], 1)


@pytest.fixture(scope="session")
def pgo_build(farm_store: Farm, killed_and_rerun) -> BuiltCell:
    """debian-12 build 3: the default pgo+lto, host runner (finished by the killed run)."""
    return farm_store.built(FARM_CELLS[0], 3)


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server on loopback (its endpoint URL), with test credentials and
    AWS_ENDPOINT_URL(_S3) in the environment: what a builder in a container or a subprocess
    reaches, as it would reach AWS."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield endpoint
    finally:
        server.stop()
