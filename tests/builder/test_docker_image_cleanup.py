"""images._remove_older against the real engine: a new builder image removes its platform x
arch's older images and the platform's package-list stages left before it, and nothing else."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time

import pytest

from buildfarm import images
from buildfarm.runners import docker_problem

pytestmark = [pytest.mark.build, pytest.mark.xdist_group("docker")]

REPOSITORY = "buildfarm-cleanup-test"
# Platform ids of this test alone: the prune's label filter then cannot reach real stages.
PLATFORM, OTHER_PLATFORM = "cleanup-test-a", "cleanup-test-b"


def _docker(*argv: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(["docker", *argv], input=stdin, capture_output=True, check=True)
    return result.stdout.decode().strip()


def _import(tag: str, label: str | None = None) -> str:
    """A one-file image (its content names it, so no two are the same), tagged; its id."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        content = f"{tag} {label} {time.time_ns()}".encode()
        member = tarfile.TarInfo("id")
        member.size = len(content)
        archive.addfile(member, io.BytesIO(content))
    changes = ["--change", f"LABEL buildfarm.packages={label}"] if label else []
    return _docker("import", *changes, "-", tag, stdin=data.getvalue())


def _exists(reference: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", reference], capture_output=True).returncode == 0


def _stage(label: str) -> str:
    """A dangling image labelled as a package-list stage of platform `label`."""
    tag = f"{REPOSITORY}:stage-{time.time_ns()}"
    stage = _import(tag, label)
    _import(tag)  # takes the tag: the stage is left dangling
    return stage


@pytest.fixture
def engine():
    if problem := docker_problem():
        pytest.skip(problem)  # a failure under CI (tests/ci_skips.py)
    yield
    listed = _docker("images", "--all", "--quiet", "--no-trunc", REPOSITORY).split()
    for label in (PLATFORM, OTHER_PLATFORM):
        listed += _docker(
            "images", "--quiet", "--no-trunc", "--filter", f"label=buildfarm.packages={label}"
        ).split()
    if listed:
        subprocess.run(["docker", "rmi", "--force", *set(listed)], capture_output=True)


def test_a_new_image_removes_only_its_older_images_and_earlier_package_stages(engine) -> None:
    older, current = (f"{REPOSITORY}:{PLATFORM}-x86_64-{c * 12}" for c in "ab")
    other_arch = f"{REPOSITORY}:{PLATFORM}-aarch64-{'c' * 12}"
    other_platform = f"{REPOSITORY}:{OTHER_PLATFORM}-x86_64-{'d' * 12}"
    for tag in (older, current, other_arch, other_platform):
        _import(tag)
    earlier_stage, other_stage = _stage(PLATFORM), _stage(OTHER_PLATFORM)
    time.sleep(1.1)  # the engine's creation times have whole seconds in the filter
    started = int(time.time())
    time.sleep(1.1)
    concurrent_stage = _stage(PLATFORM)  # another build's, after this one started

    images._remove_older(current, PLATFORM, started)

    assert not _exists(older) and not _exists(earlier_stage)
    assert all(map(_exists, (current, other_arch, other_platform, other_stage, concurrent_stage)))
