"""Options in one small synthesis (one platform, one arch; cdk-nag on):

- `cloudRuntimes=false`: Plan plans no runtime cell, so the stack has no runtime job
  definition, no runtime job role and no bucket-policy statement for one, and the state
  machine may submit only the Python builds' job definitions. With runtimes (the session's
  synthesis), each runtime job definition has its own, shorter timeout.
- `maxConcurrency=40`: a budget (720 cells) beyond the one Plan was measured claiming is a
  synthesis warning.
- `signingKeyGeneration=2` (a key rotation): a new KMS key, retained as the first is, which
  the alias, the publishing functions and the `SigningKeyArn` output name; the alias keeps
  its logical id (re-pointed, not replaced by a second alias of the same name)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Synthesis, synthesize
from template_helpers import (
    bucket_denies,
    by_type,
    job_role,
    job_roles,
    listed,
    only,
    role_of,
    runtime_job_roles,
)

from buildfarm.workflow_names import STACK_NAME, Outputs, signing_key_alias
from infra.signing import KMS_KEY_VARIABLE

pytestmark = pytest.mark.slow

SMALL = {"buildfarm:enabledPlatforms": "debian-12", "buildfarm:enabledArches": "x86_64"}


OPTIONS = {
    "buildfarm:cloudRuntimes": "false",
    "buildfarm:signingKeyGeneration": "2",
    "buildfarm:maxConcurrency": "40",
}


@pytest.fixture(scope="module")
def options_synthesis(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The small synthesis with OPTIONS."""
    return synthesize(tmp_path_factory, {**SMALL, **OPTIONS})


@pytest.fixture(scope="module")
def without_runtimes(options_synthesis: Synthesis) -> dict[str, Any]:
    return options_synthesis.template()


def _warnings(synthesis: Synthesis) -> list[str]:
    """The synthesis warnings (the stack's metadata file, where the CLI reads them)."""
    metadata = json.loads((synthesis.outdir / f"{STACK_NAME}.metadata.json").read_text())
    return [
        entry["data"]
        for entries in metadata.values()
        for entry in entries
        if entry["type"] == "aws:cdk:warning"
    ]


def test_a_budget_beyond_what_plan_was_measured_claiming_is_a_synthesis_warning(
    options_synthesis, synthesis
) -> None:
    """maxConcurrency 40 doubles the default budget Plan was measured claiming (360 cells)."""
    warned = [w for w in _warnings(options_synthesis) if "Plan was measured" in w]
    assert len(warned) == 1 and warned[0].startswith("one execution may claim 720 cells"), warned
    assert not [w for w in _warnings(synthesis) if "Plan was measured" in w]  # cdk.json's defaults


def _job_definitions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["JobDefinitionName"]: r["Properties"]
        for r in by_type(template, "AWS::Batch::JobDefinition").values()
    }


def test_without_cloud_runtimes_no_runtime_job_definition_role_or_bucket_rule(without_runtimes) -> None:
    assert set(_job_definitions(without_runtimes)) == {f"{STACK_NAME}-debian-12-x86_64"}
    assert runtime_job_roles(without_runtimes) == [] and job_roles(without_runtimes)
    # The bucket still confines the builder (its role named in a deny), and names no runtime role.
    policy = json.dumps(by_type(without_runtimes, "AWS::S3::BucketPolicy"))
    assert "RuntimeJobRole" not in policy
    assert bucket_denies(without_runtimes, job_role(without_runtimes), "s3:PutObject", "versions.json")
    assert bucket_denies(without_runtimes, job_role(without_runtimes), "s3:PutObject", "runtimes/a/1/x")
    workflow = role_of(without_runtimes, "WorkflowRole")
    submits = [
        str(resource)
        for policy in by_type(without_runtimes, "AWS::IAM::Policy").values()
        if {"Ref": workflow} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "batch:SubmitJob" in listed(statement["Action"])
        for resource in listed(statement["Resource"])
    ]
    assert any("debian-12-x86_64:*" in arn for arn in submits), submits
    assert not any("-runtime-" in arn for arn in submits), submits


def test_runtime_jobs_have_their_own_timeout(template) -> None:
    definitions = _job_definitions(template)
    runtime = {name: d for name, d in definitions.items() if name.startswith(f"{STACK_NAME}-runtime-")}
    python = {name: d for name, d in definitions.items() if name not in runtime}
    assert runtime and python
    assert {d["Timeout"]["AttemptDurationSeconds"] for d in runtime.values()} == {60 * 60}
    assert {d["Timeout"]["AttemptDurationSeconds"] for d in python.values()} == {240 * 60}


def test_a_rotated_signing_key_is_new_retained_and_named_everywhere(without_runtimes, template) -> None:
    (key_id, key), (first_id, _) = (
        only(without_runtimes, "AWS::KMS::Key", "Signing"),
        only(template, "AWS::KMS::Key", "Signing"),
    )
    assert key_id.startswith("SigningKey2") and key_id != first_id
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
    (alias_id, alias), (first_alias_id, _) = (
        only(without_runtimes, "AWS::KMS::Alias", "Signing"),
        only(template, "AWS::KMS::Alias", "Signing"),
    )
    assert alias_id == first_alias_id  # the same alias, re-pointed
    assert alias["Properties"] == {"AliasName": signing_key_alias(STACK_NAME), "TargetKeyId": key_arn}
    assert without_runtimes["Outputs"][Outputs.SIGNING_KEY_ARN]["Value"] == key_arn
    signing = [
        f["Properties"]["Environment"]["Variables"][KMS_KEY_VARIABLE]
        for f in by_type(without_runtimes, "AWS::Lambda::Function").values()
        if KMS_KEY_VARIABLE in f["Properties"].get("Environment", {}).get("Variables", {})
    ]
    assert signing and all(value == key_arn for value in signing), signing
