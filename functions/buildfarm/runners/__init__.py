"""Local runners: execute one build spec with builder_image/build.py on this machine.

select_runner(platform_id, 'auto'|'host'|'chroot'|'docker') -> a runner, or
RunnerUnavailable(reason). runner.run(spec, on_phase=None) -> BuildResult.
"""

from buildfarm.runners.base import BuildResult, PhaseCallback, Runner, RunnerUnavailable
from buildfarm.runners.local import ChrootRunner, DockerRunner, HostRunner, host_platform_id, select_runner

__all__ = [
    "BuildResult",
    "ChrootRunner",
    "DockerRunner",
    "HostRunner",
    "PhaseCallback",
    "Runner",
    "RunnerUnavailable",
    "host_platform_id",
    "select_runner",
]
