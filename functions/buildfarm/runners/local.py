"""The names callers imported from here before the runners became one module each
(host.py, chroot.py, docker.py); new code imports them from buildfarm.runners."""

from buildfarm.runners import select_runner
from buildfarm.runners.chroot import ChrootRunner
from buildfarm.runners.docker import DockerRunner, docker_problem
from buildfarm.runners.host import HostRunner, host_arch, host_platform_id, read_os_release

__all__ = [
    "ChrootRunner",
    "DockerRunner",
    "HostRunner",
    "docker_problem",
    "host_arch",
    "host_platform_id",
    "read_os_release",
    "select_runner",
]
