"""Issue 15 in the stack: the KMS signing key, who may sign with it (the publishing functions,
never the builder), what the builder may not write (the publish side's files), and the key as
the stack defines it signing in moto's KMS what `openssl dgst -sha256 -verify` accepts.
Template assertions on the session's synthesis; helpers from template_helpers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto_patches import kms_signs_digests_as_aws
from template_helpers import (
    allowed,
    bucket_denies,
    by_type,
    job_role,
    job_roles,
    only,
    role_of,
    runtime_job_roles,
)

from buildfarm.attest.signing import KmsSigner, sign_file
from buildfarm.config import FarmConfig
from buildfarm.workflow_names import STACK_NAME, Outputs, signing_key_alias
from infra.signing import KMS_KEY_VARIABLE

# Checks of the session's CDK synthesis (`python app.py`, most of a minute): not in `-m 'not slow'`.
pytestmark = pytest.mark.slow

PUBLISHERS = (
    "FunctionsPublishCellRole",
    "FunctionsPublishRuntimeRole",
    "FunctionsFinalizeRole",
    "FunctionsRecoverRole",
)
CELL = "builds/3.13.5/debian-12/x86_64/1"
RUNTIME = "runtimes/tools/3.13.5/debian-12/x86_64/1"
# What only the publish side writes (COMMON "The signing contract").
PUBLISHER_FILES = (
    *(f"{d}/{name}" for d in (CELL, RUNTIME) for name in
      ("SHA256SUMS", "SHA256SUMS.sig", "provenance.json", "provenance.json.sig", "sbom.cdx.json")),
    "versions.json",
    "versions.json.sig",
    "keys/keys.json",
    f"keys/{'ab' * 32}.pub",
)  # fmt: skip
BUILDER_FILES = (
    f"{CELL}/manifest.json",
    f"{CELL}/python-3.13.5-debian-12-x86_64.tar.gz",
    f"{CELL}/build.log",
)


def signing_key(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return only(template, "AWS::KMS::Key", "Signing")


def statements_of(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the IAM policies attached to a role (the stack uses no inline ones)."""
    assert not template["Resources"][role_id]["Properties"].get("Policies")
    return [
        statement
        for policy in by_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def kms_actions(template: dict[str, Any], role_id: str) -> dict[str, dict[str, Any]]:
    """kms action -> the Allow statement granting it, for every kms:* action a role is allowed."""
    granted = {}
    for statement in statements_of(template, role_id):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            if statement["Effect"] == "Allow" and (action.lower().startswith("kms:") or action == "*"):
                granted[action] = statement
    return granted


def test_the_stack_creates_a_retained_p256_signing_key_with_an_alias_and_an_output(template) -> None:
    key_id, key = signing_key(template)
    props = key["Properties"]
    assert (props["KeySpec"], props["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert "EnableKeyRotation" not in props  # KMS rotates symmetric keys only
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    assert "signs SHA256SUMS" in props["Description"]
    _, alias = only(template, "AWS::KMS::Alias", "Signing")
    assert alias["Properties"] == {
        "AliasName": signing_key_alias(STACK_NAME),
        "TargetKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert signing_key_alias(STACK_NAME) == "alias/PythonBuildFarm-signing"
    assert template["Outputs"][Outputs.SIGNING_KEY_ARN]["Value"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_only_the_publishing_functions_may_sign_and_only_sign_and_read_the_public_key(template) -> None:
    key_id, _ = signing_key(template)
    key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
    publishers = {role_of(template, name) for name in PUBLISHERS}
    signers = {
        lid
        for lid in by_type(template, "AWS::IAM::Role")
        if any(s["Resource"] in (key_arn, "*") for s in kms_actions(template, lid).values())
    }
    assert signers == publishers
    for role in publishers:
        granted = kms_actions(template, role)
        assert set(granted) == {"kms:Sign", "kms:GetPublicKey"}, (role, granted)
        assert all(s["Resource"] == key_arn for s in granted.values())
        # Sign only a SHA-256 digest with ECDSA_SHA_256: what KmsSigner sends (checked in moto below).
        assert granted["kms:Sign"]["Condition"] == {
            "StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "DIGEST"}
        }
    assert not kms_actions(template, role_of(template, "FunctionsPlanRole"))


def test_the_key_policy_refuses_the_builders_whatever_iam_grants_them(template) -> None:
    builders = [*job_roles(template), *runtime_job_roles(template)]  # Python builds' and runtimes'
    assert len(builders) == 40 and all(kms_actions(template, job) == {} for job in builders)
    _, key = signing_key(template)
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (refusal,) = [s for s in statements if s["Effect"] == "Deny"]
    refused = sorted(principal["Fn::GetAtt"][0] for principal in refusal["Principal"]["AWS"])
    assert refused == sorted(builders)
    assert all(principal["Fn::GetAtt"][1] == "Arn" for principal in refusal["Principal"]["AWS"])
    assert refusal["Action"] == "kms:*" and refusal["Resource"] == "*" and "Condition" not in refusal
    # The rest is the account's default (IAM policies decide): no service or other principal.
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 1 and ":root" in json.dumps(allows[0]["Principal"])


def test_the_builder_cannot_write_what_the_publish_side_signs(template) -> None:
    job = job_role(template)
    for key in PUBLISHER_FILES:
        assert all(
            bucket_denies(template, builder, "s3:PutObject", key)
            for builder in (*job_roles(template), *runtime_job_roles(template))
        ), key
    for key in BUILDER_FILES:
        assert not bucket_denies(template, job, "s3:PutObject", key), key
        assert allowed(template, job, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), key
    # The publishing functions are not refused by that statement.
    for name in PUBLISHERS:
        assert not bucket_denies(template, role_of(template, name), "s3:PutObject", f"{CELL}/SHA256SUMS")


def test_the_publishing_functions_write_the_signed_files_but_no_builder_file(template) -> None:
    for name in PUBLISHERS:
        role = role_of(template, name)
        # PublishRuntime signs runtime builds only; the others Python builds (and runtime ones:
        # Finalize and Recover decide runtime items PublishRuntime did not).
        directory = RUNTIME if name == "FunctionsPublishRuntimeRole" else CELL
        for key in (
            *(
                f"{directory}/{f}"
                for f in ("SHA256SUMS", "SHA256SUMS.sig", "provenance.json", "provenance.json.sig")
            ),
            f"{directory}/sbom.cdx.json",
            "versions.json.sig",
            "keys/keys.json",
            f"keys/{'ab' * 32}.pub",
        ):
            assert allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), (name, key)
        for key in ("versions.json.sig", "keys/keys.json"):
            assert allowed(template, role, "s3:GetObject", f"arn:aws:s3:::STORE/{key}"), (name, key)
        for key in BUILDER_FILES:
            assert not allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), (name, key)
    plan = role_of(template, "FunctionsPlanRole")
    for key in ("versions.json.sig", "keys/keys.json", f"{CELL}/SHA256SUMS.sig"):
        assert not allowed(template, plan, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), key


def test_the_publishing_functions_are_given_the_key_arn(template) -> None:
    key_id, _ = signing_key(template)
    functions = by_type(template, "AWS::Lambda::Function")
    given = {
        props["Handler"]: props["Environment"]["Variables"].get(KMS_KEY_VARIABLE)
        for props in (r["Properties"] for r in functions.values())
    }
    assert given == {
        "buildfarm.handlers.recover.handler": {"Fn::GetAtt": [key_id, "Arn"]},
        "buildfarm.handlers.publish.cell_handler": {"Fn::GetAtt": [key_id, "Arn"]},
        "buildfarm.handlers.publish.finalize_handler": {"Fn::GetAtt": [key_id, "Arn"]},
        "buildfarm.handlers.publish.runtime_handler": {"Fn::GetAtt": [key_id, "Arn"]},
        "buildfarm.handlers.plan.handler": None,
    }
    # The contract's variable, and the publishing functions' FarmConfig reads the key from it.
    assert KMS_KEY_VARIABLE == "BUILDFARM_KMS_KEY_ID"
    arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    (cell,) = [
        r["Properties"] for r in functions.values() if r["Properties"]["Handler"].endswith(".cell_handler")
    ]
    variables = {k: v for k, v in cell["Environment"]["Variables"].items() if isinstance(v, str)}
    assert FarmConfig.from_env({**variables, KMS_KEY_VARIABLE: arn}).kms_key_id == arn


def openssl_verify(directory: Path, public_pem: bytes, name: str) -> subprocess.CompletedProcess[str]:
    (directory / "farm.pub").write_bytes(public_pem)
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "farm.pub", "-signature", f"{name}.sig", name],
        cwd=directory,
        capture_output=True,
        text=True,
    )


def test_the_stacks_key_in_moto_signs_sha256sums_as_the_grant_allows_and_openssl_verifies(
    template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key as the template defines it, created in moto's KMS (Sign patched to honour
    MessageType=DIGEST, as AWS does); KmsSigner's requests meet the grant's conditions."""
    _, key = signing_key(template)
    (grant,) = {json.dumps(kms_actions(template, role_of(template, n))["kms:Sign"]) for n in PUBLISHERS}
    conditions = json.loads(grant)["Condition"]["StringEquals"]
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(variable, "testing")
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  python-3.13.5-debian-12-x86_64.tar.gz\n{'1' * 64}  manifest.json\n")
    with kms_signs_digests_as_aws(), mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        props = key["Properties"]
        arn = kms.create_key(KeySpec=props["KeySpec"], KeyUsage=props["KeyUsage"])["KeyMetadata"]["Arn"]
        sent: list[dict[str, Any]] = []
        kms.meta.events.register(
            "provide-client-params.kms.Sign", lambda params, **_: sent.append(dict(params))
        )
        signer = KmsSigner(kms, arn)
        sign_file(signer, sums)
        public_pem = signer.public_key_pem()
    assert [(s["KeyId"], s["SigningAlgorithm"], s["MessageType"]) for s in sent] == [
        (arn, conditions["kms:SigningAlgorithm"], conditions["kms:MessageType"])
    ]
    verified = openssl_verify(tmp_path, public_pem, "SHA256SUMS")
    assert (verified.returncode, verified.stdout.strip()) == (0, "Verified OK"), verified.stderr
    sums.write_text(sums.read_text().replace("0", "2", 1))  # one character changed
    assert openssl_verify(tmp_path, public_pem, "SHA256SUMS").returncode == 1
