"""Local runners: what executes one build spec with builder_image/build.py on this machine.

One module per runner (host, chroot, docker), each a class with the RunnerKind side
(problem: can it build platform x arch here; create) and the Runner side (run), as
cibuildwheel keeps one module per platform behind one protocol. RUNNERS is the registry, in
the order 'auto' tries them:

    select_runner(platform_id, 'auto'|'host'|'chroot'|'docker', arch) -> a Runner, or
        RunnerUnavailable(why)
    runner.run(spec, on_phase=None, output=None, on_progress=None) -> BuildResult
    availability(platform, arch, registry) -> {runner name: None, or why it cannot build here}
"""

from __future__ import annotations

from typing import Final

from buildfarm.platforms import Platform, Registry, load_registry
from buildfarm.runners.base import (
    BuildResult,
    PhaseCallback,
    ProgressCallback,
    Runner,
    RunnerKind,
    RunnerUnavailable,
)
from buildfarm.runners.chroot import ChrootRunner
from buildfarm.runners.docker import DockerRunner, docker_problem
from buildfarm.runners.host import HostRunner, host_arch, host_platform_id

RUNNERS: Final[dict[str, RunnerKind]] = {
    HostRunner.name: HostRunner,  # this machine is the platform: nothing to set up
    ChrootRunner.name: ChrootRunner,  # a Debian/Ubuntu root: no engine needed, needs root
    DockerRunner.name: DockerRunner,  # the Batch image: any platform, needs an engine
}
AUTO = "auto"
RUNNER_CHOICES: Final[tuple[str, ...]] = (AUTO, *RUNNERS)

__all__ = [
    "AUTO",
    "RUNNERS",
    "RUNNER_CHOICES",
    "BuildResult",
    "ChrootRunner",
    "DockerRunner",
    "HostRunner",
    "PhaseCallback",
    "ProgressCallback",
    "Runner",
    "RunnerKind",
    "RunnerUnavailable",
    "availability",
    "docker_problem",
    "host_arch",
    "host_platform_id",
    "select_runner",
]


def _arch_problem(platform: Platform, arch: str) -> str | None:
    if arch in platform.arches:
        return None
    return f"{platform.id} is not built for {arch} (arches: {', '.join(platform.arches)})"


def availability(platform: Platform, arch: str, registry: Registry) -> dict[str, str | None]:
    """Each runner's name -> None if it can build platform x arch on this machine, else one
    line saying why not (in the order 'auto' tries them)."""
    if problem := _arch_problem(platform, arch):
        return dict.fromkeys(RUNNERS, problem)
    return {name: kind.problem(platform, arch, registry) for name, kind in RUNNERS.items()}


def select_runner(
    platform_id: str, requested: str = AUTO, arch: str | None = None, registry: Registry | None = None
) -> Runner:
    """The runner for platform_id: one of RUNNERS by name, or 'auto' (the first of them that
    can build it here: host if this machine is that platform, else chroot for Debian/Ubuntu
    platforms whose mirror answers, else docker). Raises RunnerUnavailable naming why the
    requested runner (for 'auto': every runner) cannot work here."""
    registry = registry or load_registry()
    platform = registry.get(platform_id)
    arch = arch or host_arch()
    if problem := _arch_problem(platform, arch):
        raise RunnerUnavailable(problem)
    if requested != AUTO and requested not in RUNNERS:
        *first, last = RUNNER_CHOICES
        raise RunnerUnavailable(f"unknown runner {requested!r} ({', '.join(first)} or {last})")
    problems: list[str] = []
    for name, kind in RUNNERS.items():
        if requested not in (AUTO, name):
            continue
        if (problem := kind.problem(platform, arch, registry)) is None:
            return kind.create(platform, arch, registry)
        if requested == name:
            raise RunnerUnavailable(f"{name} runner: {problem}")
        problems.append(f"{name}: {problem}")
    raise RunnerUnavailable(f"no runner can build {platform_id} {arch} here ({'; '.join(problems)})")
