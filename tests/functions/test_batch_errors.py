"""A failed Batch job's error, as the workflow's Catch hands it to the publishers (Step
Functions' {"Error", "Cause"} as JSON text, its Cause the job's description as JSON text
again, PascalCase as Step Functions passes DescribeJobs' answer), becomes one readable line:
the job, Batch's reason, the last attempt's exit code and container reason, the attempts, the
log stream. The failed cell's reason (the mail, `status`, the page) is that line, not the first
500 characters of nested JSON."""

from __future__ import annotations

import json

import pytest

from buildfarm.batch_errors import batch_job_line, describe_batch_error
from buildfarm.layout import failure_key
from buildfarm.plan import plan
from buildfarm.publish import BatchOutcome, publish_cell
from buildfarm.runtimes.cloud_items import runtime_job_failure
from buildfarm.verify import MAX_REASON

from .conftest import NOW

JOB_ID = "4c0e1b52-8a1f-4d2e-9f6a-0b7c3d2e1a90"
STREAM = "pbf-debian-12-x86_64/default/0f3e6a1b2c4d4e5f8a9b0c1d2e3f4a5b"


def _container(exit_code: int | None, reason: str | None = None, stream: str | None = STREAM) -> dict:
    container: dict = {
        "ContainerInstanceArn": "arn:aws:ecs:us-east-1:123456789012:container-instance/farm/0a1b",
        "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/farm/0f3e6a1b2c4d4e5f8a9b0c1d2e3f4a5b",
        "NetworkInterfaces": [],
    }
    if exit_code is not None:
        container["ExitCode"] = exit_code
    if reason:
        container["Reason"] = reason
    if stream:
        container["LogStreamName"] = stream
    return container


def _caught(job: dict, error: str = "States.TaskFailed") -> str:
    """The workflow's batch.error: the Catch's error object as JSON (States.JsonToString)."""
    return json.dumps({"Error": error, "Cause": json.dumps(job)})


def _job(status_reason: str, attempts: list[dict], **more: object) -> dict:
    return {
        "JobArn": f"arn:aws:batch:us-east-1:123456789012:job/{JOB_ID}",
        "JobId": JOB_ID,
        "JobName": "pbf-debian-12-x86_64-build1",
        "JobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/pbf-x86_64",
        "Status": "FAILED",
        "StatusReason": status_reason,
        "Attempts": attempts,
        "CreatedAt": 1764700000000,
        "JobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/pbf-debian-12-x86_64:3",
        "Container": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/cdk-assets:abc", "Vcpus": 8,
                      "Memory": 15360, "Environment": [{"Name": "BUILD_SPEC", "Value": "{...}"}] * 20},
        **more,
    }  # fmt: skip


def _attempt(container: dict, reason: str) -> dict:
    return {
        "Container": container,
        "StartedAt": 1764700100000,
        "StoppedAt": 1764700900000,
        "StatusReason": reason,
    }


EXITED = "Essential container in task exited"
OOM = _job(
    EXITED, [_attempt(_container(137, "OutOfMemoryError: Container killed due to memory usage"), EXITED)]
)
SPOT = _job(
    "Host EC2 (instance i-012345670) terminated.",
    [
        _attempt(_container(None, None, f"{STREAM}{n}"), f"Host EC2 (instance i-01234567{n}) terminated.")
        for n in range(3)
    ],
)  # fmt: skip
NEVER_PLACED = _job("Job cancelled: it stayed RUNNABLE past the job state time limit", [])


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            OOM,
            f"Batch job {JOB_ID} failed: Essential container in task exited; exit 137 (OutOfMemoryError: "
            f"Container killed due to memory usage); log stream {STREAM}",
        ),
        (
            SPOT,
            f"Batch job {JOB_ID} failed: Host EC2 (instance i-012345670) terminated.; attempts: 3; "
            f"log stream {STREAM}2",
        ),
        (
            NEVER_PLACED,
            f"Batch job {JOB_ID} failed: Job cancelled: it stayed RUNNABLE past the job state time limit",
        ),
    ],
    ids=["out-of-memory", "spot-reclaimed-every-attempt", "never-placed"],
)
def test_a_failed_jobs_description_becomes_one_line(job: dict, expected: str) -> None:
    assert describe_batch_error(_caught(job)) == expected


