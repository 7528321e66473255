"""The workflow runs: the state machine definition from the synthesized template, its tokens
resolved against resources created in moto, executed by moto's Step Functions interpreter with
the real plan and publish handlers.

moto 5.2.5 needs four small patches, all in this module and pinned to that version:

1. Lambda: moto's Docker-less Lambda echoes its input; here it imports the function's real
   handler (template Handler) and calls it in-process with the event, a context and the
   function's environment (from the template).
2. Batch (no containers): a stand-in for the builder. At submit time it reads BUILD_SPEC from
   the job's environment and writes what the real builder would: the artifacts, SHA256SUMS and
   manifest.json under the spec's artifact_dir (or, for cells listed in FAILING, a
   logs/.../failure.json) and finishes the job SUCCEEDED (or FAILED).
3. Step Functions `batch:submitJob.sync` (moto issue #10076): moto passes the state's
   SFN-cased parameters (JobName, JobQueue, ContainerOverrides.Environment[].Name, ...) to boto3
   unchanged, and reads `JobId` from boto3's camelCase answer. The patch maps parameters and
   answers through botocore's shapes, as AWS Step Functions does.
4. moto's ASL grammar rejects the integer literal in `"ToleratedFailurePercentage": 100`; the
   definition is given to moto with the same number written as 100.0.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import io
import json
import os
import re
import threading
import time
import traceback
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import botocore.session
import moto
import pytest
from botocore import xform_name
from moto import mock_aws

from buildfarm.config import FarmConfig
from buildfarm.platforms import DEB_ARCH, RPM_ARCH, load_registry
from buildfarm.policy import select_cells
from buildfarm.releases import Release, ReleaseCatalog, load_seed
from buildfarm.workflow_input import WorkflowInput

assert moto.__version__ == "5.2.5", f"these patches are written for moto 5.2.5, not {moto.__version__}"

from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: E402
from moto.batch_simple.models import BatchSimpleBackend  # noqa: E402
from moto.s3.models import s3_backends  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (  # noqa: E402
    StateTaskServiceBatch,
)
from moto.utilities.utils import get_partition  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "buildfarm-store"
CDN_DOMAIN = "d111111abcdef8.cloudfront.net"
MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}

# -- patch 1: Lambda runs the real handler ----------------------------------------------------

_environ_lock = threading.Lock()


class LambdaContext:
    """What Powertools reads from the Lambda context."""

    def __init__(self, function_name: str, arn: str, memory: int, timeout: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = memory
        self.aws_request_id = hashlib.sha1(f"{arn}{time.time_ns()}".encode()).hexdigest()
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "test"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _invoke_real_handler(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> bytes:
    fn = self.get_function(function_name, qualifier)
    module_name, _, attribute = fn.handler.rpartition(".")
    event = json.loads(body) if body else {}
    environment = {
        **fn.environment_vars,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
    }
    context = LambdaContext(fn.function_name, fn.function_arn, int(fn.memory_size), int(fn.timeout))
    # Handlers read their configuration from os.environ, as in Lambda. Invocations here are
    # serial (Plan, then Publish); the lock keeps it that way.
    with _environ_lock, mock.patch.dict(os.environ, environment):
        try:
            handler = getattr(importlib.import_module(module_name), attribute)
            result = handler(event, context)
        except Exception as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_exception(error)[-5:],
                }
            ).encode()
    return json.dumps(result).encode()


# -- patch 2: Batch jobs run a stand-in builder -------------------------------------------

FAILING: dict[str, str] = {}  # cell -> reason: the stand-in fails these
SUBMITTED: list[dict[str, Any]] = []
STANDIN_TIME: list[float] = []  # every spec the stand-in received


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
    sums = "".join(f"{a['sha256']}  {a['file']}\n" for a in artifacts).encode()
    s3.put_object(Bucket=bucket, Key=f"{spec['artifact_dir']}/SHA256SUMS", Body=sums)
    # As the driver: the spec exactly as given (execution_id included), the job's image reference.
    manifest = {"schema_version": 1, "spec": spec, "artifacts": artifacts, "builder_image": builder_image}
    s3.put_object(
        Bucket=bucket, Key=f"{spec['artifact_dir']}/manifest.json", Body=json.dumps(manifest).encode()
    )
    return True, "Essential container in task exited"


def _finish_with_stand_in(self: BatchSimpleBackend, include_start_attempt: bool, job: Any) -> None:
    self.backend._jobs[job.job_id] = job
    job.job_started_at = datetime.now()
    job.log_stream_name = job._stream_name
    if include_start_attempt:
        job._start_attempt()
    environment = {
        e["name"]: e["value"]
        for e in [
            *job.job_definition.container_properties.get("environment", []),
            *job.container_overrides.get("environment", []),
        ]
    }
    spec = json.loads(environment["BUILD_SPEC"])
    SUBMITTED.append(spec)
    succeeded, reason = stand_in_build(spec, environment.get("BUILDFARM_BUILDER_IMAGE", "stand-in"))
    job.job_stopped_reason = reason
    job._mark_stopped(success=succeeded)


# -- patch 3: moto issue #10076, SFN-cased parameters for batch:submitJob(.sync) ----------------

_batch_model = botocore.session.get_session().get_service_model("batch")


def _operation(action: str):
    snake = xform_name(action)
    name = next(op for op in _batch_model.operation_names if xform_name(op) == snake)
    return _batch_model.operation_model(name)


def _normalise_parameters(
    self: StateTaskServiceBatch,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    self._to_boto_request(parameters, _operation(service_action_name or self.resource.api_action).input_shape)


def _normalise_response(
    self: StateTaskServiceBatch,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    self._from_boto_response(
        response, _operation(service_action_name or self.resource.api_action).output_shape
    )


# -- patch 4: moto's ASL grammar takes ToleratedFailurePercentage only as a decimal literal -----


def as_moto_reads_it(definition: str) -> str:
    """The same JSON number written as 100.0 instead of 100 (moto's lexer reads 100 as INT and
    its grammar wants NUMBER there); the value, and so the definition, is unchanged."""
    tolerance = json.loads(definition)["States"]["Build"]["ToleratedFailurePercentage"]
    assert tolerance == 100
    return definition.replace('"ToleratedFailurePercentage":100,', '"ToleratedFailurePercentage":100.0,', 1)


@contextlib.contextmanager
def moto_patched() -> Iterator[None]:
    """Patches 1-3 (4 is as_moto_reads_it); the trigger CLI's moto-server test uses them too."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", _invoke_real_handler))
        stack.enter_context(
            mock.patch.object(BatchSimpleBackend, "_mark_job_as_finished", _finish_with_stand_in)
        )
        stack.enter_context(
            mock.patch.object(StateTaskServiceBatch, "_normalise_parameters", _normalise_parameters)
        )
        stack.enter_context(
            mock.patch.object(StateTaskServiceBatch, "_normalise_response", _normalise_response)
        )
        yield


