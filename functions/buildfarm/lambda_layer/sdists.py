"""Building an sdist into a wheel for the target: first as it comes, then, if that fails or
makes a wheel the target cannot run (its tags, or its shared objects needing a newer glibc
than the target's: glibc.py), once more without a C compiler, so a project whose C speedups
are optional falls back to pure Python."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from buildfarm.lambda_layer.glibc import glibc_problem
from buildfarm.lambda_layer.piprun import last_error, run_pip
from buildfarm.lambda_layer.tags import Target, is_compatible, tag_strings

# Names a build may call a C/C++ compiler by; in the retry each is a stub that fails.
COMPILER_NAMES = ("cc", "gcc", "c++", "g++", "cpp", "clang", "clang++")
# Switches some projects read to skip their C extensions (each project's documented variable).
PURE_PYTHON_ENV = {
    "AIOHTTP_NO_EXTENSIONS": "1",
    "YARL_NO_EXTENSIONS": "1",
    "MULTIDICT_NO_EXTENSIONS": "1",
    "FROZENLIST_NO_EXTENSIONS": "1",
    "PROPCACHE_NO_EXTENSIONS": "1",
    "MSGPACK_PUREPYTHON": "1",
    "DISABLE_SQLALCHEMY_CEXT": "1",
}
NO_COMPILER_STUB = '#!/bin/sh\necho "$0: no C compiler in this build (pure-Python retry)" >&2\nexit 1\n'


@dataclass(frozen=True)
class BuildOutcome:
    """A built wheel (path) and whether it needed the compiler-less retry, or why it failed."""

    wheel: Path | None
    pure_retry: bool
    reason: str | None = None


def no_compiler_env(stub_dir: Path) -> dict[str, str]:
    """The environment of the retry: every compiler name on PATH is a failing stub, CC and CXX
    point at it, and the projects' pure-Python switches are on."""
    stub_dir.mkdir(parents=True, exist_ok=True)
    names = [*COMPILER_NAMES, *(f"{platform.machine()}-linux-gnu-{name}" for name in ("gcc", "g++"))]
    for name in names:
        stub = stub_dir / name
        stub.write_text(NO_COMPILER_STUB)
        stub.chmod(0o755)
    env = {**os.environ, **PURE_PYTHON_ENV}
    env.update(CC=str(stub_dir / "cc"), CXX=str(stub_dir / "c++"), LDSHARED=str(stub_dir / "cc") + " -shared")
    env["PATH"] = os.pathsep.join([str(stub_dir), env.get("PATH", os.defpath)])
    return env


def _attempt(
    interpreter: Path,
    sdist: Path,
    out: Path,
    target: Target,
    env: dict[str, str] | None,
    index_url: str | None,
) -> tuple[Path | None, str]:
    """One `pip wheel`; the wheel if it runs on the target, else why not."""
    out.mkdir(parents=True)
    run = run_pip(
        interpreter, ["wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)], env=env, index_url=index_url
    )
    if not run.ok:
        return None, last_error(run.output)
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        return None, f"pip wheel made {len(wheels)} wheels"
    if not is_compatible(wheels[0].name, target, built_here=True):
        tags = ", ".join(tag_strings(wheels[0].name))
        return None, f"the built wheel is {tags}, which {target.describe()} cannot run"
    # Compiled against this machine's glibc, whatever its tag says: refused if that is newer.
    if problem := glibc_problem(wheels[0], target):
        return None, f"the built wheel cannot run on {target.describe()}: {problem}"
    return wheels[0], ""


def build_sdist(
    interpreter: Path, sdist: Path, out_dir: Path, target: Target, index_url: str | None = None
) -> BuildOutcome:
    """Build `sdist` into a wheel in out_dir (with a compiler, else without one)."""
    with tempfile.TemporaryDirectory(prefix="sdist-build-") as scratch:
        scratch_dir = Path(scratch)
        wheel, first_reason = _attempt(interpreter, sdist, scratch_dir / "cc", target, None, index_url)
        pure_retry = wheel is None
        second_reason = ""
        if wheel is None:
            env = no_compiler_env(scratch_dir / "stubs")
            wheel, second_reason = _attempt(interpreter, sdist, scratch_dir / "pure", target, env, index_url)
        if wheel is None:
            reason = f"build failed: {first_reason}; without a C compiler: {second_reason}"
            return BuildOutcome(None, pure_retry, reason)
        out_dir.mkdir(parents=True, exist_ok=True)
        kept = out_dir / wheel.name
        shutil.move(wheel, kept)
        return BuildOutcome(kept, pure_retry)
