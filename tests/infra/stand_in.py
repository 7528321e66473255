"""The stand-in builder of the moto farm (moto_farm.py): Batch runs no containers in moto, so
each job finishes here (`moto_patches.batch_jobs_finish_with`). At submit time it reads
BUILD_SPEC from the job's environment and writes what the real builder would: the artifacts and
manifest.json under the spec's artifact_dir (or, for cells listed in FAILING, a
logs/.../failure.json), and the job ends SUCCEEDED (or FAILED). A runtime job (no BUILD_SPEC;
its command is the item's `buildfarm runtime build ... --build N` argv) writes the runtime
build that command names. It also counts the jobs and Lambda invocations in flight, which a
stopped execution leaves running (ACTIVITY, Farm.wait_quiet)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

from buildfarm.platforms import DEB_ARCH, RPM_ARCH, load_registry
from buildfarm.runtimes.definitions import find_definition
from buildfarm.runtimes.python_source import newest_published

REGION = "us-east-1"
ACCOUNT = "123456789012"
# The moment the farm's handlers see (buildfarm.clock, set by the farm fixtures): noon on the
# day the session's synthesis used (conftest.LIFECYCLE_DATE), so that what {} plans does not
# depend on the day the tests run.
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

FAILING: dict[str, str] = {}  # cell -> reason: the stand-in fails these
SUBMITTED: list[dict[str, Any]] = []  # every spec the stand-in received
# cell -> event: the stand-in writes that cell's build, then waits for the event before its job
# ends (a build that finished while its execution is being stopped).
HOLD: dict[str, threading.Event] = {}
# In moto as in AWS, a stopped execution's jobs and Lambda invocations run on to their end, on
# their own threads. ACTIVITY is notified whenever one starts or ends, a stand-in build is
# written (BUILT) or a held job starts waiting (WAITING); Farm.wait_quiet waits for them all.
ACTIVITY = threading.Condition()
WAITING: list[str] = []
BUILT: list[str] = []
_IN_FLIGHT = [0]  # jobs and invocations running now (under ACTIVITY)
RUNTIME_COMMANDS: list[list[str]] = []  # every runtime job's command (ContainerOverrides.Command)
RUNTIME_DEFINITIONS: list[Path] = []  # the runtime stand-in's definitions (a test sets the one)
_JOB = threading.local()  # the command of the job being finished (moto passes its environment)


def reset_stand_in() -> None:
    FAILING.clear()
    SUBMITTED.clear()
    HOLD.clear()
    WAITING.clear()
    BUILT.clear()
    RUNTIME_COMMANDS.clear()
    RUNTIME_DEFINITIONS.clear()
    _stand_in_s3.cache_clear()


class _StandInS3:
    """Writes straight into moto's S3 backend (the builder's uploads; cheaper than boto3 here)."""

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        s3_backends[ACCOUNT][get_partition(REGION)].put_object(Bucket, Key, Body)


@functools.cache
def _stand_in_s3() -> _StandInS3:
    return _StandInS3()


def stand_in_build(spec: dict[str, Any], builder_image: str = "stand-in") -> tuple[bool, str]:
    """Write a build's outputs into the store as the builder would; (succeeded, status reason)."""
    s3 = _stand_in_s3()
    bucket = spec["store"].removeprefix("s3://").split("/", 1)[0]
    version, platform, arch, build = spec["version"], spec["platform"], spec["arch"], spec["build"]
    cell = f"{version}/{platform}/{arch}"
    if cell in FAILING:
        failure = {"spec": spec, "phase": "self-test", "reason": FAILING[cell]}
        key = f"logs/{version}/{platform}/{arch}/{build}/failure.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(failure).encode())
        return False, "Essential container in task exited"
    family = load_registry().get(platform).family
    package = (
        f"python-{version}_{build}_{DEB_ARCH[arch]}.deb"
        if family == "deb"
        else f"python-{version}-{build}.{RPM_ARCH[arch]}.rpm"
    )
    files = {
        f"python-{version}-{platform}-{arch}.tar.gz": (
            "tarball",
            f"tarball of {cell} build {build}".encode(),
        ),
        package: (family, f"{family} package of {cell} build {build}".encode()),
    }
    artifacts = []
    for name, (kind, data) in files.items():
        s3.put_object(Bucket=bucket, Key=f"{spec['artifact_dir']}/{name}", Body=data)
        artifacts.append(
            {"type": kind, "file": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        )
    # As the driver: the spec exactly as given (execution_id included), the job's image reference.
    distro_id, _, distro_version = platform.rpartition("-")
    manifest = {
        "schema_version": 1,
        "spec": spec,
        "artifacts": artifacts,
        "builder_image": builder_image,
        # What the publish side's SBOM and provenance are made of (buildfarm.attest.build_files).
        "built_at": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timings": {"fetch": 1.0, "make": 60.0},
        "sbom_facts": {"distro_id": distro_id, "distro_version": distro_version},
    }
    s3.put_object(
        Bucket=bucket, Key=f"{spec['artifact_dir']}/manifest.json", Body=json.dumps(manifest).encode()
    )
    return True, "Essential container in task exited"


def stand_in_runtime_build(command: list[str]) -> tuple[bool, str]:
    """What `buildfarm runtime build NAME --platform P --arch A --runtime-version V --build N
    --store S` publishes: its tarball, then manifest.json (runtimes.package's shape), at build N,
    made with the newest published Python of the definition's series and its lock's digest."""
    assert command[:3] == ["buildfarm", "runtime", "build"], command
    name, options = command[3], dict(zip(command[4::2], command[5::2], strict=True))
    cell = (name, options["--runtime-version"], options["--platform"], options["--arch"])
    bucket = options["--store"].removeprefix("s3://").split("/", 1)[0]
    (definitions,) = RUNTIME_DEFINITIONS
    definition = find_definition(name, definitions)
    backend = s3_backends[ACCOUNT][get_partition(REGION)]
    catalog = json.loads(backend.get_object(bucket, "versions.json").value)
    python = newest_published(catalog, definition.python, cell[2], cell[3])
    assert python is not None, cell
    directory = "runtimes/" + "/".join(cell) + f"/{options['--build']}"
    tarball = f"runtime {'/'.join(cell)} build {options['--build']}".encode()
    s3 = _stand_in_s3()
    s3.put_object(Bucket=bucket, Key=f"{directory}/runtime-{name}.tar.gz", Body=tarball)
    manifest = {
        "schema_version": 1,
        "runtime": {"name": name, "version": cell[1], "prefix": f"/opt/runtimes/{name}/{cell[1]}"},
        "platform": cell[2], "arch": cell[3], "build": int(options["--build"]),
        "execution_id": options["--execution-id"],
        "python": {"version": python.version, "build": python.build},
        "requirements": {"kind": definition.lock_kind, "sha256": definition.lock_sha256()},
        "artifacts": [{"type": "tarball", "file": f"runtime-{name}.tar.gz",
                       "sha256": hashlib.sha256(tarball).hexdigest(), "size": len(tarball)}],
    }  # fmt: skip
    s3.put_object(Bucket=bucket, Key=f"{directory}/manifest.json", Body=json.dumps(manifest).encode())
    return True, "Essential container in task exited"


@contextlib.contextmanager
def jobs_show_their_command() -> Iterator[None]:
    """Inside moto_patches.batch_jobs_finish_with: the finisher sees the job's environment only;
    the runtime stand-in needs its command too (the submit's ContainerOverrides.Command)."""
    from moto.batch_simple.models import BatchSimpleBackend

    finishing = BatchSimpleBackend._mark_job_as_finished

    def with_command(self: BatchSimpleBackend, include_start_attempt: bool, job: Any) -> None:
        _JOB.command = list((job.container_overrides or {}).get("command") or [])
        finishing(self, include_start_attempt, job)

    with mock.patch.object(BatchSimpleBackend, "_mark_job_as_finished", with_command):
        yield


@contextlib.contextmanager
def _running() -> Iterator[None]:
    """Count a job or an invocation as running while the block runs."""
    with ACTIVITY:
        _IN_FLIGHT[0] += 1
    try:
        yield
    finally:
        with ACTIVITY:
            _IN_FLIGHT[0] -= 1
            ACTIVITY.notify_all()


def _noted(events: list[str], cell: str) -> None:
    with ACTIVITY:
        events.append(cell)
        ACTIVITY.notify_all()


def finish_job(environment: dict[str, str]) -> tuple[bool, str]:
    """How a farm job ends (moto_patches.batch_jobs_finish_with): the stand-in builds the
    job's BUILD_SPEC (a runtime job, without one: its command); a cell in HOLD then waits for
    its event before the job ends."""
    with _running():
        if "BUILD_SPEC" not in environment:
            RUNTIME_COMMANDS.append(_JOB.command)
            return stand_in_runtime_build(_JOB.command)
        spec = json.loads(environment["BUILD_SPEC"])
        SUBMITTED.append(spec)
        succeeded, reason = stand_in_build(spec, environment.get("BUILDFARM_BUILDER_IMAGE", "stand-in"))
        cell = f"{spec['version']}/{spec['platform']}/{spec['arch']}"
        _noted(BUILT, cell)
        if cell in HOLD:
            _noted(WAITING, cell)
            HOLD[cell].wait(timeout=120)
        return succeeded, reason


@contextlib.contextmanager
def invocations_counted() -> Iterator[None]:
    """Each Lambda invocation (the real handler, moto_patches.lambda_runs_real_handlers, which
    is entered first) counts as running while it runs."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    invoke = LambdaSimpleBackend.invoke

    def counted(self: LambdaSimpleBackend, *args: Any, **kwargs: Any) -> Any:
        with _running():
            return invoke(self, *args, **kwargs)

    with mock.patch.object(LambdaSimpleBackend, "invoke", counted):
        yield


def wait_quiet(timeout: float) -> bool:
    """Wait until no job or Lambda invocation runs; False if some still run after timeout s."""
    with ACTIVITY:
        return ACTIVITY.wait_for(lambda: _IN_FLIGHT[0] == 0, timeout=timeout)


def in_flight() -> int:
    with ACTIVITY:
        return _IN_FLIGHT[0]
