"""Reading the session's synthesized template: resources by type, and what an IAM role's
policies allow (the store bucket written as arn:aws:s3:::STORE). Shared by the infra tests."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from infra.config import InfraConfig

REPO = Path(__file__).resolve().parents[2]


def cdk_json_config(lifecycle_date: str) -> InfraConfig:
    """cdk.json's configuration on the day the session's synthesis used (the lifecycle_date fixture)."""
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    return InfraConfig.from_context({**context, "buildfarm:lifecycleDate": lifecycle_date})


def by_type(template: dict[str, Any], cfn_type: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == cfn_type}


def only(template: dict[str, Any], cfn_type: str, containing: str = "") -> tuple[str, dict[str, Any]]:
    found = [(lid, r) for lid, r in by_type(template, cfn_type).items() if containing in lid]
    assert len(found) == 1, f"expected one {cfn_type} {containing!r}, found {[lid for lid, _ in found]}"
    return found[0]


def render(value: Any, bucket_id: str) -> str:
    """A policy resource as a string, the store bucket's ARN written as arn:aws:s3:::STORE."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value and value["Fn::GetAtt"] == [bucket_id, "Arn"]:
        return "arn:aws:s3:::STORE"
    if "Ref" in value:
        return "STORE" if value["Ref"] == bucket_id else {"AWS::Partition": "aws"}.get(value["Ref"], "?")
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(render(p, bucket_id) for p in parts)
    return "?"


STORE_ARN = "arn:aws:s3:::STORE/"


def allowed(template: dict[str, Any], role_id: str, action: str, resource: str) -> bool:
    """Whether the role may: a policy attached to it allows `action` on `resource` (wildcards
    honoured as IAM does: `*` also spans '/'), and, for a store key, the bucket policy does not
    deny it to the role (an explicit deny wins over any allow)."""
    if not _identity_allows(template, role_id, action, resource):
        return False
    key = resource.removeprefix(STORE_ARN)
    return not (resource.startswith(STORE_ARN) and bucket_denies(template, role_id, action, key))


def _identity_allows(template: dict[str, Any], role_id: str, action: str, resource: str) -> bool:
    bucket_id, _ = only(template, "AWS::S3::Bucket", "StorageStore")
    for policy in by_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            if any(fnmatch.fnmatchcase(action, a) for a in actions) and any(
                fnmatch.fnmatchcase(resource, render(r, bucket_id)) for r in resources
            ):
                return True
    role = template["Resources"][role_id]["Properties"]
    assert not role.get("Policies"), "inline role policies are not checked here"
    managed = json.dumps(role.get("ManagedPolicyArns", []))
    # The Batch instance role's AWS-managed ECS policy grants ECS/ECR/CloudWatch Logs, no S3.
    assert not role.get("ManagedPolicyArns") or (
        len(role["ManagedPolicyArns"]) == 1 and "AmazonEC2ContainerServiceforEC2Role" in managed
    ), managed
    return False


def role_of(template: dict[str, Any], containing: str) -> str:
    lid, _ = only(template, "AWS::IAM::Role", containing)
    return lid


def job_role(template: dict[str, Any], platform: str = "debian-12", arch: str = "x86_64") -> str:
    """The logical id of the job role of a platform x arch's Python build job definition
    (infra.job_roles.JobRoles)."""
    return role_of(template, f"BatchJobRole{platform.replace('-', '')}{arch.replace('_', '')}")


def job_roles(template: dict[str, Any]) -> list[str]:
    """The logical ids of every Python builder's job role (one per platform x arch)."""
    return [lid for lid in by_type(template, "AWS::IAM::Role") if lid.startswith("BatchJobRole")]


def runtime_job_role(template: dict[str, Any], platform: str = "debian-12", arch: str = "x86_64") -> str:
    """The logical id of the job role of a platform x arch's runtime job definition
    (infra.job_roles.RuntimeJobRoles)."""
    return role_of(template, f"BatchRuntimeJobRole{platform.replace('-', '')}{arch.replace('_', '')}")


def runtime_job_roles(template: dict[str, Any]) -> list[str]:
    """The logical ids of every runtime job role (one per platform x arch)."""
    return [lid for lid in by_type(template, "AWS::IAM::Role") if lid.startswith("BatchRuntimeJobRole")]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _applies_to(statement: dict[str, Any], principal: str | None) -> bool:
    """Whether a statement's condition holds for the role `principal` (a logical id) whatever the
    request: none, or aws:PrincipalArn other than named roles. Any other condition depends on
    the request (not unconditional); for anyone (principal None), only no condition."""
    condition = statement.get("Condition")
    if not condition:
        return True
    if (
        principal is None
        or list(condition) != ["ArnNotEquals"]
        or list(condition["ArnNotEquals"]) != ["aws:PrincipalArn"]
    ):
        return False
    return {"Fn::GetAtt": [principal, "Arn"]} not in listed(condition["ArnNotEquals"]["aws:PrincipalArn"])


def bucket_denies(template: dict[str, Any], principal: str | None, action: str, key: str) -> bool:
    """Whether the store's bucket policy denies, unconditionally, `action` on the key to the role
    `principal` (a logical id), or to anyone (principal None: statements for "*" only). A deny
    to all but some roles (ArnNotEquals aws:PrincipalArn) counts for the roles it names not."""
    bucket_id, _ = only(template, "AWS::S3::Bucket", "StorageStore")
    (policy,) = [
        p
        for p in by_type(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    arn = f"arn:aws:s3:::STORE/{key}"
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        named = listed(statement.get("Principal", {}).get("AWS"))
        applies = "*" in named or (principal and {"Fn::GetAtt": [principal, "Arn"]} in named)
        if statement["Effect"] != "Deny" or not applies or not _applies_to(statement, principal):
            continue
        if not any(fnmatch.fnmatchcase(action, a) for a in listed(statement["Action"])):
            continue
        if "NotResource" in statement:
            if not any(
                fnmatch.fnmatchcase(arn, render(r, bucket_id)) for r in listed(statement["NotResource"])
            ):
                return True
        elif any(fnmatch.fnmatchcase(arn, render(r, bucket_id)) for r in listed(statement["Resource"])):
            return True
    return False
