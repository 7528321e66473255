"""What every local runner shares: the Runner protocol (an instance builds one platform x
arch) and RunnerKind (the class side the registry holds: can it build here, and make one),
the result type, the driver's output protocol, and running the driver while reporting its
phases and progress.

The driver (builder_image/build.py) prints, besides its log:
    buildfarm: phase NAME done in S s                  a phase ended after S seconds
    buildfarm: progress PHASE DONE/TOTAL UNIT          during make, PGO and BOLT, at least
                                                       every 30 s; TOTAL is ? when unknown
    buildfarm: result {"ok": ..., "phase": ..., "reason": ...}   last
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Protocol

from buildfarm import roots
from buildfarm.errors import UsageError
from buildfarm.models import BuildSpec
from buildfarm.platforms import Platform, Registry
from buildfarm.runners.outbox import Outbox, driver_module, taken_message
from buildfarm.verify import RUNNER_SOURCE, RUNNER_STORE

PhaseCallback = Callable[[str, float], None]
# (phase, done, total or None when the driver does not know it, unit), e.g. ("make", 212, 640, "objects")
ProgressCallback = Callable[[str, int, int | None, str], None]

# Environment the driver understands (see builder_image/build.py); passed through from the caller.
DRIVER_OPTIONS = (
    "BUILDFARM_JOBS",
    "BUILDFARM_PROFILE_TASK",
    "BUILDFARM_CCACHE",
    "BUILDFARM_SELFTEST_TESTS",
    "BUILDFARM_CHECK_BUILD_DEPS",
    "BUILDFARM_KEEP_WORK",
    "BUILDFARM_MAINTAINER",
    "BUILDFARM_BUILDER_IMAGE",
    "BUILDFARM_REQUIRE_SOURCE_SIGNATURE",
)
STOP_AFTER = "BUILDFARM_STOP_AFTER"  # the driver's last phase (builder_image/driver/main.py)
AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)

# Bounded digit runs: int() refuses over 4300 digits, and a malformed line must not end the build.
_PHASE_DONE = re.compile(r"buildfarm: phase ([A-Za-z0-9_.+-]+) done in ([0-9]{1,9}(?:\.[0-9]{1,6})?) s")
_PROGRESS = re.compile(
    r"buildfarm: progress ([A-Za-z0-9_.+-]+) ([0-9]{1,12})/([0-9]{1,12}|\?) ([A-Za-z0-9_.-]+)"
)
_RESULT = re.compile(r"buildfarm: result (\{.*\})")

# Where a root or container sees what the caller mounts (verify.py undoes the store and
# source translations when it compares a manifest's spec with the plan).
INSIDE_STORE = RUNNER_STORE
INSIDE_SOURCE_DIR = RUNNER_SOURCE.removeprefix("file://").rstrip("/")
INSIDE_CCACHE = "/buildfarm/ccache"
INSIDE_LOG_DIR = "/buildfarm/log"


class RunnerUnavailable(Exception):
    """This runner cannot build that platform here; the message says why."""


class PreflightError(Exception):
    """Where the driver runs (a root, an image) could not be prepared: the build fails in
    its preflight phase with this message."""


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    failed_phase: str | None
    reason: str | None
    log_path: Path | None
    timings: dict[str, float]


class Runner(Protocol):
    """Builds specs of one platform x arch on this machine."""

    name: ClassVar[str]
    platform_id: str

    def run(
        self,
        spec: BuildSpec,
        on_phase: PhaseCallback | None = None,
        output: IO[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> BuildResult: ...


class RunnerKind(Protocol):
    """A runner class as the registry holds it (as cibuildwheel's PlatformModule)."""

    name: str

    def problem(self, platform: Platform, arch: str, registry: Registry) -> str | None:
        """None if this runner can build platform x arch on this machine, else why not (one line)."""
        ...

    def create(self, platform: Platform, arch: str, registry: Registry) -> Runner:
        """The runner for platform x arch; call only when problem() is None."""
        ...


def check_driver_settings(environ: Mapping[str, str]) -> None:
    """UsageError naming a driver setting that the driver itself would refuse only after the
    cell is claimed: a $BUILDFARM_STOP_AFTER that is not one of its phases, an on/off option
    that is not 1 or 0, a bad $BUILDFARM_JOBS (the driver's own check_environment)."""
    if STOP_AFTER in environ:
        phases = driver_module("main").PHASE_NAMES
        if environ[STOP_AFTER] not in phases:
            raise UsageError(
                f"{STOP_AFTER}: {environ[STOP_AFTER]!r} is not a phase (one of: {', '.join(phases)})"
            )
    try:
        driver_module("spec").check_environment(environ)
    except driver_module("errors").SpecError as error:
        raise UsageError(str(error)) from None


def driver_env(spec: BuildSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The driver's environment: BUILD_SPEC (JSON, never a shell word) plus its options."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in (*DRIVER_OPTIONS, *AWS_ENV) if name in source}
    env["BUILD_SPEC"] = spec.model_dump_json()
    return env


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool

    def docker_args(self) -> list[str]:
        """`--mount` for `docker run`: its fields are CSV, quoted where a path has a comma or a
        quote; unlike -v, a ':' in a path needs nothing."""
        fields = ["type=bind", f"source={self.source}", f"target={self.target}"]
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(fields + (["readonly"] if self.read_only else []))
        return ["--mount", line.getvalue()]


@dataclass(frozen=True)
class IsolatedDriver:
    """What a driver in a root or container is given: its environment (the spec re-pointed
    at the mounts), the mounts, where its build.log lands on this machine, and for a directory
    store the outbox it writes into instead (the runner publishes from it and discards it)."""

    env: dict[str, str]
    mounts: list[Mount]
    log_path: Path
    outbox: Outbox | None = None


def _caller_ccache_dir() -> Path:
    """The caller's ccache directory ($CCACHE_DIR, else ccache's default), created if missing."""
    ccache_dir = Path(os.environ.get("CCACHE_DIR") or Path.home() / ".cache" / "ccache").resolve()
    ccache_dir.mkdir(parents=True, exist_ok=True)
    return ccache_dir


def isolated_driver(spec: BuildSpec) -> IsolatedDriver:
    """For a directory store, an empty outbox where the store would be (never the store: see
    runners.outbox; PreflightError if the store holds the build number already); a file://
    source's directory read-only, the caller's ccache when BUILDFARM_CCACHE=1, and a fresh log
    directory. An S3 store is the driver's own business (its create-only writes)."""
    inside = spec
    mounts: list[Mount] = []
    outbox = None
    if not spec.store.startswith("s3://"):
        store_path = Path(spec.store.removeprefix("file://")).resolve()
        store_path.mkdir(parents=True, exist_ok=True)
        if taken := taken_message(store_path, spec.artifact_dir):
            raise PreflightError(taken)
        outbox = Outbox.create(store_path, spec)
        mounts.append(Mount(outbox.directory, INSIDE_STORE, False))
        inside = inside.model_copy(update={"store": INSIDE_STORE})
    if spec.source.url.startswith("file://"):
        source = Path(spec.source.url.removeprefix("file://")).resolve()
        mounts.append(Mount(source.parent, INSIDE_SOURCE_DIR, True))
        inside_source = spec.source.model_copy(update={"url": f"file://{INSIDE_SOURCE_DIR}/{source.name}"})
        inside = inside.model_copy(update={"source": inside_source})
    env = driver_env(inside)
    if env.get("BUILDFARM_CCACHE") == "1":
        mounts.append(Mount(_caller_ccache_dir(), INSIDE_CCACHE, False))
        env["CCACHE_DIR"] = INSIDE_CCACHE
    log_path = new_log_path()
    mounts.append(Mount(log_path.parent, INSIDE_LOG_DIR, False))
    env["BUILDFARM_LOG_FILE"] = f"{INSIDE_LOG_DIR}/{log_path.name}"
    return IsolatedDriver(env, mounts, log_path, outbox)


def new_log_path() -> Path:
    """Where a launch's driver copies its full log: build.log in a new directory of its own
    under the temporary directory. Whoever ends up with it removes it (discard_log): the run
    (DriverRunner.run) when the driver wrote none, `buildfarm build` once the store holds
    the build's copy (a stored build's, or a failed build's under logs/), `buildfarm run`
    when it moves the log beside its own."""
    return Path(tempfile.mkdtemp(prefix="buildfarm-log-")) / "build.log"


def discard_log(log_path: Path) -> None:
    """Remove new_log_path's log, if there is one, and its directory, if then empty."""
    with suppress(FileNotFoundError):
        log_path.unlink()
    drop_unwritten_log(log_path)


def drop_unwritten_log(log_path: Path) -> None:
    """Remove new_log_path's directory if the driver wrote nothing there (it never started,
    or the launch failed before it)."""
    with suppress(OSError):
        log_path.parent.rmdir()


@dataclass
class _DriverOutput:
    """What the driver's lines said so far."""

    on_phase: PhaseCallback | None
    on_progress: ProgressCallback | None
    timings: dict[str, float] = field(default_factory=dict)
    result: dict | None = None

    def read(self, line: str) -> None:
        if match := _PHASE_DONE.fullmatch(line):
            self.timings[match[1]] = float(match[2])
            if self.on_phase is not None:
                self.on_phase(match[1], float(match[2]))
        elif match := _PROGRESS.fullmatch(line):
            if self.on_progress is not None:
                total = None if match[3] == "?" else int(match[3])
                self.on_progress(match[1], int(match[2]), total, match[4])
        elif match := _RESULT.fullmatch(line):
            try:
                result = json.loads(match[1])
            except ValueError:
                return  # not the driver's result line: no result, so the build counts as failed
            if isinstance(result, dict) and "ok" in result:
                self.result = result


# Set while an interrupted farm winds down: a build whose preflight (debootstrap, docker build,
# a root's lock) ends now must not start its driver, whose result would be thrown away.
_STOPPING = threading.Event()


def stop_builds() -> None:
    """From now on no build starts its driver or its next preflight step (until resume_builds)."""
    _STOPPING.set()


def resume_builds() -> None:
    """Builds may start again (the interrupted ones have all returned)."""
    _STOPPING.clear()


def stopping() -> bool:
    return _STOPPING.is_set()


def check_not_stopping() -> None:
    """PreflightError if builds are being stopped: call before each preflight step and the driver."""
    if _STOPPING.is_set():
        raise PreflightError("interrupted before the build started")


# Starts the driver's program (os.execvp: a file that is no program fails, and no shell runs it)
# with Linux's parent-death signal set: it outlives the exec (of chroot and of the driver, and
# `docker run` passes SIGTERM on to its container).
_LAUNCHER = """\
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
    sys.exit("buildfarm: cannot set the parent-death signal")
if os.getppid() != int(sys.argv[1]):  # the run died before the signal was set
    sys.exit(1)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as error:
    print("buildfarm: cannot start {}: {}".format(sys.argv[2], error.strerror), flush=True)
    sys.exit(127)
"""


def dies_with_parent(argv: Sequence[str]) -> list[str]:
    """argv, started so that the driver gets SIGTERM when this process dies however it dies (a
    SIGKILL, the OOM killer): it then stops its build and records the failure, instead of
    building on unseen while the next run's recovery takes its cell for ended."""
    return [sys.executable, "-I", "-c", _LAUNCHER, str(os.getpid()), *argv]  # -I: the env is the driver's


def _raise_if_not_started(program: str, first_line: str | None) -> None:
    """OSError, as Popen would raise it, when the launcher could not execute the driver's
    program: callers tell a program that cannot start by it."""
    prefix = f"buildfarm: cannot start {program}: "
    if first_line and first_line.startswith(prefix):
        raise OSError(0, first_line[len(prefix) :].strip(), program)


def run_driver(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path | None,
    on_phase: PhaseCallback | None = None,
    output: IO[str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> BuildResult:
    """Run the driver, echo its lines to `output` (default stdout), report phases and
    progress, parse the result."""
    output = sys.stdout if output is None else output
    said = _DriverOutput(on_phase, on_progress)
    process = subprocess.Popen(
        dies_with_parent(argv),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    assert process.stdout is not None
    if stopping():  # the farm was interrupted just as this driver started
        roots.stop_group(process)
        return BuildResult(False, "preflight", "interrupted before the build started", None, {})
    first = None
    try:
        for line in process.stdout:
            first = line if first is None else first
            output.write(line)
            output.flush()
            said.read(line.rstrip("\n"))
        code = process.wait()
    except BaseException:
        # Its whole process group: a driver that dies first must not leave its children running.
        roots.stop_group(process)
        raise
    if log_path is not None and not log_path.exists():
        log_path = None
    result = said.result
    if result is None and code == 127:
        _raise_if_not_started(argv[0], first)
    if result is None:
        return BuildResult(False, None, f"the build driver exited with status {code}", log_path, said.timings)
    ok = bool(result["ok"]) and code == 0
    return BuildResult(ok, result.get("phase"), result.get("reason"), log_path, said.timings)


@dataclass(frozen=True)
class Launch:
    """How to start the driver: argv, the environment of that process, where build.log lands,
    and the outbox to publish from once it exited (the launch discards it)."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    outbox: Outbox | None = None


class DriverRunner:
    """run() for every runner: the runner's launch() prepares where the driver runs and
    says how to start it (a context: a chroot's mounts last as long as the build)."""

    name: ClassVar[str]
    platform_id: str

    def launch(self, spec: BuildSpec, output: IO[str]) -> AbstractContextManager[Launch]:
        raise NotImplementedError

    def run(
        self,
        spec: BuildSpec,
        on_phase: PhaseCallback | None = None,
        output: IO[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> BuildResult:
        output = sys.stdout if output is None else output
        log_path = None
        try:
            check_not_stopping()
            with self.launch(spec, output) as launch:
                log_path = launch.log_path
                check_not_stopping()
                result = run_driver(launch.argv, launch.env, launch.log_path, on_phase, output, on_progress)
                return result if launch.outbox is None else launch.outbox.publish(result, output)
        except PreflightError as error:
            return BuildResult(False, "preflight", str(error), None, {})
        finally:
            if log_path is not None:
                drop_unwritten_log(log_path)
