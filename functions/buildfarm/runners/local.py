"""The local runners: host, chroot (debootstrap root), docker."""

from __future__ import annotations

import contextlib
import json
import os
import platform as host_platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from buildfarm import images
from buildfarm.models import BuildSpec
from buildfarm.platforms import DOCKER_PLATFORM, Platform, Registry, builder_image_dir, load_registry
from buildfarm.runners import roots
from buildfarm.runners.base import BuildResult, PhaseCallback, RunnerUnavailable, driver_env, run_driver

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


def _local_store_path(store: str) -> Path | None:
    if store.startswith("s3://"):
        return None
    return Path(store.removeprefix("file://")).resolve()


def _ccache_dir() -> Path:
    """The caller's ccache directory ($CCACHE_DIR, else ccache's default), created if missing:
    what the chroot and docker runners mount for the driver's BUILDFARM_CCACHE=1."""
    ccache_dir = Path(os.environ.get("CCACHE_DIR") or Path.home() / ".cache" / "ccache").resolve()
    ccache_dir.mkdir(parents=True, exist_ok=True)
    return ccache_dir


class HostRunner:
    """Runs the driver directly on this machine, which must be the target platform."""

    name = "host"

    def __init__(self, platform: Platform, python: str | None = None) -> None:
        self.platform_id = platform.id
        self.python = python or os.environ.get("BUILDFARM_DRIVER_PYTHON") or sys.executable

    def run(
        self, spec: BuildSpec, on_phase: PhaseCallback | None = None, output: IO[str] | None = None
    ) -> BuildResult:
        env = dict(os.environ)
        env.update(driver_env(spec))
        log_dir = Path(tempfile.mkdtemp(prefix="buildfarm-log-"))
        log_path = log_dir / "build.log"
        env["BUILDFARM_LOG_FILE"] = str(log_path)
        driver = builder_image_dir() / "build.py"
        return run_driver([self.python, str(driver)], env, log_path, on_phase, output)


class ChrootRunner:
    """Runs the driver inside a cached debootstrap root of the target platform.

    The root (roots_dir()/<platform>-<arch>) is created once with the registry's build
    dependencies; builder_image/ is bind-mounted read-only, a local store read-write.
    """

    name = "chroot"

    def __init__(self, platform: Platform, registry: Registry, mirror: str) -> None:
        self.platform = platform
        self.platform_id = platform.id
        self.registry = registry
        self.mirror = mirror
        self.arch = host_arch()

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

    def run(
        self, spec: BuildSpec, on_phase: PhaseCallback | None = None, output: IO[str] | None = None
    ) -> BuildResult:
        output = sys.stdout if output is None else output
        try:
            root = self.ensure_root(self.packages(spec.store), output)
        except roots.RootError as error:
            return BuildResult(False, "preflight", f"cannot prepare the chroot: {error}", None, {})
        inside_spec = spec.model_copy()
        binds: list[tuple[Path, str, bool]] = [(builder_image_dir(), "/buildfarm/builder_image", True)]
        store_path = _local_store_path(spec.store)
        if store_path is not None:
            store_path.mkdir(parents=True, exist_ok=True)
            binds.append((store_path, "/buildfarm/store", False))
            inside_spec = inside_spec.model_copy(update={"store": "/buildfarm/store"})
        if spec.source.url.startswith("file://"):
            source = Path(spec.source.url.removeprefix("file://")).resolve()
            binds.append((source.parent, "/buildfarm/source", True))
            inside_spec = inside_spec.model_copy(
                update={
                    "source": spec.source.model_copy(
                        update={"url": f"file:///buildfarm/source/{source.name}"}
                    )
                }
            )
        env = driver_env(inside_spec)
        if env.get("BUILDFARM_CCACHE") == "1":
            binds.append((_ccache_dir(), "/buildfarm/ccache", False))
            env["CCACHE_DIR"] = "/buildfarm/ccache"
        log_dir = Path(tempfile.mkdtemp(prefix="buildfarm-log-"))
        binds.append((log_dir, "/buildfarm/log", False))
        env["BUILDFARM_LOG_FILE"] = "/buildfarm/log/build.log"
        env["BUILDFARM_WORK_DIR"] = "/buildfarm/work"
        env.setdefault("BUILDFARM_BUILDER_IMAGE", f"chroot:{self.platform.codename}")
        argv = roots.chroot_argv(root, ["python3", "/buildfarm/builder_image/build.py"], env)
        with roots.mounted(root, binds):
            return run_driver(argv, os.environ, log_dir / "build.log", on_phase, output)


