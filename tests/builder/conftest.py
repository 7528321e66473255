"""Builder fixtures: the driver. The real builds the builder tests inspect (host_build,
chroot_build, pgo_build: a session cache keyed by spec, shared with the farm store's runs),
the fast build settings and the debootstrap roots are in tests/conftest.py.

The driver package (builder_image/driver/) is imported as build.py imports it, with
builder_image/ on sys.path: test modules here say `from driver import flags`."""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from builder_helpers import load_build_module, put_driver_on_path
from real_builds import TEST_VERSION as DOCKER_VERSION
from real_builds import Farm

from buildfarm import images
from buildfarm.platforms import load_registry
from buildfarm.runners import docker_problem, host_arch

put_driver_on_path()

# The docker runner's cell (bullseye: its system python, 3.9, cannot run buildfarm itself).
DOCKER_PLATFORM = "debian-11"


@dataclass(frozen=True)
class DockerFarm:
    store: Path
    output: str  # `buildfarm run`'s


@pytest.fixture(scope="session")
def registry_json() -> dict:
    """The builder registry as the driver loads it (platforms.json)."""
    from driver import spec as driver_spec

    return driver_spec.load_platforms()


@pytest.fixture(scope="session")
def build_py() -> SimpleNamespace:
    """The driver's names the real-build tests use (builder_helpers.load_build_module())."""
    return load_build_module()


@pytest.fixture
def moto_s3(moto_server):
    """(client, bucket): an empty bucket in moto's server on loopback; the driver reaches it
    through AWS_ENDPOINT_URL_S3."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server)
    bucket = f"farm-{uuid.uuid4().hex[:12]}"  # moto keeps state per process: one bucket per test
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    client.close()  # no keep-alive connection left for the server's shutdown to wait on


@pytest.fixture(scope="session")
def docker_farm(tmp_path_factory, source_mirror: str, fast_build_env: None) -> DockerFarm:
    """3.13.5 for debian-11 built and published by `buildfarm run --runner docker` in the
    bullseye builder image (its base imported from a debootstrap root when missing), into a
    store of its own: the docker runner's build (test_docker_build) and the store the runtime
    job bootstraps from (test_docker_runtime_job), built once per session."""
    if problem := docker_problem():
        pytest.skip(problem)  # a failure under CI (tests/ci_skips.py)
    registry = load_registry()
    if not images.image_exists(registry.get(DOCKER_PLATFORM).base_image):
        images.import_base(registry, DOCKER_PLATFORM, host_arch(), sys.stdout)
    store = tmp_path_factory.mktemp("docker-store")
    cell = f"{DOCKER_VERSION}/{DOCKER_PLATFORM}/{host_arch()}"
    farm = Farm(store, store.as_uri(), source_mirror, dict(os.environ), cells=(cell,))
    started = time.monotonic()
    step = farm.run("--runner", "docker", "--arches", host_arch())
    print(f"docker farm run of {cell}: {time.monotonic() - started:.0f} s (image included)")
    assert step.returncode == 0, step.output[-6000:]
    assert step.build_of(cell) == 1
    return DockerFarm(store, step.output)
