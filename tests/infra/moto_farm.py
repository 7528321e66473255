"""The farm in moto: the state machine definition from the synthesized template, its tokens
resolved against resources created in moto, executed by moto's Step Functions interpreter with
the real handlers (Recover, Plan, PublishCell, Finalize). The fixtures are in conftest.py; the
cases in test_infra_workflow.py, test_infra_recovery.py and test_trigger_cli.py.

The patches of moto this needs are in tests/moto_patches.py (pinned to one moto version):
Lambda runs the real handlers, Step Functions submits Batch jobs as AWS does, and the
definition is written as moto's ASL grammar reads it. Batch runs no containers; each job
finishes through the stand-in builder (stand_in.py), which writes what the real builder would.
SHA256SUMS and the signatures are the publish side's (issue 15): the stack's KMS signing key is
created in moto's KMS, whose Sign is patched to sign digests as AWS does.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import moto_patches
import pytest
import stand_in
from cryptography.hazmat.primitives import serialization
from stand_in import ACCOUNT, NOW, REGION  # noqa: F401 (NOW: the moment the fixtures set)

from buildfarm import clock
from buildfarm.releases import load_seed
from buildfarm.workflow_names import STACK_NAME, States

BUCKET = "buildfarm-store"
CDN_DOMAIN = "d111111abcdef8.cloudfront.net"
MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}


def as_moto_reads_it(definition: str) -> str:
    """The workflow's definition as moto_patches.asl_as_moto_reads_it writes it (the Build
    map's ToleratedFailurePercentage 100 as 100.0; the value is unchanged)."""
    tolerance = json.loads(definition)["States"][States.BUILD]["ToleratedFailurePercentage"]
    assert tolerance == 100
    return moto_patches.asl_as_moto_reads_it(definition)


