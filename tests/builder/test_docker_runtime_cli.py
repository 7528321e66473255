"""`buildfarm runtime build --runner docker`, for real: a one-package runtime for debian-11
(bullseye) built from this machine in bullseye's builder image, the cloud's runtime item argv
as the image's command (its build.py bootstraps the tool Python from the store, which is
mounted at its own path), stored in the store (published into versions.json by a run or the
cloud's PublishRuntime, not by this command); and the same command without --runner docker
refused in one line on a machine that is not debian-11, writing nothing.

The store is the session's docker_farm (tests/builder/conftest.py: 3.13.5 for debian-11 built
by `buildfarm run --runner docker`, shared with test_docker_build and test_docker_runtime_job).
The runtime's version (1.1.0) is its own (test_docker_runtime_job's tiny 1.0.0 goes to an S3
store). PyPI serves the buildfarm wheel's dependencies and six. Needs a Docker engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_definitions import write_tiny_definitions

from buildfarm.platforms import load_registry
from buildfarm.runners import host_arch, host_platform_id

pytestmark = [pytest.mark.build, pytest.mark.xdist_group("docker")]

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
PLATFORM, ARCH, VERSION, RUNTIME_VERSION = "debian-11", host_arch(), "3.13.5", "1.1.0"


def write_definitions(directory: Path) -> Path:
    return write_tiny_definitions(directory, RUNTIME_VERSION, PLATFORM, ARCH)


def runtime_build(store: Path, definitions: Path, *runner: str) -> subprocess.CompletedProcess:
    argv = [BUILDFARM, "runtime", "build", "tiny", "--platform", PLATFORM, "--arch", ARCH,
            "--store", str(store), "--definitions", str(definitions), *runner]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    print(result.stdout + result.stderr)
    return result


def test_runner_docker_builds_bullseyes_runtime_here_and_the_host_refuses_it(docker_farm, tmp_path):
    store = docker_farm.store
    definitions = write_definitions(tmp_path / "definitions")
    cell = store / "runtimes" / "tiny" / RUNTIME_VERSION / PLATFORM / ARCH

    here = host_platform_id(load_registry())
    if here != PLATFORM:  # a bullseye machine may build it itself
        refused = runtime_build(store, definitions)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"buildfarm runtime: error: runtime build for {PLATFORM}/{ARCH} must run on {PLATFORM} "
            f"(this machine is {here or 'not a registered platform'}): use --runner docker"
        ]
        assert not cell.exists()

    result = runtime_build(store, definitions, "--runner", "docker")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert f"buildfarm: tool python: Python {VERSION} build 1 of {PLATFORM}/{ARCH}" in output
    (directory,) = cell.iterdir()
    # The container's path is this machine's; by hand, a standalone build (a run publishes its own).
    assert f"stored {directory.as_uri()}/ (standalone: not published)" in result.stdout
    manifest = json.loads((directory / "manifest.json").read_text())
    assert (manifest["platform"], manifest["arch"]) == (PLATFORM, ARCH)
    assert (manifest["python"]["version"], manifest["runtime"]["version"]) == (VERSION, RUNTIME_VERSION)
    assert [(p["name"], p["version"]) for p in manifest["packages"]] == [("six", "1.17.0")]
    assert manifest["selftest"]["imports"] == ["six"]
    assert {path.name for path in directory.iterdir()} >= {a["file"] for a in manifest["artifacts"]}