@pytest.fixture(scope="module")
def moto_patches() -> Iterator[None]:
    with moto_patched():
        yield


# -- the synthesized template, resolved against moto ----------------------------------------


def resolve(value: Any, refs: dict[str, str], attrs: dict[tuple[str, str], str]) -> Any:
    """Resolve Ref / Fn::GetAtt / Fn::Join / Fn::Sub (string form, ${Ref} names) in a template value."""
    if isinstance(value, list):
        return [resolve(v, refs, attrs) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return refs[value["Ref"]]
    if set(value) == {"Fn::GetAtt"}:
        lid, attribute = value["Fn::GetAtt"]
        return attrs[(lid, attribute)]
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(p, refs, attrs)) for p in parts)
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda name: refs.get(name[1], name[0]), value["Fn::Sub"])
    return {k: resolve(v, refs, attrs) for k, v in value.items()}


class Farm:
    """The stack's workflow, Lambdas, Batch queues and job definitions, created in moto."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        self.runs = 0
        resources = template["Resources"]
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.batch = boto3.client("batch", region_name=REGION)
        lambda_client = boto3.client("lambda", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)

        self.s3.create_bucket(Bucket=BUCKET)
        role_arn = iam.create_role(RoleName="farm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        refs = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
        }
        attrs: dict[tuple[str, str], str] = {}
        for lid, resource in resources.items():
            if resource["Type"] == "AWS::S3::Bucket" and lid.startswith("StorageStore"):
                refs[lid] = BUCKET
                attrs[(lid, "Arn")] = f"arn:aws:s3:::{BUCKET}"
            if resource["Type"] == "AWS::CloudFront::Distribution":
                attrs[(lid, "DomainName")] = CDN_DOMAIN

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("placeholder.py", "")  # the code is the repository's buildfarm package
        self.functions: dict[str, str] = {}
        for lid, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            props = resource["Properties"]
            arn = lambda_client.create_function(
                FunctionName=lid,
                Runtime=props["Runtime"],
                Role=role_arn,
                Handler=props["Handler"],
                Code={"ZipFile": buffer.getvalue()},
                Timeout=props["Timeout"],
                MemorySize=props["MemorySize"],
                Environment={"Variables": resolve(props["Environment"]["Variables"], refs, attrs)},
            )["FunctionArn"]
            attrs[(lid, "Arn")] = arn
            self.functions[props["Handler"]] = lid

        compute = self.batch.create_compute_environment(
            computeEnvironmentName="stand-in", type="UNMANAGED", state="ENABLED", serviceRole=role_arn
        )["computeEnvironmentArn"]
        for resource in resources.values():
            if resource["Type"] == "AWS::Batch::JobQueue":
                self.batch.create_job_queue(
                    jobQueueName=resource["Properties"]["JobQueueName"],
                    state="ENABLED",
                    priority=1,
                    computeEnvironmentOrder=[{"order": 1, "computeEnvironment": compute}],
                )
            if resource["Type"] == "AWS::Batch::JobDefinition":
                props = resource["Properties"]
                container = props["ContainerProperties"]
                self.batch.register_job_definition(
                    jobDefinitionName=props["JobDefinitionName"],
                    type="container",
                    containerProperties={
                        "image": "builder",
                        "resourceRequirements": [
                            {"type": r["Type"], "value": r["Value"]}
                            for r in container["ResourceRequirements"]
                        ],
                        "environment": [
                            {"name": e["Name"], "value": resolve(e["Value"], refs, attrs)}
                            for e in container["Environment"]
                        ],
                    },
                    retryStrategy={
                        "attempts": props["RetryStrategy"]["Attempts"],
                        "evaluateOnExit": [  # CloudFormation's PascalCase -> the API's camelCase
                            {k[0].lower() + k[1:]: v for k, v in rule.items()}
                            for rule in props["RetryStrategy"]["EvaluateOnExit"]
                        ],
                    },
                )

        (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
        self.definition = as_moto_reads_it(resolve(machine["Properties"]["DefinitionString"], refs, attrs))
        self.state_machine_arn = self.sfn.create_state_machine(
            name="PythonBuildFarm", definition=self.definition, roleArn=role_arn
        )["stateMachineArn"]

    def seed_releases(self, versions: dict[str, str]) -> None:
        """releases.json as python.org would have made it, fresh (no refresh is due)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        releases = {
            v: {"version": v, "sha256": sha, "url": f"https://www.python.org/ftp/python/{v}/Python-{v}.tar.xz",
                "release_date": None, "prerelease": False}
            for v, sha in versions.items()
        }  # fmt: skip
        document = {
            "schema_version": 1,
            "updated": now,
            "checked": now,
            "source": "test",
            "releases": releases,
        }
        self.s3.put_object(Bucket=BUCKET, Key="releases.json", Body=json.dumps(document).encode())

    def run_wait(self, arn: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            execution = self.sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                return execution
            if time.monotonic() > deadline:
                pytest.fail(f"execution {arn} still running after {timeout} s")
            time.sleep(0.2)

    def run(self, execution_input: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
        # AWS names an unnamed execution with a UUID; moto leaves it None, so name it here.
        self.runs += 1
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=f"test-{self.runs}-{time.time_ns() % 10**9}",
            input=json.dumps(execution_input),
        )["executionArn"]
        return self.run_wait(arn, timeout)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events, token = [], None
        while True:
            page = self.sfn.get_execution_history(
                executionArn=execution_arn, maxResults=1000, **({"nextToken": token} if token else {})
            )
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                return events

    def read_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def exists(self, key: str) -> bool:
        return "Contents" in self.s3.list_objects_v2(Bucket=BUCKET, Prefix=key, MaxKeys=1)

    def published(self) -> dict[str, int]:
        """cell -> published build, from versions.json."""
        if not self.exists("versions.json"):
            return {}
        builds = self.read_json("versions.json")["builds"]
        return {
            f"{version}/{platform}/{arch}": entry["build"]
            for version, platforms in builds.items()
            for platform, arches in platforms.items()
            for arch, entry in arches.items()
        }


@pytest.fixture
def farm(template: dict[str, Any], moto_patches: None) -> Iterator[Farm]:
    FAILING.clear()
    SUBMITTED.clear()
    _stand_in_s3.cache_clear()
    with mock_aws(config=MOTO_CONFIG), mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": REGION}):
        yield Farm(template)


def lambda_config(farm: Farm) -> FarmConfig:
    """The FarmConfig the plan Lambda reads from the environment the stack gives it."""
    (plan_fn,) = [r for r in farm.template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"][:1]
    variables = plan_fn["Properties"]["Environment"]["Variables"]
    return FarmConfig.from_env({k: v for k, v in variables.items() if isinstance(v, str)})


def enabled_cells(farm: Farm, versions: list[str]) -> set[str]:
    config = lambda_config(farm)
    registry = load_registry()
    return {
        f"{v}/{p}/{a}"
        for v in versions
        for p in config.enabled_platforms
        for a in config.enabled_arches
        if a in registry.get(p).arches
    }


def scheduled_cells(farm: Farm, seeded: list[str]) -> set[str]:
    """What {} plans with the seeded releases (plus the package's seed catalog) on the day the
    handler sees: the lifecycle policy decides, so the expectation follows the same clock."""
    releases = {**load_seed().releases, **{v: load_seed().releases.get(v) or _fake(v) for v in seeded}}
    catalog = ReleaseCatalog(releases=releases)
    selection = select_cells(
        WorkflowInput(), catalog, lambda_config(farm), load_registry(), datetime.now(UTC).date()
    )
    return {f"{r.version}/{p}/{a}" for r, p, a in selection.matrix}


def _fake(version: str) -> Release:
    return Release(version=version, sha256="ab" * 32, url="u")


SHA_3135 = load_seed().releases["3.13.5"].sha256


# -- the cases ----------------------------------------------------------------------------------


def test_empty_input_on_an_empty_store_builds_and_publishes_every_enabled_cell_then_is_a_no_op(
    farm: Farm,
) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    expected = scheduled_cells(farm, ["3.13.5"])
    assert len(expected) >= 20 and any(cell.startswith("3.13.5/debian-12/") for cell in expected)

    first = farm.run({})
    assert first["status"] == "SUCCEEDED", first
    assert {f"{s['version']}/{s['platform']}/{s['arch']}" for s in SUBMITTED} == expected
    assert farm.published() == dict.fromkeys(expected, 1)
    assert farm.exists("index.html") and farm.exists("download-metadata/debian-12.json")
    uv = farm.read_json("download-metadata/debian-12.json")
    assert any(f"https://{CDN_DOMAIN}/builds/3.13.5/debian-12/" in json.dumps(e) for e in uv.values())
    output = json.loads(first["output"])
    assert output["publish"]["counts"]["published"] == len(expected)
    # The per-cell results went to S3 (ResultWriter), not into the state.
    assert farm.exists(output["build"]["ResultWriterDetails"]["Key"])

    versions_etag = farm.s3.head_object(Bucket=BUCKET, Key="versions.json")["ETag"]
    SUBMITTED.clear()
    second = farm.run({})
    assert second["status"] == "SUCCEEDED", second
    assert SUBMITTED == []
    assert farm.s3.head_object(Bucket=BUCKET, Key="versions.json")["ETag"] == versions_etag
    states = [e for e in farm.history(second["executionArn"]) if e["type"] == "SucceedStateEntered"]
    assert states[-1]["stateEnteredEventDetails"]["name"] == "NothingToBuild"


def test_force_makes_build_2_and_keeps_build_1(farm: Farm) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    cells = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"], "arches": ["x86_64"]}
    assert farm.run(cells)["status"] == "SUCCEEDED"
    assert farm.published() == {"3.13.5/debian-12/x86_64": 1, "3.13.5/rhel-9/x86_64": 1}

    forced = farm.run({**cells, "force": True})
    assert forced["status"] == "SUCCEEDED", forced
    assert farm.published() == {"3.13.5/debian-12/x86_64": 2, "3.13.5/rhel-9/x86_64": 2}
    assert farm.exists("builds/3.13.5/debian-12/x86_64/1/manifest.json")
    assert farm.exists("builds/3.13.5/rhel-9/x86_64/2/python-3.13.5-2.x86_64.rpm")


def test_one_failing_cell_fails_the_execution_naming_it_after_the_others_are_published(farm: Farm) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    FAILING["3.13.5/ubuntu-2404/aarch64"] = "module _tkinter missing"
    execution = farm.run({"versions": ["3.13.5"], "platforms": ["ubuntu-2404", "debian-12"]})
    assert execution["status"] == "FAILED"
    assert execution["error"] == "CellsFailed"
    assert "3.13.5/ubuntu-2404/aarch64" in execution["cause"]
    assert "module _tkinter missing" in execution["cause"]
    assert farm.published() == {
        "3.13.5/ubuntu-2404/x86_64": 1,
        "3.13.5/debian-12/x86_64": 1,
        "3.13.5/debian-12/aarch64": 1,
    }
    # The failed cell's claim was released: the next run builds it again, as build 2.
    FAILING.clear()
    retry = farm.run({"versions": ["3.13.5"], "platforms": ["ubuntu-2404"], "arches": ["aarch64"]})
    assert retry["status"] == "SUCCEEDED", retry
    assert farm.published()["3.13.5/ubuntu-2404/aarch64"] == 2


@pytest.mark.parametrize(
    ("bad_input", "message"),
    [
        ({"versions": ["3.13.x"]}, "'3.13.x'"),
        ({"platforms": ["debian-99"]}, "'debian-99'"),
        ({"versions": ["3.13.5"], "color": "blue"}, "'color'"),
        ({"versions": ["3.99.1"]}, "'3.99.1'"),
    ],
)
def test_malformed_input_fails_in_plan_with_the_message_and_submits_nothing(
    farm: Farm, bad_input: dict[str, Any], message: str
) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    execution = farm.run(bad_input)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "InputError"
    assert message in execution["cause"]
    assert "invalid workflow input" in execution["cause"]
    assert SUBMITTED == []
    queues = [q["jobQueueName"] for q in farm.batch.describe_job_queues()["jobQueues"]]
    assert all(
        not farm.batch.list_jobs(jobQueue=q, jobStatus=s)["jobSummaryList"]
        for q in queues
        for s in ("SUCCEEDED", "FAILED")
    )
    failed = [e for e in farm.history(execution["executionArn"]) if e["type"] == "TaskFailed"]
    assert failed and all("lambda" in e["taskFailedEventDetails"]["resourceType"] for e in failed)
    assert not farm.exists("plans/") and not farm.exists("claims/")


def test_a_run_too_large_for_an_inline_map_stays_within_the_payload_quota(farm: Farm) -> None:
    # 27 releases x 20 enabled cells = 540 items of ~0.55 KB: the plan is over the 256 KiB limit.
    # Versions and platforms are named, so the matrix does not depend on the day (the policy).
    versions = {
        f"3.{minor}.{patch}": hashlib.sha256(f"{minor}.{patch}".encode()).hexdigest()
        for minor in range(9, 14)
        for patch in range(0, 5)
    }
    versions["3.14.0"] = hashlib.sha256(b"3.14.0").hexdigest()
    versions["3.13.5"] = SHA_3135
    farm.seed_releases(versions)
    platforms = list(lambda_config(farm).enabled_platforms)
    execution = farm.run({"versions": list(versions), "platforms": platforms}, timeout=600)
    assert execution["status"] == "SUCCEEDED", execution
    expected = enabled_cells(farm, list(versions))
    assert len(expected) == 540
    output = json.loads(execution["output"])
    items = farm.s3.get_object(Bucket=BUCKET, Key=output["plan"]["items"]["key"])["Body"].read()
    assert len(items) > 256 * 1024
    assert len(json.loads(items)) == len(expected)
    assert set(farm.published()) == expected
    # Every state's input and output stayed small: nothing carried the items or the results.
    biggest = 0
    for event in farm.history(execution["executionArn"]):
        for details in event.values():
            if isinstance(details, dict):
                for field in ("input", "output"):
                    biggest = max(biggest, len(details.get(field) or ""))
    assert biggest < 16 * 1024, biggest
