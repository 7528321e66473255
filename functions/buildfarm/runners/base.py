"""What every local runner shares: the result type, the driver's output protocol,
and running the driver while streaming its phases."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from buildfarm.models import BuildSpec

PhaseCallback = Callable[[str, float], None]

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
)
AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)

_PHASE_DONE = re.compile(r"^buildfarm: phase (\S+) done in ([0-9.]+) s$")
_RESULT = re.compile(r"^buildfarm: result (\{.*\})$")


class RunnerUnavailable(Exception):
    """This runner cannot build that platform here; the message says why."""


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    failed_phase: str | None
    reason: str | None
    log_path: Path | None
    timings: dict[str, float]


class Runner(Protocol):
    name: str
    platform_id: str

    def run(
        self, spec: BuildSpec, on_phase: PhaseCallback | None = None, output: IO[str] | None = None
    ) -> BuildResult: ...


def driver_env(spec: BuildSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The driver's environment: BUILD_SPEC (JSON, never a shell word) plus its options."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in (*DRIVER_OPTIONS, *AWS_ENV) if name in source}
    env["BUILD_SPEC"] = spec.model_dump_json()
    return env


def run_driver(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path | None,
    on_phase: PhaseCallback | None = None,
    output: IO[str] | None = None,
) -> BuildResult:
    """Run the driver, echo its lines to `output` (default stdout), report phases, parse the result."""
    output = sys.stdout if output is None else output
    timings: dict[str, float] = {}
    result: dict | None = None
    process = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            output.write(line)
            output.flush()
            line = line.rstrip("\n")
            if match := _PHASE_DONE.match(line):
                timings[match[1]] = float(match[2])
                if on_phase is not None:
                    on_phase(match[1], float(match[2]))
            elif match := _RESULT.match(line):
                result = json.loads(match[1])
        code = process.wait()
    except BaseException:
        # Interrupted: the driver gets SIGTERM, records the failure and exits.
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    if log_path is not None and not log_path.exists():
        log_path = None
    if result is None:
        return BuildResult(False, None, f"the build driver exited with status {code}", log_path, timings)
    return BuildResult(
        bool(result["ok"]) and code == 0, result.get("phase"), result.get("reason"), log_path, timings
    )
