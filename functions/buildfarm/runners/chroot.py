"""The chroot runner: the driver runs inside a cached debootstrap root of the target
platform (Debian and Ubuntu, this machine's arch, as root)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from buildfarm import roots
from buildfarm.models import BuildSpec
from buildfarm.platforms import Platform, Registry, builder_image_dir
from buildfarm.runners.base import (
    DriverRunner,
    Launch,
    PreflightError,
    check_not_stopping,
    drop_unwritten_log,
    isolated_driver,
    stopping,
)
from buildfarm.runners.host import host_arch

INSIDE_BUILDER_IMAGE = "/buildfarm/builder_image"


class ChrootRunner(DriverRunner):
    """Runs the driver inside a cached debootstrap root of the target platform.

    The root (roots_dir()/<platform>-<arch>) is created once with the registry's build
    dependencies; builder_image/ is bind-mounted read-only, a directory store's outbox (never
    the store: runners.outbox) read-write.
    """

    name = "chroot"

    def __init__(self, platform: Platform, registry: Registry, mirror: str) -> None:
        self.platform = platform
        self.platform_id = platform.id
        self.registry = registry
        self.mirror = mirror
        self.arch = host_arch()

    @classmethod
    def problem(cls, platform: Platform, arch: str, registry: Registry) -> str | None:
        """Cheap checks first: the mirror is asked only when everything else allows a root."""
        if platform.family != "deb" or not platform.codename:
            return f"{platform.id} is not a Debian/Ubuntu platform (debootstrap builds only those)"
        if problem := roots.debootstrap_problem(platform.codename):
            return problem
        if arch != host_arch():
            return f"cannot run {arch} binaries in a chroot on this {host_arch()} machine"
        if problem := roots.mirror_problem(roots.mirror_for(platform), platform.codename):
            return f"the {platform.os_release.id} mirror does not serve {platform.codename}: {problem}"
        return None

    @classmethod
    def create(cls, platform: Platform, arch: str, registry: Registry) -> ChrootRunner:
        return cls(platform, registry, roots.mirror_for(platform))

    @property
    def root(self) -> Path:
        return roots.roots_dir() / f"{self.platform_id}-{self.arch}"

    def packages(self, store: str) -> list[str]:
        packages = list(self.registry.build_dependencies(self.platform_id, self.arch))
        if os.environ.get("BUILDFARM_CCACHE") == "1":
            packages.append("ccache")
        if store.startswith("s3://"):
            packages.append("python3-boto3")
        return packages

    def ensure_root(self, packages: list[str], output: IO[str]) -> Path:
        """Create the root once; install packages added since (recorded in a marker file)."""
        marker = self.root / "etc" / "buildfarm-root.json"
        if not self.root.exists():
            output.write(
                f"chroot: creating {self.root} ({self.platform.codename}, {len(packages)} packages)\n"
            )
            output.flush()
            roots.debootstrap(self.platform.codename or "", self.root, self.mirror, self.arch, packages)
            marker.write_text(json.dumps({"packages": sorted(packages)}))
            return self.root
        installed = set()
        with contextlib.suppress(OSError, ValueError):
            installed = set(json.loads(marker.read_text())["packages"])
        if not set(packages) <= installed:
            output.write(
                f"chroot: installing {' '.join(sorted(set(packages) - installed))} into {self.root}\n"
            )
            roots.apt_install(self.root, packages)
            marker.write_text(json.dumps({"packages": sorted(installed | set(packages))}))
        return self.root

    @contextlib.contextmanager
    def launch(self, spec: BuildSpec, output: IO[str]) -> Iterator[Launch]:
        """Builds of one root take turns (its lock): each mounts and unmounts the root's /proc,
        /dev and outbox, and a first one creates the root. Holding the lock, a build first
        unmounts what a build killed before its clean-up left there."""

        def waiting() -> None:
            output.write(f"chroot: waiting for the {self.platform_id} root (another build uses it)\n")
            output.flush()

        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(roots.root_lock(self.root, waiting, stopping))
                if stale := roots.clear_stale_mounts(self.root):
                    output.write(f"chroot: unmounted what an interrupted build left in the root: {stale}\n")
                check_not_stopping()
                root = self.ensure_root(self.packages(spec.store), output)
                check_not_stopping()
                driver = isolated_driver(spec)
                stack.callback(drop_unwritten_log, driver.log_path)  # after the unmounts
                if driver.outbox is not None:
                    stack.callback(driver.outbox.discard)  # after the unmounts
                binds = [(builder_image_dir(), INSIDE_BUILDER_IMAGE, True)]
                binds += [(mount.source, mount.target, mount.read_only) for mount in driver.mounts]
                stack.enter_context(roots.mounted(root, binds))
            except roots.RootError as error:
                raise PreflightError(f"cannot prepare the chroot: {error}") from None
            env = {**driver.env, "BUILDFARM_WORK_DIR": "/buildfarm/work"}
            env.setdefault("BUILDFARM_BUILDER_IMAGE", f"chroot:{self.platform.codename}")
            # Only these reach the driver: nothing else of this process's environment.
            command = ["python3", f"{INSIDE_BUILDER_IMAGE}/build.py"]
            argv, environment = roots.chroot_command(root, command, env)
            yield Launch(argv, environment, driver.log_path, driver.outbox)