class DockerRunner:
    """Runs the driver in the platform's builder image (buildfarm.images), built if missing."""

    name = "docker"

    def __init__(self, platform: Platform, registry: Registry, arch: str) -> None:
        self.platform = platform
        self.platform_id = platform.id
        self.registry = registry
        self.arch = arch

    def image_tag(self) -> str:
        return images.image_tag(self.registry, self.platform_id, self.arch)

    def run(
        self, spec: BuildSpec, on_phase: PhaseCallback | None = None, output: IO[str] | None = None
    ) -> BuildResult:
        output = sys.stdout if output is None else output
        try:
            tag = images.build_image(self.registry, self.platform_id, self.arch, output)
            image = images.image_id(tag)
        except images.ImageError as error:
            return BuildResult(False, "preflight", str(error), None, {})
        inside_spec = spec
        volumes: list[str] = []
        store_path = _local_store_path(spec.store)
        if store_path is not None:
            store_path.mkdir(parents=True, exist_ok=True)
            volumes += ["-v", f"{store_path}:/buildfarm/store"]
            inside_spec = spec.model_copy(update={"store": "/buildfarm/store"})
        if spec.source.url.startswith("file://"):
            source = Path(spec.source.url.removeprefix("file://")).resolve()
            volumes += ["-v", f"{source.parent}:/buildfarm/source:ro"]
            inside_spec = inside_spec.model_copy(
                update={
                    "source": spec.source.model_copy(
                        update={"url": f"file:///buildfarm/source/{source.name}"}
                    )
                }
            )
        log_dir = Path(tempfile.mkdtemp(prefix="buildfarm-log-"))
        volumes += ["-v", f"{log_dir}:/buildfarm/log"]
        env = driver_env(inside_spec)
        if env.get("BUILDFARM_CCACHE") == "1":  # the caller's compiler cache (the image has ccache)
            volumes += ["-v", f"{_ccache_dir()}:/buildfarm/ccache"]
            env["CCACHE_DIR"] = "/buildfarm/ccache"
        env["BUILDFARM_LOG_FILE"] = "/buildfarm/log/build.log"
        env["BUILDFARM_BUILDER_IMAGE"] = f"{tag}@{image}"  # what the manifest records
        # Values travel in the docker client's environment (-e NAME), never in argv; the
        # container gets these names only, nothing else from the caller's environment.
        argv = ["docker", "run", "--rm", "--network", images.engine_network()]
        argv += ["--platform", DOCKER_PLATFORM[self.arch]]
        for name in env:
            argv += ["-e", name]
        argv += [*volumes, tag]
        return run_driver(argv, {**os.environ, **env}, log_dir / "build.log", on_phase, output)


def docker_problem() -> str | None:
    if not shutil.which("docker"):
        return "no Docker engine (the docker command is not installed)"
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no Docker engine ({error})"
    if result.returncode != 0:
        return "no Docker engine (`docker info` failed)"
    return None


def chroot_problem(platform: Platform) -> tuple[str | None, str]:
    """(why a chroot build of this platform is impossible here or None, the mirror to use)."""
    if platform.family != "deb" or not platform.codename:
        return f"{platform.id} is not a Debian/Ubuntu platform (debootstrap builds only those)", ""
    mirror = roots.mirror_for(platform)
    if problem := roots.debootstrap_problem(platform.codename):
        return problem, mirror
    if (problem := roots.mirror_problem(mirror, platform.codename)) is not None:
        return f"the {platform.os_release.id} mirror does not serve {platform.codename}: {problem}", mirror
    return None, mirror


def select_runner(
    platform_id: str, requested: str = "auto", arch: str | None = None
) -> HostRunner | ChrootRunner | DockerRunner:
    """The runner for platform_id: 'host', 'chroot', 'docker', or 'auto' (host if this machine
    is that platform, else chroot for Debian/Ubuntu platforms whose mirror answers, else
    docker). Raises RunnerUnavailable naming why the requested runner cannot work here."""
    registry = load_registry()
    platform = registry.get(platform_id)
    arch = arch or host_arch()
    if arch not in platform.arches:
        raise RunnerUnavailable(
            f"{platform_id} is not built for {arch} (arches: {', '.join(platform.arches)})"
        )
    if requested not in ("auto", "host", "chroot", "docker"):
        raise RunnerUnavailable(f"unknown runner {requested!r} (auto, host, chroot or docker)")
    problems: list[str] = []

    if requested in ("auto", "host"):
        here = host_platform_id(registry)
        if here == platform_id and arch == host_arch():
            return HostRunner(platform)
        problem = (
            f"this machine is {here or 'not a registered platform'} {host_arch()}, not {platform_id} {arch}"
        )
        if requested == "host":
            raise RunnerUnavailable(f"host runner: {problem}")
        problems.append(f"host: {problem}")

    if requested in ("auto", "chroot"):
        problem, mirror = chroot_problem(platform)
        if problem is None and arch != host_arch():
            problem = f"cannot run {arch} binaries in a chroot on this {host_arch()} machine"
        if problem is None:
            return ChrootRunner(platform, registry, mirror)
        if requested == "chroot":
            raise RunnerUnavailable(f"chroot runner: {problem}")
        problems.append(f"chroot: {problem}")

    problem = docker_problem()
    if problem is None:
        return DockerRunner(platform, registry, arch)
    if requested == "docker":
        raise RunnerUnavailable(f"docker runner: {problem}")
    problems.append(f"docker: {problem}")
    raise RunnerUnavailable(f"no runner can build {platform_id} {arch} here ({'; '.join(problems)})")
