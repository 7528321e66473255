"""Shared fixtures: the loopback source mirror, debootstrap roots, the farm store, and the
suite's real CPython builds keyed by spec (the machinery is in tests/real_builds.py).

The farm store is made by `buildfarm run`, step by step, each step a session fixture that
keeps what it saw (a test can look at the store as it was after its step):

- first run: 3.13.5 for debian-12 (host runner) and debian-11 (chroot runner), optimization
  none, two jobs at once, into a fresh store served over loopback HTTP -> build 1 of each;
- second run: builds nothing;
- a forced run with the default pgo+lto, killed (SIGKILL, whole tree) while building its
  second cell after the first (debian-12, pgo+lto, build 2) finished, then a plain rerun
  that must publish the dead run's finished cell without rebuilding it. So the store ends
  with debian-12 builds 1 and 2 (the newest pgo+lto) and debian-11 build 1.

The builds that tests inspect (host_build, chroot_build, pgo_build) come from `real_builds`,
a session cache keyed by spec: a session that runs the farm step making a spec anyway takes
the build from it (a 2-core CI run cannot afford a build twice); otherwise the spec is built
alone, the same way, so any build test runs by itself and builds only what it needs.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ci_skips import pytest_runtest_makereport  # noqa: F401 (a hook: under CI a skip fails)
from loopback import serve_in_background
from real_builds import (
    CHROOT_NONE,
    FARM_CELLS,
    FARM_FIXTURES,
    HOST_NONE,
    HOST_PGO_LTO,
    TEST_VERSION,
    BuiltCell,
    Farm,
    RealBuilds,
    Step,
)

from buildfarm.attest.signing import KeyFileSigner, init_key

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CPYTHON_SRC = SHARED / "cpython-src"
# Keep real builds short in tests: a small PGO training run and self-test subset.
SHORT_PROFILE_TASK = (
    "-m test --pgo test_array test_float test_int test_json test_re test_str test_set test_functools"
)
SHORT_SELFTEST = "test_sqlite3 test_ctypes test_zlib test_lzma test_bz2 test_hashlib test_json"
# Compiler cache and chroot build roots. CI points this outside the clone
# (BUILDFARM_TEST_CACHE, set by .ci/run) so that runs on the same machine share them.
TEST_CACHE = Path(os.environ.get("BUILDFARM_TEST_CACHE") or REPO / ".cache")
# jsii (the CDK's runtime) unpacks its packages into a cache shared by every kernel, under a
# lock it deems stale by the lock file's age against the clock. Under `faketime -f '+400d'`
# every new lock is "400 days old": two xdist workers then unpacked aws-cdk-lib into the same
# entry at once and left it half-written, failing every later CDK test on the machine
# ("Expected to find .jsii file"). Each worker gets a cache of its own (in one worker the
# kernels start one after the other), so no lock is needed and the clock does not matter.
# Set, not defaulted: a worker inherits the controller's environment, this value included.
os.environ["JSII_RUNTIME_PACKAGE_CACHE_ROOT"] = str(
    TEST_CACHE / "jsii" / os.environ.get("PYTEST_XDIST_WORKER", "main")
)


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
                # Not setStream: it flushes the old stream first, which fails on a closed one.
                with handler.lock:
                    handler.stream = sys.stdout


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
        serve_in_background(server)
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


@pytest.fixture(scope="session", autouse=True)
def signing_key_in_test_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The farm signs with BUILDFARM_SIGNING_KEY (`buildfarm run` creates the default
    ~/.config key when none is named): tests sign with a key in the session's temporary
    directory, never with or in the real ~/.config."""
    name = "BUILDFARM_SIGNING_KEY"
    saved = os.environ.get(name)
    key = tmp_path_factory.getbasetemp() / "signing-key.pem"
    if not key.exists():
        init_key(key)
    os.environ[name] = str(key)
    yield
    if saved is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = saved


@pytest.fixture
def session_signer(signing_key_in_test_dir: None) -> KeyFileSigner:
    """The signer of the session's key (signing_key_in_test_dir), which a CLI command run in a
    test is configured with: for a store published as such a command would publish it."""
    return KeyFileSigner(Path(os.environ["BUILDFARM_SIGNING_KEY"]))


