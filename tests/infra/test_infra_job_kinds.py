"""Python builds and runtime jobs run with job roles of their own (infra.job_roles): a runtime's
locked build code (third-party build backends, run as root in its Batch job) cannot put a future
Python build number under builds/ (which that build would then find taken), and a Python build
cannot write under runtimes/. The runtime Map submits to the runtime job definitions, and the
state machine may submit to both kinds. Template assertions on the session's synthesis."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from template_helpers import (
    allowed,
    bucket_denies,
    by_type,
    job_role,
    job_roles,
    listed,
    only,
    render,
    role_of,
    runtime_job_role,
    runtime_job_roles,
)

from buildfarm.workflow_names import STACK_NAME, States
from infra.workflow_states import RuntimeStates

pytestmark = pytest.mark.slow

STORE = "arn:aws:s3:::STORE/"
CELL = "debian-12/x86_64"
# What a runtime's build code would plant: a future build number of its platform's Python.
FUTURE_PYTHON_BUILDS = (
    f"builds/3.14.9/{CELL}/1/manifest.json",
    f"builds/3.13.5/{CELL}/7/python-3.13.5-debian-12-x86_64.tar.gz",
    f"logs/3.14.9/{CELL}/1/failure.json",
)
RUNTIME_BUILD = f"runtimes/svc/2.1.0/{CELL}/1"


def cells(template: dict[str, Any]) -> list[tuple[str, str]]:
    """(platform, arch) of every Python build job definition, `<stack>-<platform>-<arch>`."""
    names = [
        r["Properties"]["JobDefinitionName"] for r in by_type(template, "AWS::Batch::JobDefinition").values()
    ]
    python = [
        name.removeprefix(f"{STACK_NAME}-") for name in names if not name.startswith(f"{STACK_NAME}-runtime-")
    ]
    return [(platform, arch) for platform, arch in (cell.rsplit("-", 1) for cell in python)]


def test_the_python_builder_role_has_no_grant_on_runtimes(template: dict[str, Any]) -> None:
    for platform, arch in cells(template):
        job = job_role(template, platform, arch)
        runtime = f"runtimes/svc/2.1.0/{platform}/{arch}/1/manifest.json"
        for action in ("s3:PutObject", "s3:GetObject", "s3:*"):
            assert not allowed(template, job, action, f"{STORE}{runtime}"), (job, action)
        assert bucket_denies(template, job, "s3:PutObject", runtime), job  # whatever IAM grants later
    policies = [
        p for p in by_type(template, "AWS::IAM::Policy").values()
        if any(role["Ref"] in job_roles(template) for role in p["Properties"]["Roles"])
    ]  # fmt: skip
    assert len(policies) == len(job_roles(template)) == 20
    assert "runtimes/" not in json.dumps(policies) and "versions.json" not in json.dumps(policies)


def test_the_runtime_job_role_cannot_put_under_builds_or_logs(template: dict[str, Any]) -> None:
    runtime_job = runtime_job_role(template)
    for key in FUTURE_PYTHON_BUILDS:
        assert not allowed(template, runtime_job, "s3:PutObject", f"{STORE}{key}"), key
        # The bucket refuses it to every runtime job role, whatever IAM grants them later.
        assert all(bucket_denies(template, role, "s3:PutObject", key) for role in runtime_job_roles(template))
        # The Python builder of that platform and arch still may.
        assert allowed(template, job_role(template), "s3:PutObject", f"{STORE}{key}"), key
    # It reads (only) what it builds on, and writes its own runtime builds.
    tarball = f"{STORE}{FUTURE_PYTHON_BUILDS[1]}"
    assert allowed(template, runtime_job, "s3:GetObject", tarball)
    for other in (
        "manifest.json",
        "build.log",
        "python-3.13.5_7_amd64.deb",
        "python-3.13.5-debian-11-x86_64.tar.gz",
    ):
        assert not allowed(template, runtime_job, "s3:GetObject", f"{STORE}builds/3.13.5/{CELL}/7/{other}"), (
            other
        )
    assert allowed(template, runtime_job, "s3:GetObject", f"{STORE}versions.json")
    assert allowed(template, runtime_job, "s3:PutObject", f"{STORE}{RUNTIME_BUILD}/manifest.json")
    assert not bucket_denies(template, runtime_job, "s3:PutObject", f"{RUNTIME_BUILD}/manifest.json")
    assert len(runtime_job_roles(template)) == 20


def job_definition_states(template: dict[str, Any]) -> dict[str, str]:
    """The JobDefinition.$ of the Python Map's and the runtime Map's Batch task."""
    _, machine = only(template, "AWS::StepFunctions::StateMachine")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(part if isinstance(part, str) else "?" for part in parts))
    build = definition["States"][States.BUILD]["ItemProcessor"]["States"][States.BUILD_CELL]
    runtimes = definition["States"][RuntimeStates.BUILD_RUNTIMES]["ItemProcessor"]["States"]
    return {
        "python": build["Parameters"]["JobDefinition.$"],
        "runtime": runtimes[RuntimeStates.BUILD_RUNTIME]["Parameters"]["JobDefinition.$"],
    }


def submitted_name(state: str, item_job_definition: str) -> str:
    """The job definition name a States.Format('<prefix>{}', $.item.job_definition) submits to."""
    match = re.fullmatch(r"States\.Format\('([^'{}]*)\{\}', \$\.item\.job_definition\)", state)
    assert match, state
    return f"{match.group(1)}{item_job_definition}"


def test_the_runtime_maps_task_uses_the_runtime_job_definition(template: dict[str, Any]) -> None:
    """Whatever the item's job_definition (`<platform>-<arch>`, as Plan writes it), the runtime
    Map submits to that platform and arch's runtime job definition, which runs with the runtime
    job role; the Python Map to the builder's."""
    states = job_definition_states(template)
    definitions = {
        r["Properties"]["JobDefinitionName"]: r["Properties"]["ContainerProperties"]["JobRoleArn"][
            "Fn::GetAtt"
        ][0]
        for r in by_type(template, "AWS::Batch::JobDefinition").values()
    }
    for platform, arch in cells(template):
        item = f"{platform}-{arch}"
        runtime = submitted_name(states["runtime"], item)
        assert runtime == f"{STACK_NAME}-runtime-{item}"
        assert definitions[runtime] == runtime_job_role(template, platform, arch)
        python = submitted_name(states["python"], item)
        assert python == f"{STACK_NAME}-{item}"
        assert definitions[python] == job_role(template, platform, arch)


