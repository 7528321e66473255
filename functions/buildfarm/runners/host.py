"""The host runner: the driver runs directly on this machine, which must be the target
platform and arch. Also what this machine is (arch, /etc/os-release, registry platform),
which the other runners and the CLI ask."""

from __future__ import annotations

import contextlib
import os
import platform as host_platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from buildfarm.errors import UsageError
from buildfarm.models import BuildSpec
from buildfarm.platforms import ARCH_ALIASES, Platform, Registry, builder_image_dir
from buildfarm.runners.base import DriverRunner, Launch, PreflightError, driver_env, new_log_path

DRIVER_PYTHON_ENV = "BUILDFARM_DRIVER_PYTHON"


def host_arch() -> str:
    """This machine's arch as the registry names it (amd64 -> x86_64), else as uname says it."""
    machine = host_platform.machine()
    return ARCH_ALIASES.get(machine, machine)


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


def driver_python() -> str:
    """The interpreter the host runner runs the driver with: $BUILDFARM_DRIVER_PYTHON (a path,
    or a name on PATH), else this python. UsageError naming the variable if it is set to
    something that is not an executable file, so a build stops before it claims its cell."""
    value = os.environ.get(DRIVER_PYTHON_ENV)
    if not value:
        return sys.executable
    if shutil.which(value) is None:
        raise UsageError(
            f"{DRIVER_PYTHON_ENV}={value!r} is not an executable file: set it to the python the host "
            "runner runs the build driver with, or unset it for this python"
        )
    return value


class HostRunner(DriverRunner):
    """Runs the driver directly on this machine, which must be the target platform."""

    name = "host"

    def __init__(self, platform: Platform, python: str | None = None) -> None:
        self.platform_id = platform.id
        self.python = python or driver_python()

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
        log_path = new_log_path()
        env = {**os.environ, **driver_env(spec), "BUILDFARM_LOG_FILE": str(log_path)}
        try:
            yield Launch([self.python, str(builder_image_dir() / "build.py")], env, log_path)
        except OSError as error:
            if error.filename != self.python:
                raise
            # The interpreter exists (driver_python checked) but cannot be started: say which.
            why = error.strerror or str(error)
            raise PreflightError(f"cannot run the driver's python {self.python!r}: {why}") from None