@pytest.fixture(scope="session")
def fast_build_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Environment for real builds in tests: ccache and cached chroot build roots (under
    TEST_CACHE, so reruns are fast; a bare machine starts cold), a short PGO task and self-test.
    A host build compiles in TEST_CACHE/stable-builds/build-<cell> (the driver's workdir.py),
    the same path in every session: ccache's hits then include PGO's instrumented objects, which
    embed their directory. (Inside a chroot root or a container, the driver's default, under
    its work root there, is already one path per cell.) The temporary directory (TMPDIR, and
    tempfile's in this process) is the session's own under pytest's, which pytest prunes: what
    the runs keep there on purpose (`run`'s logs, a killed run's outbox) stays off /tmp."""
    temporary = tmp_path_factory.mktemp("tmp", numbered=False)
    settings = {
        "TMPDIR": str(temporary),
        "BUILDFARM_CCACHE": "1",
        "CCACHE_DIR": str(TEST_CACHE / "ccache"),
        "BUILDFARM_STABLE_BUILD_ROOT": str(TEST_CACHE / "stable-builds"),
        "BUILDFARM_PROFILE_TASK": SHORT_PROFILE_TASK,
        "BUILDFARM_SELFTEST_TESTS": SHORT_SELFTEST,
        "BUILDFARM_ROOTS_DIR": os.environ.get("BUILDFARM_ROOTS_DIR", str(TEST_CACHE / "roots")),
    }
    with pytest.MonkeyPatch.context() as patch:  # undone at the session's end
        patch.setattr(tempfile, "tempdir", str(temporary))
        for name, value in settings.items():
            patch.setenv(name, value)
        yield


def needs_root() -> None:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip("needs root and debootstrap")


# Pristine roots are kept in the test cache between sessions (as the chroot runner's build
# roots are): made once per machine, shared by the xdist workers, remade when this old.
PRISTINE_MAX_AGE_SECONDS = 7 * 24 * 3600


def pristine_root(codename: str, packages: tuple[str, ...] = ()) -> Path:
    """A minbase debootstrap root of `codename`, with `packages` installed in a copy of the plain
    one, under TEST_CACHE/pristine-roots (made if missing or stale, under a lock: another worker
    may be making it)."""
    from buildfarm import roots

    base = TEST_CACHE / "pristine-roots"
    name = "-".join((codename, *sorted(packages)))
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = base / name
        if path.is_dir() and time.time() - path.stat().st_mtime > PRISTINE_MAX_AGE_SECONDS:
            roots.remove_root(path)
        if not path.is_dir():
            _make_pristine(codename, packages, path)
            os.utime(path)  # its age counts from now
    return path


def _make_pristine(codename: str, packages: tuple[str, ...], path: Path) -> None:
    from buildfarm import roots

    if not packages:
        roots.debootstrap(codename, path)  # built beside path and renamed
        return
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        roots.remove_root(partial)  # an interrupted session's
    roots.copy_root(pristine_root(codename), partial)
    roots.apt_install(partial, sorted(packages))
    partial.rename(path)


@pytest.fixture(scope="session")
def pristine_roots() -> Callable[..., Path]:
    """pristine(codename, packages=()) -> a minbase debootstrap root with those packages
    (pristine_root; never mounted: tests work on copies)."""
    needs_root()
    return pristine_root


@pytest.fixture
def fresh_root(pristine_roots, tmp_path) -> Iterator[Callable[..., Path]]:
    """fresh(codename, packages=()) -> a private copy of a pristine minbase root for this test."""
    from buildfarm import roots

    copies: list[Path] = []

    def fresh(codename: str, packages: tuple[str, ...] = ()) -> Path:
        copy = tmp_path / f"root-{codename}-{len(copies)}"
        roots.copy_root(pristine_roots(codename, packages), copy)
        copies.append(copy)
        return copy

    yield fresh
    for path in copies:
        roots.remove_root(path)


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
        reaches = [name for name in FARM_FIXTURES if name in getattr(item, "fixturenames", ())]
        if reaches and not farm:
            item.stash[MISPLACED] = (
                f"{item.nodeid} uses the farm store's runs or the builds taken from them ({reaches[0]} "
                "and what depends on it) but is not marked `farm`: add pytest.mark.farm to its module's "
                "pytestmark"
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


# -- the farm store and the real builds ---------------------------------------------------------


@pytest.fixture(scope="session")
def farm_store(tmp_path_factory, http_dir_server, source_mirror, fast_build_env) -> Farm:
    needs_root()
    store = tmp_path_factory.mktemp("farm-store")
    base_url = http_dir_server(store)
    env = {**os.environ, "BUILDFARM_PUBLIC_BASE_URL": base_url}
    return Farm(store, base_url, source_mirror, env)


@pytest.fixture(scope="session")
def first_run(farm_store: Farm) -> Step:
    return farm_store.run("--jobs", "2")


@pytest.fixture(scope="session")
def second_run(farm_store: Farm, first_run: Step) -> Step:
    return farm_store.run()


@pytest.fixture(scope="session")
def killed_and_rerun(farm_store: Farm, second_run: Step) -> tuple[str, Step]:
    """A forced pgo+lto run killed while building its second cell (its first cell, debian-12
    build 2, is built by then), then a plain rerun."""
    seen = farm_store.run_and_kill(
        "--force", "--jobs", "1", "--optimization", "pgo+lto", when=f"{FARM_CELLS[1]} build 2: building"
    )
    return seen, farm_store.run()


@pytest.fixture(scope="session")
def real_builds(
    request: pytest.FixtureRequest, tmp_path_factory, source_mirror, fast_build_env
) -> RealBuilds:
    """The session's real builds keyed by spec (tests/real_builds.py): from the farm store's
    runs when this session runs them anyway, else each built alone."""
    used = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    return RealBuilds(used, request.getfixturevalue, tmp_path_factory.mktemp("real-builds"), source_mirror)


@pytest.fixture(scope="session")
def host_build(real_builds: RealBuilds) -> BuiltCell:
    """3.13.5 for debian-12, optimization none, host runner."""
    return real_builds.get(HOST_NONE, needs_root)


@pytest.fixture(scope="session")
def chroot_build(real_builds: RealBuilds) -> BuiltCell:
    """3.13.5 for debian-11, optimization none, chroot runner (bullseye root)."""
    return real_builds.get(CHROOT_NONE, needs_root)


@pytest.fixture(scope="session")
def pgo_build(real_builds: RealBuilds) -> BuiltCell:
    """3.13.5 for debian-12, the default pgo+lto, host runner."""
    return real_builds.get(HOST_PGO_LTO, needs_root)


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


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory the code under test makes its directories in (tempfile's):
    this test's own, so what is left in it is what the code left."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory
