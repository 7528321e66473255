"""A cloud runtime job, for real, in the debian-11 (bullseye) builder image, whose system python
(3.9) cannot run buildfarm: the cloud planner (plan_runtime_items) claims a one-package runtime
cell in an S3 store (moto's server on loopback, as the cloud has it) where 3.13.5 for debian-11
is published, its item's command runs as the image's command (`docker run IMAGE buildfarm
runtime build ...`, as Batch runs it), bootstrapping the tool Python from that store, and
PublishRuntime's decide_runtime_item publishes the build, and `buildfarm verify` accepts the
store with the runtime in it. (The same command against a mounted directory store is
`buildfarm runtime build --runner docker`'s, in test_docker_runtime_cli.)

The store's Python is built by `buildfarm run --runner docker` in the same image (optimization
none, the suite's compiler cache; tests/builder/conftest.py's docker_farm, once per
session); PyPI serves the buildfarm wheel's dependencies and six.
Needs a Docker engine (.ci/run starts one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from runtime_definitions import write_tiny_definitions

from buildfarm import images
from buildfarm.config import FarmConfig
from buildfarm.platforms import load_registry
from buildfarm.runners import host_arch
from buildfarm.runtimes.cloud_items import decide_runtime_item, plan_runtime_items
from buildfarm.runtimes.definitions import load_definitions
from buildfarm.store import S3Store

pytestmark = [pytest.mark.build, pytest.mark.xdist_group("docker")]

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
PLATFORM, ARCH, VERSION = "debian-11", host_arch(), "3.13.5"
NOW = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def python_store(docker_farm) -> Path:
    """A store where `buildfarm run --runner docker` published 3.13.5 for debian-11 (the
    session's docker_farm, shared with test_docker_build)."""
    return docker_farm.store


def write_definitions(directory: Path) -> Path:
    return write_tiny_definitions(directory, "1.0.0", PLATFORM, ARCH)


def run_job(command: list[str], definitions: Path, mounts: list[str], **env: str) -> str:
    """The item's command as the builder image's command, as Batch runs it (as the job
    definitions' unprivileged user); its output."""
    tag = images.build_image(load_registry(), PLATFORM, ARCH, sys.stdout)
    environment = {"BUILDFARM_RUNTIMES": str(definitions), **env}
    argv = ["docker", "run", "--rm", "--network", images.engine_network(), "--user", images.JOB_USER]
    for name in environment:
        argv += ["-e", name]
    for mount in [f"{definitions}:{definitions}:ro", *mounts]:
        argv += ["-v", mount]
    result = subprocess.run(
        [*argv, tag, *command], env={"PATH": os.environ["PATH"], **environment},
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, output[-6000:]
    assert f"buildfarm: tool python: Python {VERSION} build 1 of {PLATFORM}/{ARCH}" in output
    return output


def test_the_runtime_job_reads_and_writes_an_s3_store(
    python_store: Path, tmp_path: Path, moto_server: str, session_signer
):
    """The cloud's store: the tool Python and the runtime's Python from S3 (the image's boto3,
    then the tool's), the runtime's files back to S3, PublishRuntime's decision there."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="farm-store")
    store = S3Store("farm-store", "python", client=s3)
    for path in (p for p in (python_store / "builds").rglob("*") if p.is_file()):
        store.put(path.relative_to(python_store).as_posix(), path.read_bytes())
    versions = json.loads((python_store / "versions.json").read_text())
    versions.pop("runtimes", None)  # test_docker_runtime_cli publishes tiny 1.1.0 there
    store.put_json("versions.json", versions)
    definitions = write_definitions(tmp_path / "definitions")
    config = FarmConfig.from_env(store=store.location)
    items, _ = plan_runtime_items(
        store, config, load_definitions(definitions), {(PLATFORM, ARCH)}, "runtime-image-s3", NOW
    )
    (item,) = items
    assert item.command[-2:] == ["--store", "s3://farm-store/python"]
    credentials = {
        name: os.environ[name] for name in os.environ if name.startswith("AWS_") and "CA" not in name
    }
    run_job(item.command, definitions, [], **credentials)
    directory = f"runtimes/tiny/1.0.0/{PLATFORM}/{ARCH}/{item.build}"
    manifest, _ = store.read_json(f"{directory}/manifest.json")
    assert manifest["python"]["version"] == VERSION and manifest["platform"] == PLATFORM
    assert [(p["name"], p["version"]) for p in manifest["packages"]] == [("six", "1.17.0")]
    for artifact in manifest["artifacts"]:
        assert store.exists(f"{directory}/{artifact['file']}"), artifact
    outcome = decide_runtime_item(store, item, NOW, signer=session_signer)
    assert outcome.status == "published", outcome.reason
    versions, _ = store.read_json("versions.json")
    assert versions["runtimes"]["tiny"]["1.0.0"][PLATFORM][ARCH]["build"] == item.build
    # The store as the cloud left it verifies: versions.json's signature and every build and
    # runtime it lists (copied out first: verify reads a directory or an http(s) URL).
    copy = tmp_path / "store"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="farm-store", Prefix="python/"):
        for entry in page.get("Contents", []):
            target = copy / entry["Key"].removeprefix("python/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket="farm-store", Key=entry["Key"])["Body"].read())
    key = subprocess.run([BUILDFARM, "keys", "show"], capture_output=True, text=True, check=True)
    verified = subprocess.run(
        [BUILDFARM, "verify", str(copy), "--pubkey", key.stdout.strip()], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
