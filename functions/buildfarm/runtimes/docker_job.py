"""`buildfarm runtime build --runner docker`: a runtime built in its platform's builder image, as
the cloud's Batch job builds it. The image's command is the job's argv, the cloud's runtime item
command (cloud_items.runtime_command: name, --platform, --arch, --runtime-version, --build when
one is given, --store) plus --python-tarball when given; the image's build.py bootstraps a tool
Python from the store and runs it (builder_image/driver/runtime_job.py).

The container gets, each at its own path so that every path it prints is this machine's: a
directory store read-only (it reads versions.json and the Python tarball), and read-write in it
only what the job writes (store_writable: the claimed build's directory, else the cell's, where
the job takes the next free number; and the lock files of the store's create-only writes), the
definitions directory (read-only, $BUILDFARM_RUNTIMES) and a requirements file kept outside it,
uv's download cache ($BUILDFARM_RUNTIME_CACHE, read-write) and a --python-tarball (read-only).
What the runner made for those mounts and the job left empty is removed after it. Values travel
in the docker client's environment (-e NAME), never in argv: only the job's own arguments are
argv. An S3 store's credentials are the caller's AWS_* variables (not those naming files on this
machine); the caller's package index and proxy settings go along. The container's output is
this command's (the image build's too, if the image is missing)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from buildfarm import images
from buildfarm.config import FarmConfig
from buildfarm.errors import BuildfarmError, UsageError
from buildfarm.layout import runtime_artifact_dir, runtime_cell_dir
from buildfarm.platforms import DOCKER_PLATFORM, load_registry
from buildfarm.runners.base import Mount
from buildfarm.runners.docker import docker_problem, emulation_problem
from buildfarm.runtimes.cloud_items import DEFINITIONS_ENV
from buildfarm.runtimes.runtime_build import CACHE_ENV, RuntimeRequest, check_cell, choose_python
from buildfarm.store import LocalStore
from buildfarm.store.local import LOCK_DIR

# What the caller's uv, pip (the tool Python's bootstrap) and downloads are configured with.
NETWORK_SETTINGS = (
    "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy",
)  # fmt: skip
# AWS_* variables that name files on this machine, which the container does not have.
AWS_FILE_SETTINGS = ("AWS_CA_BUNDLE",)


@dataclass(frozen=True)
class DockerJob:
    """A runtime build as a container runs it: its command (the image's argv), its environment
    (the container gets these names, nothing else of the caller's) and its mounts."""

    command: list[str]
    env: dict[str, str]
    mounts: list[Mount]


def job_command(request: RuntimeRequest) -> list[str]:
    """The cloud's runtime item command for the request (plus its --python-tarball)."""
    command = [
        "buildfarm", "runtime", "build", request.definition.name, "--platform", request.platform,
        "--arch", request.arch, "--runtime-version", request.version,
    ]  # fmt: skip
    if request.build is not None:
        command += ["--build", str(request.build)]
    if request.execution_id is not None:
        command += ["--execution-id", request.execution_id]
    command += ["--store", request.store.location]
    if request.python_tarball is not None:
        command += ["--python-tarball", str(request.python_tarball)]
    return command


# Whether the job shares uv's cache through an S3 store (uv_cache.shared reads it in the job).
SHARED_UV_CACHE_ENV = FarmConfig.environment_variables()["runtime_uv_cache"]


def _passed_settings(request: RuntimeRequest, environ: Mapping[str, str]) -> dict[str, str]:
    names = [name for name in NETWORK_SETTINGS if name in environ]
    if not isinstance(request.store, LocalStore):
        names += [name for name in (SHARED_UV_CACHE_ENV,) if name in environ]  # uv_cache.shared
        names += sorted(
            name
            for name in environ
            if name.startswith("AWS_") and not name.endswith("_FILE") and name not in AWS_FILE_SETTINGS
        )
    return {name: environ[name] for name in names}


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def store_writable(request: RuntimeRequest) -> list[Path]:
    """What a job writes in a directory store: the lock files of its create-only writes, and the
    claimed build's directory (--build), else the cell's (the job numbers the build itself)."""
    assert isinstance(request.store, LocalStore)
    cell = (request.definition.name, request.version, request.platform, request.arch)
    key = runtime_cell_dir(*cell) if request.build is None else runtime_artifact_dir(*cell, request.build)
    return [request.store.root / LOCK_DIR, request.store.root.joinpath(*key.split("/"))]


def docker_job(request: RuntimeRequest, definitions: Path, environ: Mapping[str, str]) -> DockerJob:
    """The container's command, environment and mounts for a request. definitions and the
    request's paths are absolute and resolved (each is mounted at its own path)."""
    env = {DEFINITIONS_ENV: str(definitions), CACHE_ENV: str(request.cache)}
    env.update(_passed_settings(request, environ))
    mounts = [Mount(definitions, str(definitions), True)]
    for path in request.definition.lock_inputs():  # the lock, and a uv.lock's pyproject.toml
        if not _inside(path, definitions):
            mounts.append(Mount(path, str(path), True))
    if isinstance(request.store, LocalStore):
        mounts.append(Mount(request.store.root, str(request.store.root), True))
        mounts += [Mount(path, str(path), False) for path in store_writable(request)]
    mounts.append(Mount(request.cache, str(request.cache), False))  # in a store's, on top of it
    if request.python_tarball is not None:
        mounts.append(Mount(request.python_tarball, str(request.python_tarball), True))
    return DockerJob(job_command(request), env, mounts)


def docker_argv(job: DockerJob, tag: str, arch: str, network: str) -> list[str]:
    """`docker run` of the job in the image `tag`: names of the environment only (-e NAME; the
    values are in the docker client's environment), the mounts, then the job's own argv."""
    argv = ["docker", "run", "--rm", "--network", network, "--platform", DOCKER_PLATFORM[arch]]
    for name in job.env:
        argv += ["-e", name]
    for mount in job.mounts:
        argv += mount.docker_args()
    return [*argv, tag, *job.command]


def run_docker_job(request: RuntimeRequest, definitions: Path, output: IO[str] = sys.stdout) -> int:
    """Build the request in its platform's builder image (built first if missing); the
    container's exit status. What the request names (its cell, its published Python) and
    whether docker can run it are checked here first: UsageError, nothing written."""
    check_cell(request)
    choose_python(request)
    if problem := docker_problem() or emulation_problem(request.arch):
        raise UsageError(f"--runner docker: {problem}")
    try:
        tag = images.build_image(load_registry(), request.platform, request.arch, output)
    except images.ImageError as error:
        raise BuildfarmError(f"--runner docker: {error}") from None
    writable = store_writable(request) if isinstance(request.store, LocalStore) else []
    made = _make_dirs([request.cache, *writable])  # else docker would make them, root's
    job = docker_job(request, definitions, os.environ)
    argv = docker_argv(job, tag, request.arch, images.engine_network())
    output.write(f"runtime build in {tag}: {' '.join(job.command)}\n")
    output.flush()
    environment = {**os.environ, **job.env}
    try:
        return subprocess.run(argv, env=environment, stdin=subprocess.DEVNULL, check=False).returncode
    finally:
        for directory in reversed(made):  # deepest first; a directory the job wrote in stays
            with contextlib.suppress(OSError):
                directory.rmdir()


def _make_dirs(paths: list[Path]) -> list[Path]:
    """Create each path with its missing parents; the directories created, parents first."""
    made: list[Path] = []
    for path in paths:
        missing = [p for p in (*reversed(path.parents), path) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        made += [p for p in missing if p not in made]
    return made
