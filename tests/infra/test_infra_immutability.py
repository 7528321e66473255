"""Published builds are immutable, enforced by the bucket, and the grants around them say what
they grant: the store's bucket policy, the workflow's TerminateJob, the cdk-nag acknowledgements
(template assertions on the session's synthesis; helpers from template_helpers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from template_helpers import (
    REPO,
    allowed,
    bucket_denies,
    by_type,
    job_role,
    job_roles,
    only,
    role_of,
    runtime_job_role,
    runtime_job_roles,
)

from buildfarm.workflow_names import STACK_NAME

# Checks of the session's CDK synthesis (`python app.py`, most of a minute): not in `-m 'not slow'`.
pytestmark = pytest.mark.slow


def test_bucket_refuses_any_write_under_builds_that_is_not_create_only(template: dict[str, Any]) -> None:
    """Immutability lives in the bucket, not only in the builder: a Deny for every principal on
    s3:PutObject under builds/* and runtimes/* (issue 16: runtime builds, created once too), and
    logs/* (a build number's failure record, written once), when the request has no
    If-None-Match header."""
    from aws_cdk.assertions import Match, Template

    store_id, _ = only(template, "AWS::S3::Bucket", "StorageStore")
    statement = {
        "Sid": "BuildsAreCreateOnly",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "s3:PutObject",
        "Resource": [
            {"Fn::Join": ["", [{"Fn::GetAtt": [store_id, "Arn"]}, f"/{prefix}/*"]]}
            for prefix in ("builds", "logs", "runtimes")
        ],
        "Condition": {"Null": {"s3:if-none-match": "true"}},
    }
    Template.from_json(template).has_resource_properties(
        "AWS::S3::BucketPolicy",
        {"Bucket": {"Ref": store_id}, "PolicyDocument": {"Statement": Match.array_with([statement])}},
    )
    # Exactly this: no other statement (or condition) loosens or duplicates it.
    policy = next(
        r
        for r in by_type(template, "AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": store_id}
    )
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert [s for s in statements if s.get("Sid") == statement["Sid"]] == [statement]
    assert not any(s["Effect"] == "Allow" and "builds" in json.dumps(s.get("Resource")) for s in statements)


@pytest.mark.parametrize(
    "key",
    [
        "builds/3.13.5/debian-12/x86_64/1/python-3.13.5-debian-12-x86_64.tar.gz",
        "runtimes/svc/2.1.0/debian-12/x86_64/1/manifest.json",
        f"keys/{'ab' * 32}.pub",
    ],
)
def test_no_one_deletes_a_published_build_or_key(template: dict[str, Any], key: str) -> None:
    """In a versioned bucket a delete leaves a delete marker, and a create-only PUT over it
    succeeds: the bucket refuses deletes (of the object or of any version) under builds/,
    runtimes/ and keys/ to everyone, so a published name keeps its bytes."""
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
        assert bucket_denies(template, None, action, key), action
    for working in ("runs/e1.json", "claims/3.13.5/debian-12/x86_64.json", "plans/e1/items.json"):
        assert not bucket_denies(template, None, "s3:DeleteObject", working), working


def test_acknowledgements_of_the_builder_and_workflow_grants_say_what_they_grant(synthesis) -> None:
    metadata = json.loads((synthesis.outdir / f"{STACK_NAME}.metadata.json").read_text())
    reasons = {
        rule: reason
        for path, entries in metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
        if "AwsSolutions-IAM5" in rule and ("/Batch/JobRole/" in path or "/Workflow/Policy" in path)
    }
    job = {rule: reason for rule, reason in reasons.items() if "/JobRole/debian-12-x86_64" in reason}
    # Only the cell's own keys below builds/ and logs/ (runtimes/: the runtime jobs' role's).
    assert sorted(rule.rsplit(".Arn>/", 1)[1] for rule in job) == [
        "builds/*/debian-12/x86_64/*]", "logs/*/debian-12/x86_64/*]"
    ]  # fmt: skip
    sids = (
        "BuildsAreCreateOnly",
        "PublishedBuildsStay",
        "OnlyThePublishSideSigns",
        "BuildersWriteOnlyTheirPrefixes",
        "NoKeysBelowABuild",  # IAM's * spans '/': the patterns alone reach below other cells' builds
    )
    for reason in job.values():
        assert "debian-12/x86_64" in reason and "cannot write" in reason and "claims" in reason
        assert all(sid in reason for sid in sids), reason
        assert "spans '/'" in reason
    (terminate,) = [reason for rule, reason in reasons.items() if rule.endswith(":job/*]")]
    assert "TerminateJob" in terminate
    definitions = [rule for rule in reasons if ":job-definition/" in rule]
    assert len(definitions) == 40 and all(rule.endswith(":*]") for rule in definitions)
    assert f":job-definition/{STACK_NAME}-debian-12-x86_64:*]" in " ".join(definitions)
    assert f":job-definition/{STACK_NAME}-runtime-debian-12-x86_64:*]" in " ".join(definitions)


def test_workflow_terminates_only_batch_jobs_of_its_account_and_region(template: dict[str, Any]) -> None:
    workflow = role_of(template, "WorkflowRole")
    statements = [
        s
        for p in by_type(template, "AWS::IAM::Policy").values()
        if {"Ref": workflow} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    terminate = [s for s in statements if "batch:TerminateJob" in json.dumps(s["Action"])]
    assert len(terminate) == 1 and terminate[0]["Action"] == "batch:TerminateJob"
    # TerminateJob authorizes on the job ARN (job/<id>); ids exist only once submitted.
    assert terminate[0]["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":batch:", {"Ref": "AWS::Region"}, ":",
             {"Ref": "AWS::AccountId"}, ":job/*"],
        ]
    }  # fmt: skip
    (describe,) = [s for s in statements if "batch:DescribeJobs" in json.dumps(s["Action"])]
    assert describe["Action"] == "batch:DescribeJobs" and describe["Resource"] == "*"


UV_CACHE_KEY = "cache/uv/debian-12-x86_64.tar.gz"


def job_definition_environment(template: dict[str, Any]) -> dict[str, str]:
    """The debian-12/x86_64 runtime job definition's container environment (its literal values)."""
    (job,) = [
        r["Properties"]
        for r in by_type(template, "AWS::Batch::JobDefinition").values()
        if r["Properties"]["JobDefinitionName"] == f"{STACK_NAME}-runtime-debian-12-x86_64"
    ]
    variables = job["ContainerProperties"]["Environment"]
    return {e["Name"]: e["Value"] for e in variables if isinstance(e["Value"], str)}


def test_by_default_no_job_role_may_touch_the_shared_uv_cache(template: dict[str, Any]) -> None:
    """The shared uv cache is off by default (buildfarm.runtimes.uv_cache: uv does not re-check
    what it unpacked into its cache, so one runtime's build code could change what later runtimes
    of its platform install): no job role has a cache/uv/ grant (no UvCache statement), the
    bucket refuses builders' writes there, and the jobs are not told to use it."""
    for job in (*job_roles(template), *runtime_job_roles(template)):
        for action in ("s3:GetObject", "s3:PutObject"):
            assert not allowed(template, job, action, f"arn:aws:s3:::STORE/{UV_CACHE_KEY}"), (job, action)
        assert bucket_denies(template, job, "s3:PutObject", UV_CACHE_KEY), job
    policies = [p for p in by_type(template, "AWS::IAM::Policy").values() if "JobRole" in json.dumps(p)]
    assert policies and "cache/uv" not in json.dumps(policies) and '"UvCache"' not in json.dumps(policies)
    assert "BUILDFARM_RUNTIME_UV_CACHE" not in job_definition_environment(template)


def test_enabled_the_job_role_replaces_only_its_uv_cache_which_is_never_served(
    uv_cache_template: dict[str, Any],
) -> None:
    """`-c buildfarm:runtimeUvCache=true`: runtime jobs keep uv's download cache in the store
    (cache/uv/<platform>-<arch>.tar.gz, buildfarm.runtimes.uv_cache): the job role reads and
    overwrites that one key, no other cache/ key; the bucket's create-only rule does not cover it
    (an overwrite is the point), the CDN may not serve it, and replaced versions expire after a
    day. The jobs are told to use it."""
    template = uv_cache_template
    job = runtime_job_role(template)
    key = f"arn:aws:s3:::STORE/{UV_CACHE_KEY}"
    assert allowed(template, job, "s3:GetObject", key) and allowed(template, job, "s3:PutObject", key)
    assert not allowed(template, job, "s3:DeleteObject", key)
    for other in (
        "cache/ccache/x.tar.gz",
        "cache/uv.tar.gz",
        "cachex/uv/a",
        "cache/uv/debian-13-x86_64.tar.gz",
    ):
        assert not allowed(template, job, "s3:PutObject", f"arn:aws:s3:::STORE/{other}"), other
    for role in by_type(template, "AWS::IAM::Role"):
        if role != job:
            assert not allowed(template, role, "s3:PutObject", key), role
    assert not allowed(template, job_role(template), "s3:GetObject", key)  # Python builds use no uv
    assert job_definition_environment(template)["BUILDFARM_RUNTIME_UV_CACHE"] == "true"


@pytest.mark.parametrize("enabled", [False, True])
def test_the_cache_prefix_is_never_served_and_replaced_versions_expire(request, enabled: bool) -> None:
    template = request.getfixturevalue("uv_cache_template" if enabled else "template")
    store_id, bucket = only(template, "AWS::S3::Bucket", "StorageStore")
    policy = next(
        r
        for r in by_type(template, "AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": store_id}
    )
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (cdn,) = [s for s in statements if s.get("Sid") == "CdnServesOnlyPublishedContent"]
    assert any("/cache/*" in json.dumps(resource) for resource in cdn["Resource"])
    rules = {rule["Id"]: rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-replaced-caches"] == {
        "Id": "expire-replaced-caches",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "Prefix": "cache/",
        "Status": "Enabled",
    }


def job_role_acknowledgements(synthesis: Any) -> dict[tuple[str, str], str]:
    """(construct path, rule) -> reason of every cdk-nag acknowledgement on a job role."""
    metadata = json.loads((synthesis.outdir / f"{STACK_NAME}.metadata.json").read_text())
    return {
        (path, rule): reason
        for path, entries in metadata.items()
        if "/Batch/JobRole/" in path or "/Batch/RuntimeJobRole/" in path
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    }


def test_enabled_the_stack_still_passes_cdk_nag_and_acknowledges_only_what_it_grants(
    synthesis, uv_cache_synthesis
) -> None:
    """The UvCache grant names one key (no wildcard): cdk-nag stays clean with it, and the job
    roles' acknowledgements (their wildcards under builds/, runtimes/ and logs/) are the same
    with it as without; none is about the uv cache."""
    assert uv_cache_synthesis.returncode == 0, uv_cache_synthesis.output[-6000:]
    report = uv_cache_synthesis.outdir / "validation-report.json"
    if report.exists():
        assert [v for p in json.loads(report.read_text())["pluginReports"] for v in p["violations"]] == []
    enabled = job_role_acknowledgements(uv_cache_synthesis)
    assert enabled and enabled == job_role_acknowledgements(synthesis)
    assert "cache" not in json.dumps(list(enabled))


def test_the_builders_preflight_counts_only_its_own_builds_files(monkeypatch) -> None:
    """builder_image/driver/upload.py's S3Store refuses a build number whose directory holds a
    file; a key nested deeper below it (a plant the bucket now refuses) is no file of that build
    and must not make a free build number look taken."""
    import boto3
    from moto import mock_aws

    monkeypatch.syspath_prepend(str(REPO / "builder_image"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(variable, raising=False)
    from driver.upload import S3Store

    build = "builds/3.13.5/ubuntu-2404/aarch64/4"
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="farm")
        for planted in ("debian-12/x86_64/x", "a/b", "c/d"):
            client.put_object(Bucket="farm", Key=f"python/{build}/{planted}", Body=b"planted")
        client.put_object(Bucket="farm", Key=f"python/{build}0/manifest.json", Body=b"build 40")
        store = S3Store("s3://farm/python")
        # One entry a page: the listing's subfolders ("a/", "c/", "debian-12/") come first.
        listing = store.client.list_objects_v2
        monkeypatch.setattr(store.client, "list_objects_v2", lambda **kw: listing(**kw, MaxKeys=1))
        assert not store.cell_exists(build)
        client.put_object(Bucket="farm", Key=f"python/{build}/manifest.json", Body=b"{}")
        assert store.cell_exists(build)