@contextlib.contextmanager
def moto_patched() -> Iterator[None]:
    """moto as the farm needs it: real handlers, Batch jobs ending through the stand-in, and
    Step Functions' Batch parameters as AWS maps them. The trigger CLI's moto-server test
    uses it too."""
    with (
        moto_patches.lambda_runs_real_handlers(),
        stand_in.invocations_counted(),
        moto_patches.batch_jobs_finish_with(stand_in.finish_job),
        stand_in.jobs_show_their_command(),
        moto_patches.sfn_batch_parameters_as_aws(),
        moto_patches.kms_signs_digests_as_aws(),
    ):
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
        self.kms = boto3.client("kms", region_name=REGION)
        self.signing_keys: dict[str, str] = {}  # logical id -> key ARN
        iam = boto3.client("iam", region_name=REGION)

        self.s3.create_bucket(Bucket=BUCKET)
        role_arn = iam.create_role(RoleName="farm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self.refs = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.attrs: dict[tuple[str, str], str] = {}
        self._create_store_cdn_and_keys(resources)
        self.functions = self._create_functions(resources, role_arn)
        self._create_batch(resources, role_arn)
        (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
        self.definition = as_moto_reads_it(
            resolve(machine["Properties"]["DefinitionString"], self.refs, self.attrs)
        )
        self.state_machine_arn = self.sfn.create_state_machine(
            name=STACK_NAME, definition=self.definition, roleArn=role_arn
        )["stateMachineArn"]

    def _create_store_cdn_and_keys(self, resources: dict[str, Any]) -> None:
        """The names the other resources refer to: the bucket, the CDN's domain, the KMS keys."""
        for lid, resource in resources.items():
            if resource["Type"] == "AWS::S3::Bucket" and lid.startswith("StorageStore"):
                self.refs[lid] = BUCKET
                self.attrs[(lid, "Arn")] = f"arn:aws:s3:::{BUCKET}"
            if resource["Type"] == "AWS::CloudFront::Distribution":
                self.attrs[(lid, "DomainName")] = CDN_DOMAIN
            if resource["Type"] == "AWS::KMS::Key":  # the signing key (and the alarms' key)
                props = resource["Properties"]
                spec = {k: props[k] for k in ("KeySpec", "KeyUsage", "Description") if k in props}
                metadata = self.kms.create_key(**spec)["KeyMetadata"]
                self.refs[lid], self.attrs[(lid, "Arn")] = metadata["KeyId"], metadata["Arn"]
                if props.get("KeyUsage") == "SIGN_VERIFY":
                    self.signing_keys[lid] = metadata["Arn"]

    def _create_functions(self, resources: dict[str, Any], role_arn: str) -> dict[str, str]:
        """The stack's Lambdas with their resolved environment: handler -> logical id."""
        lambda_client = boto3.client("lambda", region_name=REGION)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("placeholder.py", "")  # the code is the repository's buildfarm package
        functions: dict[str, str] = {}
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
                Environment={"Variables": resolve(props["Environment"]["Variables"], self.refs, self.attrs)},
            )["FunctionArn"]
            self.attrs[(lid, "Arn")] = arn
            functions[props["Handler"]] = lid
        return functions

    def _create_batch(self, resources: dict[str, Any], role_arn: str) -> None:
        """The stack's job queues (on one stand-in compute environment) and job definitions."""
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
                self._register_job_definition(resource["Properties"])

    def _register_job_definition(self, props: dict[str, Any]) -> None:
        container = props["ContainerProperties"]
        self.batch.register_job_definition(
            jobDefinitionName=props["JobDefinitionName"],
            type="container",
            containerProperties={
                "image": "builder",
                "resourceRequirements": [
                    {"type": r["Type"], "value": r["Value"]} for r in container["ResourceRequirements"]
                ],
                "environment": [
                    {"name": e["Name"], "value": resolve(e["Value"], self.refs, self.attrs)}
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

    def seed_releases(self, versions: dict[str, str]) -> None:
        """releases.json as python.org would have made it, fresh (no refresh is due)."""
        now = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
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
        pause = 0.05  # short runs end quickly; a long one is asked less often (each ask takes the GIL)
        while True:
            execution = self.sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                return execution
            if time.monotonic() > deadline:
                pytest.fail(f"execution {arn} still running after {timeout} s")
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    def wait_quiet(self, timeout: float = 60) -> None:
        """Wait until no job or Lambda invocation runs (a stopped execution's included)."""
        if not stand_in.wait_quiet(timeout):
            pytest.fail(f"{stand_in.in_flight()} jobs or invocations still running after {timeout} s")

    def start(self, execution_input: dict[str, Any]) -> str:
        # AWS names an unnamed execution with a UUID; moto leaves it None, so name it here.
        self.runs += 1
        return self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=f"test-{self.runs}-{time.time_ns() % 10**9}",
            input=json.dumps(execution_input),
        )["executionArn"]

    def run(self, execution_input: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
        return self.run_wait(self.start(execution_input), timeout)

    def set_environment(self, **variables: str) -> None:
        """Add environment variables to every function (as a deployment's configuration would)."""
        lambda_client = boto3.client("lambda", region_name=REGION)
        for name in self.functions.values():
            current = lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
            lambda_client.update_function_configuration(
                FunctionName=name, Environment={"Variables": {**current, **variables}}
            )

    def plan_counts(self, execution: dict[str, Any]) -> dict[str, int]:
        """The Plan step's counts, from the execution's history (its output may be a Fail's)."""
        for event in self.history(execution["executionArn"]):
            details = event.get("stateExitedEventDetails") or {}
            if details.get("name") == States.PLAN:
                return json.loads(details["output"])["plan"]["counts"]
        raise AssertionError(f"no Plan in {execution['executionArn']}")

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

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

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def read_json(self, key: str) -> Any:
        return json.loads(self.read(key))

    def exists(self, key: str) -> bool:
        return "Contents" in self.s3.list_objects_v2(Bucket=BUCKET, Prefix=key, MaxKeys=1)

    def signing_public_key(self) -> bytes:
        """The stack's signing key's public key (PEM), as `aws kms get-public-key` gives it."""
        (arn,) = self.signing_keys.values()
        der = self.kms.get_public_key(KeyId=arn)["PublicKey"]
        return serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

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


SHA_3135 = load_seed().releases["3.13.5"].sha256