def test_the_state_machine_may_submit_to_both_kinds_of_job_definition(template: dict[str, Any]) -> None:
    workflow = role_of(template, "WorkflowRole")
    bucket_id, _ = only(template, "AWS::S3::Bucket", "StorageStore")
    submits = [
        render(resource, bucket_id)
        for policy in by_type(template, "AWS::IAM::Policy").values()
        if {"Ref": workflow} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "batch:SubmitJob" in listed(statement["Action"])
        for resource in listed(statement["Resource"])
    ]
    names = sorted(
        r["Properties"]["JobDefinitionName"] for r in by_type(template, "AWS::Batch::JobDefinition").values()
    )
    assert len(names) == 40
    # Each by name, any revision (Batch authorizes a submit on the revision the name resolves to).
    definitions = [arn for arn in submits if ":job-definition/" in arn]
    assert sorted(arn.rsplit("/", 1)[1] for arn in definitions) == sorted(f"{name}:*" for name in names)
    for name in names:  # `render` writes the region and account as "?"
        resource = f"arn:aws:batch:r:a:job-definition/{name}:3"
        assert allowed(template, workflow, "batch:SubmitJob", resource), name
    queues = [arn for arn in submits if ":job-definition/" not in arn]
    assert len(queues) == 2  # one per arch, shared by both kinds


# IAM's and S3's and KMS's limits on a policy document's size (characters, white space not
# counted): a role's inline policies together, a bucket policy, a key policy.
ROLE_INLINE_LIMIT, BUCKET_POLICY_LIMIT, KEY_POLICY_LIMIT = 10_240, 20_480, 32_768


def deployed(value: Any, resources: dict[str, Any]) -> Any:
    """A policy document as deployed, at its longest: roles and functions named with 64
    characters, a 14-character region, a 63-character bucket name."""
    if isinstance(value, list):
        return [deployed(item, resources) for item in value]
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        pseudo = {"AWS::Partition": "aws-us-gov", "AWS::Region": "ap-southeast-2", "AWS::AccountId": "1" * 12}
        return pseudo.get(value["Ref"], "n" * 64)
    if "Fn::GetAtt" in value:
        kind = resources[value["Fn::GetAtt"][0]]["Type"].split("::")[1].lower()
        region = f"aws-us-gov:{kind}:ap-southeast-2:{'1' * 12}"
        return {
            "s3": "arn:aws-us-gov:s3:::" + "b" * 63,
            "iam": f"arn:aws-us-gov:iam::{'1' * 12}:role/" + "r" * 64,
        }.get(kind, f"arn:{region}:" + "x" * 100)
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(deployed(part, resources)) for part in parts)
    if "Fn::Select" in value:
        return "s" * 80
    return {key: deployed(item, resources) for key, item in value.items()}


def size(document: Any, resources: dict[str, Any]) -> int:
    return len(re.sub(r"\s", "", json.dumps(deployed(document, resources), separators=(",", ":"))))


def test_the_policies_naming_both_kinds_fit_their_services_limits(template: dict[str, Any]) -> None:
    """Two job definitions and two job roles per platform x arch: the workflow role's submit
    grant, the bucket policy and the signing key's policy name each of them, and must still fit."""
    resources = template["Resources"]
    inline: dict[str, int] = {}
    for policy in by_type(template, "AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            inline[role["Ref"]] = inline.get(role["Ref"], 0) + size(
                policy["Properties"]["PolicyDocument"], resources
            )
    assert max(inline.values()) <= ROLE_INLINE_LIMIT, inline
    bucket_id, _ = only(template, "AWS::S3::Bucket", "StorageStore")
    (bucket_policy,) = [
        p
        for p in by_type(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    assert size(bucket_policy["Properties"]["PolicyDocument"], resources) <= BUCKET_POLICY_LIMIT
    _, key = only(template, "AWS::KMS::Key", "Signing")
    assert size(key["Properties"]["KeyPolicy"], resources) <= KEY_POLICY_LIMIT