def test_batchs_own_camel_case_reads_the_same() -> None:
    camel = {"jobId": JOB_ID, "status": "FAILED", "statusReason": "Essential container in task exited",
             "attempts": [{"container": {"exitCode": 2, "logStreamName": STREAM}}]}  # fmt: skip
    assert describe_batch_error(_caught(camel)) == (
        f"Batch job {JOB_ID} failed: Essential container in task exited; exit 2; log stream {STREAM}"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # A Task error whose Cause is text, not a job (Batch refused the submit).
        (
            json.dumps(
                {"Error": "Batch.ClientException", "Cause": "Job definition not found (Service: Batch)"}
            ),
            "Batch.ClientException: Job definition not found (Service: Batch)",
        ),
        (json.dumps({"Error": "States.Timeout"}), "States.Timeout"),
        ("Batch job OOM-killed", "Batch job OOM-killed"),  # not JSON: as it is
        ("[1, 2]", "[1, 2]"),
        (json.dumps({"Error": "States.TaskFailed", "Cause": "{not json"}), "States.TaskFailed: {not json"),
    ],
)
def test_anything_else_is_said_as_it_is(error: str, expected: str) -> None:
    assert describe_batch_error(error) == expected


def test_a_cell_whose_job_failed_fails_with_the_readable_line(local_store, config) -> None:
    """A real publish: the job left no manifest and no failure.json (killed outright), so the
    cell's reason is what Batch said, readable, and within MAX_REASON."""
    item = next(i for i in plan({"versions": ["3.13.5"], "platforms": ["debian-12"]}, local_store, config,
                                "exec-1", NOW).items if i.cell.endswith("x86_64"))  # fmt: skip
    outcome = publish_cell(
        item, local_store, NOW, BatchOutcome(status="failed", error=_caught(OOM)), signer=None
    )
    assert outcome.status == "failed"
    assert outcome.reason.startswith(
        f"Batch job {JOB_ID} failed: Essential container in task exited; exit 137"
    )
    assert "{" not in outcome.reason and len(outcome.reason) <= MAX_REASON


def test_a_runtime_job_failure_is_read_the_same_way() -> None:
    reason = runtime_job_failure(BatchOutcome(status="failed", error=_caught(OOM)))
    assert reason.startswith(f"build job failed: Batch job {JOB_ID} failed: ") and "exit 137" in reason
    assert runtime_job_failure(BatchOutcome(status="succeeded", job_id=JOB_ID)) == ""


def test_a_builders_record_comes_first_and_batch_says_which_job_and_log(local_store, config) -> None:
    """A Spot-reclaimed first attempt wrote the build's failure record ("interrupted"); the
    second attempt of the same build failed for real and could not replace it. The cell's
    reason keeps the builder's record and adds Batch's account: the job, its two attempts,
    the last attempt's exit code and log stream, where the real failure is."""
    item = next(i for i in plan({"versions": ["3.13.5"], "platforms": ["debian-12"]}, local_store, config,
                                "exec-1", NOW).items if i.cell.endswith("x86_64"))  # fmt: skip
    spec = item.spec
    record = {"phase": "make", "reason": "interrupted (SIGTERM)"}
    local_store.put_json(failure_key(spec.version, spec.platform, spec.arch, spec.build), record)
    job = _job(
        EXITED,
        [
            _attempt(_container(None, None, f"{STREAM}0"), "Host EC2 (instance i-012345670) terminated."),
            _attempt(_container(2, None, f"{STREAM}1"), EXITED),
        ],
    )
    outcome = publish_cell(
        item, local_store, NOW, BatchOutcome(status="failed", error=_caught(job)), signer=None
    )
    assert outcome.reason == (
        f"make: interrupted (SIGTERM); Batch job {JOB_ID} failed: {EXITED}; exit 2; attempts: 2; "
        f"log stream {STREAM}1"
    )
    # A local run's outcome is no Batch job: the record alone, as before.
    assert batch_job_line("driver exited with status 1") is None
