"""The host runner: the driver runs directly on this machine, which must be the target
platform and arch. Also what this machine is (arch, /etc/os-release, registry platform),
which the other runners and the CLI ask."""

from __future__ import annotations

import contextlib
import os
import platform as host_platform
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from buildfarm.models import BuildSpec
from buildfarm.platforms import Platform, Registry, builder_image_dir
from buildfarm.runners.base import DriverRunner, Launch, driver_env

MACHINE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def host_arch() -> str:
    return MACHINE_ARCH.get(host_platform.machine(), host_platform.machine())


def read_os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip('"')
    return fields


def host_platform_id(registry: Registry) -> str | None:
    """The registry platform this machine is (from /etc/os-release), or None."""
    fields = read_os_release()
    if not fields.get("ID"):
        return None
    match = registry.for_os_release(
        fields["ID"], fields.get("VERSION_ID", ""), tuple(fields.get("ID_LIKE", "").split())
    )
    return match.id if match else None


class HostRunner(DriverRunner):
    """Runs the driver directly on this machine, which must be the target platform."""

    name = "host"

    def __init__(self, platform: Platform, python: str | None = None) -> None:
        self.platform_id = platform.id
        self.python = python or os.environ.get("BUILDFARM_DRIVER_PYTHON") or sys.executable

    @classmethod
    def problem(cls, platform: Platform, arch: str, registry: Registry) -> str | None:
        here = host_platform_id(registry)
        if here == platform.id and arch == host_arch():
            return None
        return (
            f"this machine is {here or 'not a registered platform'} {host_arch()}, not {platform.id} {arch}"
        )

    @classmethod
    def create(cls, platform: Platform, arch: str, registry: Registry) -> HostRunner:
        return cls(platform)

    @contextlib.contextmanager
    def launch(self, spec: BuildSpec, output: IO[str]) -> Iterator[Launch]:
        log_path = Path(tempfile.mkdtemp(prefix="buildfarm-log-")) / "build.log"
        env = {**os.environ, **driver_env(spec), "BUILDFARM_LOG_FILE": str(log_path)}
        yield Launch([self.python, str(builder_image_dir() / "build.py")], env, log_path)
