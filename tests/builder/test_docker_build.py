"""The docker runner for debian-11 (bullseye), issue 12: a 3.13.5 `none` build in the debian-11
builder image (built as `buildfarm images build` builds it, its base imported from a
debootstrap root when missing), from the shared sources served over loopback HTTP, by
`buildfarm run --runner docker` into a local store (the session's `docker_farm`, whose store
the runtime job's test bootstraps from too: one bullseye build per session); the tarball then
runs in its own fresh bullseye root: a new container of the imported base image with only the
registry's runtime dependencies.

Needs a Docker engine (.ci/run starts one). The images stay in the engine (/var/lib/docker)
between runs, rebuilt only when their tag (a digest of builder_image/) changes; the build
uses the suite's compiler cache (BUILDFARM_CCACHE=1, mounted into the container), shared
with the chroot runner's bullseye build of the same version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildfarm import images
from buildfarm.models import Manifest
from buildfarm.platforms import load_registry
from buildfarm.runners import docker_problem, host_arch

pytestmark = [pytest.mark.build, pytest.mark.xdist_group("docker")]

REPO = Path(__file__).resolve().parents[2]
BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
TEST_CACHE = Path(os.environ.get("BUILDFARM_TEST_CACHE") or REPO / ".cache")
PLATFORM, ARCH, VERSION = "debian-11", host_arch(), "3.13.5"
TARBALL = f"python-{VERSION}-{PLATFORM}-{ARCH}.tar.gz"
SHORT_SELFTEST = "test_sqlite3 test_ctypes test_zlib test_lzma test_bz2 test_hashlib test_json"

# Runs in the fresh root: the declared runtime dependencies ("$@") and nothing else, then the
# tarball unpacked at a path of its own choosing, its interpreter importing the registry's
# modules ($MODULES) and running pip.
IN_FRESH_ROOT = r"""
set -euo pipefail
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
mkdir -p "/srv/any where"
tar -C "/srv/any where" -xzf "/artifacts/$TARBALL"
python="/srv/any where/python/bin/python3"
"$python" -c 'import importlib, os, sys
for name in os.environ["MODULES"].split():
    importlib.import_module(name)
print(sys.version.split()[0], sys.prefix)'
"$python" -m pip --version
"""


class DockerBuild:
    def __init__(self, store: Path, output: str) -> None:
        self.output = output  # the farm run's
        self.dir = store / "builds" / VERSION / PLATFORM / ARCH / "1"
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.log = (self.dir / "build.log").read_text()  # the driver's


@pytest.fixture(scope="module")
def base_image() -> str:
    if problem := docker_problem():
        pytest.skip(problem)  # a failure under CI (tests/ci_skips.py)
    registry = load_registry()
    base = registry.get(PLATFORM).base_image
    if not images.image_exists(base):
        images.import_base(registry, PLATFORM, ARCH, sys.stdout)
    return base


@pytest.fixture(scope="module")
def docker_build(docker_farm) -> DockerBuild:
    """The session's docker farm run (tests/builder/conftest.py: `buildfarm run --runner
    docker`, shared with the runtime job's test)."""
    return DockerBuild(docker_farm.store, docker_farm.output)


def test_docker_runner_builds_debian_11_in_its_builder_image(docker_build: DockerBuild) -> None:
    manifest = docker_build.manifest
    model = Manifest.model_validate(manifest)
    assert {a.file for a in model.artifacts} == {TARBALL, f"python-{VERSION}_1_amd64.deb"}
    assert f"{PLATFORM}/{ARCH}: docker runner" in docker_build.output
    # The image that built it: its tag (a digest of builder_image/) and its content id.
    tag = images.image_tag(load_registry(), PLATFORM, ARCH)
    assert manifest["builder_image"] == f"{tag}@{images.image_id(tag)}"
    assert manifest["platform"]["glibc"] == "glibc-2.31"  # bullseye's, not the host's
    assert manifest["python"]["compiler"].startswith("GCC 10.")
    assert manifest["modules"]["missing"] == {}
    assert "phase selftest done in" in docker_build.log


def test_tarball_runs_in_a_fresh_bullseye_root_with_only_its_declared_dependencies(
    docker_build: DockerBuild, base_image: str
) -> None:
    registry = load_registry()
    env = {
        "PATH": os.environ["PATH"],
        "TARBALL": TARBALL,
        "MODULES": " ".join(registry.expected_modules(PLATFORM)),
    }
    argv = ["docker", "run", "--rm", "--network", images.engine_network(), "-e", "TARBALL", "-e", "MODULES"]
    argv += ["-v", f"{docker_build.dir}:/artifacts:ro", base_image, "bash", "-c", IN_FRESH_ROOT, "bash"]
    argv += list(registry.get(PLATFORM).runtime_dependencies)
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.startswith(f"{VERSION} /srv/any where/python\n"), result.stdout
    assert "pip " in result.stdout
