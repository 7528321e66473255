"""The docker runner: the driver runs in the platform's builder image (buildfarm.images,
the image Batch runs), built here if missing."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from buildfarm import images
from buildfarm.models import BuildSpec
from buildfarm.platforms import DOCKER_PLATFORM, Platform, Registry
from buildfarm.runners.base import DriverRunner, Launch, PreflightError, isolated_driver
from buildfarm.runners.host import host_arch

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def docker_problem() -> str | None:
    """None if this machine has a Docker engine that answers, else why not."""
    if not shutil.which("docker"):
        return "no Docker engine (the docker command is not installed)"
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no Docker engine ({error})"
    if result.returncode != 0:
        return "no Docker engine (`docker info` failed)"
    return None


def emulation_problem(arch: str, binfmt_dir: Path = BINFMT_MISC) -> str | None:
    """None if containers of `arch` run here: it is this machine's arch, or the kernel has an
    enabled binfmt_misc handler for it (qemu-user-static, tonistiigi/binfmt); else why not."""
    if arch == host_arch():
        return None
    for handler in sorted(binfmt_dir.glob(f"*{arch}*")) if binfmt_dir.is_dir() else []:
        with contextlib.suppress(OSError):
            if handler.read_text().startswith("enabled"):
                return None
    return (
        f"cannot run {arch} containers on this {host_arch()} machine "
        f"(no binfmt_misc handler for {arch}; qemu-user-static installs one)"
    )


class DockerRunner(DriverRunner):
    """Runs the driver in the platform's builder image (buildfarm.images), built if missing."""

    name = "docker"

    def __init__(self, platform: Platform, registry: Registry, arch: str) -> None:
        self.platform = platform
        self.platform_id = platform.id
        self.registry = registry
        self.arch = arch

    @classmethod
    def problem(cls, platform: Platform, arch: str, registry: Registry) -> str | None:
        return docker_problem() or emulation_problem(arch)

    @classmethod
    def create(cls, platform: Platform, arch: str, registry: Registry) -> DockerRunner:
        return cls(platform, registry, arch)

    def image_tag(self) -> str:
        return images.image_tag(self.registry, self.platform_id, self.arch)

    @contextlib.contextmanager
    def launch(self, spec: BuildSpec, output: IO[str]) -> Iterator[Launch]:
        try:
            tag = images.build_image(self.registry, self.platform_id, self.arch, output)
            image = images.image_id(tag)
        except images.ImageError as error:
            raise PreflightError(str(error)) from None
        driver = isolated_driver(spec)
        env = {**driver.env, "BUILDFARM_BUILDER_IMAGE": f"{tag}@{image}"}  # what the manifest records
        # Values travel in the docker client's environment (-e NAME), never in argv; the
        # container gets these names only, nothing else from the caller's environment.
        argv = ["docker", "run", "--rm", "--network", images.engine_network()]
        argv += ["--platform", DOCKER_PLATFORM[self.arch]]
        for name in env:
            argv += ["-e", name]
        for mount in driver.mounts:
            argv += mount.docker_args()
        try:
            yield Launch([*argv, tag], {**os.environ, **env}, driver.log_path, driver.outbox)
        finally:
            if driver.outbox is not None:
                driver.outbox.discard()
