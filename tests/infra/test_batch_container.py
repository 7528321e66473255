"""The cloud's builder container, run as Batch runs it (issue 12): the debian-12 builder image
built from builder_image/ with the stack's arguments, one cell built in it with the job
definition's environment and BUILD_SPEC, uploading create-only to an S3 store (moto's server
on loopback, AWS_ENDPOINT_URL), then published by the workflow's own publish_cell.

Needs a Docker engine (.ci/run starts one). Two additions to the job definition, for time
only: a short self-test list (the full one runs in tests/builder) and the loopback mirror.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from buildfarm import images
from buildfarm.config import FarmConfig
from buildfarm.plan import plan
from buildfarm.platforms import load_registry
from buildfarm.publish import publish_cell
from buildfarm.runners import docker_problem, host_arch
from buildfarm.store import S3Store
from buildfarm.workflow_names import STACK_NAME

pytestmark = [pytest.mark.build, pytest.mark.xdist_group("docker")]
# The day the plan and the publish record: a fixed one, not the machine's (the cell is named).
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

BUCKET = "farm-store"
PLATFORM, ARCH = "debian-12", host_arch()
# The suite's cache directory (tests/conftest.py's TEST_CACHE).
TEST_CACHE = Path(os.environ.get("BUILDFARM_TEST_CACHE") or Path(__file__).resolve().parents[2] / ".cache")
SHORT_SELFTEST = "test_sqlite3 test_ctypes test_zlib test_lzma test_json"


@pytest.fixture(scope="module")
def builder_image() -> str:
    if problem := docker_problem():
        pytest.skip(problem)  # a failure under CI (tests/ci_skips.py)
    registry = load_registry()
    if not images.image_exists(registry.get(PLATFORM).base_image):
        images.import_base(registry, PLATFORM, ARCH, sys.stdout)
    return images.build_image(registry, PLATFORM, ARCH, sys.stdout)


@pytest.fixture
def s3_endpoint(moto_server: str) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return moto_server


def job_container(template: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The container environment and user of the stack's debian-12 job definition for this arch."""
    (job,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Batch::JobDefinition"
        and r["Properties"]["JobDefinitionName"] == f"{STACK_NAME}-{PLATFORM}-{ARCH}"
    ]
    container = job["ContainerProperties"]
    return {e["Name"]: e["Value"] for e in container["Environment"]}, container["User"]


def job_user_ccache(uid: int, gid: int) -> Path:
    """The job user's compiler cache under the suite's cache directory, owned by that user.
    Made on a machine's first run as a copy of the suite's own cache (TEST_CACHE/ccache), which
    by then usually holds the host runner's build of the same release with the same GCC and
    headers as the image's: a bare machine's CI then compiles 3.13.5 for debian-12 once, not
    twice (a copy, not the suite's cache itself, which root's builds write). A file that
    vanishes while it is copied (a build beside this test) is a miss, not an error."""
    ccache = TEST_CACHE / "ccache-batch-job"
    suite_cache = TEST_CACHE / "ccache"
    if not ccache.exists() and suite_cache.is_dir():
        partial = ccache.with_name(ccache.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with contextlib.suppress(shutil.Error):
            shutil.copytree(suite_cache, partial, symlinks=True)
        if os.geteuid() == 0:
            for path in partial.rglob("*"):
                os.chown(path, uid, gid, follow_symlinks=False)
        partial.rename(ccache)
    ccache.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(ccache, uid, gid)
    return ccache


def run_as_batch(image: str, container_env: dict[str, str], user: str) -> tuple[Path, int]:
    """The image as Batch runs it: its entrypoint, no command, the spec in the environment only,
    as the job definition's user. One addition Batch does not make: a compiler cache, mounted,
    so that CI's runs on this machine recompile little (the build and its checks are the same
    either way): the job user's own (job_user_ccache). (The cache, the user's uid.)"""
    uid, gid = (int(part) for part in user.split(":"))
    ccache = job_user_ccache(uid, gid)
    container_env = {**container_env, "BUILDFARM_CCACHE": "1", "CCACHE_DIR": "/buildfarm/ccache"}
    argv = ["docker", "run", "--rm", "--network", images.engine_network(), "--user", user]
    argv += ["--volume", f"{ccache}:/buildfarm/ccache"]
    for name in container_env:
        argv += ["-e", name]
    result = subprocess.run(
        [*argv, image],
        env={"PATH": os.environ["PATH"], **container_env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return ccache, uid


def test_a_cell_built_in_the_batch_container_is_create_only_and_published(
    template: dict[str, Any], builder_image: str, s3_endpoint: str, source_mirror: str, monkeypatch
) -> None:
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")  # offline: the seed catalog
    store = S3Store(BUCKET, "python", client=boto3.client("s3"))
    config = FarmConfig.defaults(store=store.location, source_mirror=source_mirror, optimization="none")
    request = {"versions": ["3.13.5"], "platforms": [PLATFORM], "arches": [ARCH]}
    (item,) = plan(request, store, config, "batch-test", NOW).items

    environment, user = job_container(template)
    assert set(environment) == {"BUILDFARM_PLATFORM", "BUILDFARM_ARCH", "BUILDFARM_BUILDER_IMAGE"}
    image_id = images.image_id(builder_image)
    container_env = {
        **{k: v for k, v in environment.items() if isinstance(v, str)},
        "BUILDFARM_BUILDER_IMAGE": image_id,  # the job definition passes its image reference
        "BUILD_SPEC": item.spec.model_dump_json(),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "BUILDFARM_SELFTEST_TESTS": SHORT_SELFTEST,
    }
    ccache, uid = run_as_batch(builder_image, container_env, user)
    # The compiles ran as the job definition's user: every cache file is the user's.
    assert {path.stat().st_uid for path in ccache.rglob("*")} == {uid}

    manifest, _ = store.read_json(f"{item.spec.artifact_dir}/manifest.json")
    assert manifest["builder_image"] == image_id
    assert manifest["spec"] == json.loads(item.spec.model_dump_json())
    outcome = publish_cell(item, store, NOW, signer=None)
    assert outcome.status == "published", outcome
    versions, _ = store.read_json("versions.json")
    assert versions["builds"]["3.13.5"][PLATFORM][ARCH]["build"] == item.spec.build

    # Create-only: a second upload of any of the build's keys is refused.
    s3 = boto3.client("s3")
    for artifact in ("manifest.json", *(a["file"] for a in manifest["artifacts"])):
        key = f"python/{item.spec.artifact_dir}/{artifact}"
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"replaced", IfNoneMatch="*")
        assert refused.value.response["Error"]["Code"] == "PreconditionFailed", key
