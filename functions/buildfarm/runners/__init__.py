"""Local runners: execute one build spec with builder_image/build.py on this machine.

select_runner(platform_id, 'auto'|'host'|'chroot'|'docker') -> a runner, or
RunnerUnavailable(reason). runner.run(spec, on_phase=None) -> BuildResult.
availability(platform, arch, registry) -> {runner name: None, or why it cannot build here}.
"""

from __future__ import annotations

from buildfarm.platforms import Platform, Registry
from buildfarm.runners.base import BuildResult, PhaseCallback, Runner, RunnerUnavailable
from buildfarm.runners.local import (
    ChrootRunner,
    DockerRunner,
    HostRunner,
    chroot_problem,
    docker_problem,
    host_arch,
    host_platform_id,
    select_runner,
)

__all__ = [
    "BuildResult",
    "ChrootRunner",
    "DockerRunner",
    "HostRunner",
    "PhaseCallback",
    "Runner",
    "RunnerUnavailable",
    "availability",
    "host_platform_id",
    "select_runner",
]


def availability(platform: Platform, arch: str, registry: Registry) -> dict[str, str | None]:
    """Each runner's name -> None if it can build platform x arch on this machine, else one
    line saying why not (in the order 'auto' tries them)."""
    if arch not in platform.arches:
        reason = f"{platform.id} is not built for {arch} (arches: {', '.join(platform.arches)})"
        return dict.fromkeys(("host", "chroot", "docker"), reason)
    here = host_platform_id(registry)
    host = None
    if here != platform.id or arch != host_arch():
        host = (
            f"this machine is {here or 'not a registered platform'} {host_arch()}, not {platform.id} {arch}"
        )
    chroot = f"cannot run {arch} binaries in a chroot on this {host_arch()} machine"
    if arch == host_arch():
        chroot = chroot_problem(platform)[0]
    return {"host": host, "chroot": chroot, "docker": docker_problem()}
