"""Who may write what in the store: the IAM policies of the synthesized stack's roles
(template assertions on the session's synthesis)."""

from __future__ import annotations

import json

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
)

from buildfarm.workflow_names import STACK_NAME
from infra.functions import stage_lambda_bundle

pytestmark = pytest.mark.slow


def test_job_roles_write_only_their_kinds_prefixes_never_claims_or_catalogs(template) -> None:
    """The Python builder writes builds/ and logs/, a runtime job runtimes/ (infra.job_roles)."""
    job, runtime_job = (
        job_role(template, "debian-12", "x86_64"),
        runtime_job_role(template, "debian-12", "x86_64"),
    )
    cell = "3.13.5/debian-12/x86_64"
    runtime = "runtimes/svc/2.1.0/debian-12/x86_64/1"
    for role, keys in (
        (job, (f"builds/{cell}/1/manifest.json", f"logs/{cell}/1/failure.json")),
        (runtime_job, (f"{runtime}/manifest.json",)),
    ):
        for key in keys:
            assert allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), key
            assert not bucket_denies(template, role, "s3:PutObject", key), key
    assert allowed(template, job, "s3:GetObject", f"arn:aws:s3:::STORE/builds/{cell}/1/manifest.json")
    # A runtime job chooses its Python from versions.json, reads its tarball, heads its own build.
    for key in (
        "versions.json",
        f"builds/{cell}/1/python-3.13.5-debian-12-x86_64.tar.gz",
        f"{runtime}/manifest.json",
    ):
        assert allowed(template, runtime_job, "s3:GetObject", f"arn:aws:s3:::STORE/{key}"), key
    for key in (
        "versions.json",
        "index.html",
        "download-metadata/debian-12.json",
        "releases.json",
        "plans/x/items.json",
        f"claims/{cell}.json",
        "install.sh",
        "runs/e1.json",
    ):
        for role in (job, runtime_job):
            assert not allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), key
        assert not allowed(template, job, "s3:GetObject", f"arn:aws:s3:::STORE/{key}"), key
        # The bucket refuses it too, whatever IAM grants any job later.
        assert all(bucket_denies(template, b, "s3:PutObject", key) for b in job_roles(template)), key
    for role in (job, runtime_job):
        assert not allowed(template, role, "s3:GetObject", f"arn:aws:s3:::STORE/logs/{cell}/1/failure.json")
        for action in ("s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectAcl"):
            assert not allowed(template, role, action, f"arn:aws:s3:::STORE/builds/{cell}/1/x"), action
            assert not allowed(template, role, action, f"arn:aws:s3:::STORE/{runtime}/x"), action


@pytest.mark.parametrize(
    "key",
    [
        "builds/3.13.5/rhel-9/x86_64/1/manifest.json",
        "builds/3.13.5/debian-12/aarch64/1/manifest.json",
        "logs/3.13.5/debian-13/x86_64/1/failure.json",
        "runtimes/svc/2.1.0/debian-12/aarch64/1/manifest.json",
        "cache/uv/debian-13-x86_64.tar.gz",
    ],
)
def test_a_job_role_writes_and_reads_only_its_own_platform_and_arch(template, key: str) -> None:
    """A compromised debian-12/x86_64 build or runtime job cannot plant a build, log, runtime
    build or uv cache for another cell (which the publish side would then sign), nor read
    another cell's builds."""
    for job in (job_role(template, "debian-12", "x86_64"), runtime_job_role(template, "debian-12", "x86_64")):
        assert not allowed(template, job, "s3:PutObject", f"arn:aws:s3:::STORE/{key}")
        assert not allowed(template, job, "s3:GetObject", f"arn:aws:s3:::STORE/{key}")
    owner = job_role(template, *key.split("/")[2:4]) if key.startswith("builds/") else None
    if owner:  # the cell's own role may
        assert allowed(template, owner, "s3:PutObject", f"arn:aws:s3:::STORE/{key}")


def test_every_job_definition_runs_with_its_own_kind_platform_and_arch_role(template) -> None:
    definitions = by_type(template, "AWS::Batch::JobDefinition")
    assert len(definitions) == 2 * len(job_roles(template)) == 40
    for definition in definitions.values():
        name = definition["Properties"]["JobDefinitionName"]
        cell = name.removeprefix(f"{STACK_NAME}-")
        role = runtime_job_role if cell.startswith("runtime-") else job_role
        platform, arch = cell.removeprefix("runtime-").rsplit("-", 1)
        expected = {"Fn::GetAtt": [role(template, platform, arch), "Arn"]}
        assert definition["Properties"]["ContainerProperties"]["JobRoleArn"] == expected, name


def test_only_the_publishing_functions_write_versions_json(template) -> None:
    writers = {
        lid
        for lid in by_type(template, "AWS::IAM::Role")
        if allowed(template, lid, "s3:PutObject", "arn:aws:s3:::STORE/versions.json")
    }
    publishers = {
        "FunctionsPublishCellRole",
        "FunctionsPublishRuntimeRole",
        "FunctionsFinalizeRole",
        "FunctionsRecoverRole",
    }
    assert writers == {role_of(template, name) for name in publishers}
    plan = role_of(template, "FunctionsPlanRole")
    assert allowed(template, plan, "s3:PutObject", "arn:aws:s3:::STORE/plans/e1/items.json")
    # Open-run markers: Plan opens (and closes an empty run); Finalize and Recover close.
    for name in ("FunctionsPlanRole", "FunctionsFinalizeRole", "FunctionsRecoverRole"):
        assert allowed(
            template, role_of(template, name), "s3:DeleteObject", "arn:aws:s3:::STORE/runs/e1.json"
        )
    cell = role_of(template, "FunctionsPublishCellRole")
    assert not allowed(template, cell, "s3:DeleteObject", "arn:aws:s3:::STORE/runs/e1.json")
    for role in map(lambda name: role_of(template, name), (*publishers, "FunctionsPlanRole")):
        for key in ("builds/3.13.5/debian-12/x86_64/1/x", "logs/3.13.5/debian-12/x86_64/1/build.log"):
            assert not allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), (role, key)
            assert not allowed(template, role, "s3:DeleteObject", f"arn:aws:s3:::STORE/{key}"), (role, key)
    assert not allowed(
        template, plan, "s3:PutObject", "arn:aws:s3:::STORE/builds/3.13.5/debian-12/x86_64/1/x"
    )
    workflow = role_of(template, "WorkflowRole")
    assert allowed(template, workflow, "s3:GetObject", "arn:aws:s3:::STORE/plans/e1/items.json")
    assert not allowed(template, workflow, "s3:GetObject", "arn:aws:s3:::STORE/versions.json")


def test_every_role_that_signs_versions_json_may_repin_install_sh(template) -> None:
    """A signed write of versions.json with a rotated key pins that key in install.sh
    (catalog.install_script.pin_signing_key): each role that signs may read and replace it."""
    for name in ("PublishCell", "PublishRuntime", "Finalize", "Recover"):
        role = role_of(template, f"Functions{name}Role")
        assert allowed(template, role, "s3:PutObject", "arn:aws:s3:::STORE/versions.json.sig"), name
        for action in ("s3:GetObject", "s3:PutObject"):
            assert allowed(template, role, action, "arn:aws:s3:::STORE/install.sh"), (name, action)


def test_publish_runtime_writes_runtimes_signed_files_and_versions_json_only(template, tmp_path) -> None:
    role = role_of(template, "FunctionsPublishRuntimeRole")
    runtime = "runtimes/svc/2.1.0/debian-12/x86_64/1"
    signed = (f"{runtime}/SHA256SUMS", f"{runtime}/SHA256SUMS.sig", "versions.json", "versions.json.sig")
    state = (
        "claims/runtimes/svc/2.1.0/debian-12/x86_64.json",
        "plans/e1/runtime-outcomes/svc/2.1.0/debian-12/x86_64.json",
    )
    for key in (*signed, *state):
        assert allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), key
    built = (
        f"{runtime}/manifest.json",
        f"{runtime}/runtime-svc.tar.gz",
        "builds/3.13.5/debian-12/x86_64/1/x",
    )
    for key in (*built, "index.html", "releases.json"):
        assert not allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), key
    assert allowed(template, role, "s3:GetObject", f"arn:aws:s3:::STORE/{runtime}/manifest.json")
    # Finalize decides the runtime items PublishRuntime did not: the same signed files.
    finalize = role_of(template, "FunctionsFinalizeRole")
    assert allowed(template, finalize, "s3:PutObject", f"arn:aws:s3:::STORE/{runtime}/SHA256SUMS.sig")
    assert not allowed(template, finalize, "s3:PutObject", f"arn:aws:s3:::STORE/{runtime}/manifest.json")
    # With cloudRuntimes (the default), the bundle carries the runtime definitions Plan reads
    # (outside a checkout); without, none, so Plan plans no runtime cell.
    bundle = stage_lambda_bundle(tmp_path / "bundle", runtime_definitions=True)
    assert (bundle / "buildfarm" / "runtime_definitions" / "fastapi-demo.toml").is_file()
    assert (bundle / "buildfarm" / "runtime_definitions" / "fastapi-demo" / "requirements.txt").is_file()
    plain = stage_lambda_bundle(tmp_path / "plain", runtime_definitions=False)
    assert not (plain / "buildfarm" / "runtime_definitions").exists()


@pytest.mark.parametrize(
    "key",
    [
        # IAM's `*` spans '/': builds/*/debian-12/x86_64/* alone matches these, nested below
        # another cell's build (whose builder would then find its build number taken).
        "builds/3.13.5/ubuntu-2404/aarch64/4/debian-12/x86_64/x",
        "logs/3.13.5/ubuntu-2404/aarch64/4/debian-12/x86_64/failure.json",
        "runtimes/svc/2.1.0/rhel-9/aarch64/1/x/debian-12/x86_64/manifest.json",
        "builds/3.13.5/debian-12/x86_64/1/sub/python.tar.gz",
        # ... and these, at the layout's depth: a cell directory moved down a segment, whose
        # build segment is then an arch.
        "builds/3.13.5/rhel-9/debian-12/x86_64/index.html",
        "logs/3.13.5/rhel-9/debian-12/x86_64/failure.json",
        "runtimes/svc/2.1.0/rhel-9/debian-12/x86_64/manifest.json",
    ],
)
def test_no_one_writes_a_key_deeper_than_a_builds_files_or_out_of_place(template, key: str) -> None:
    job = (runtime_job_role if key.startswith("runtimes/") else job_role)(template, "debian-12", "x86_64")
    assert not allowed(template, job, "s3:PutObject", f"arn:aws:s3:::STORE/{key}")
    assert bucket_denies(template, None, "s3:PutObject", key)  # whoever asks
    # The cell's own files, at the layout's depth, stay writable.
    own = key.split("/")[0] + (
        "/svc/2.1.0/debian-12/x86_64/1/manifest.json" if key.startswith("runtimes/") else
        "/3.13.5/debian-12/x86_64/1/manifest.json"
    )  # fmt: skip
    assert allowed(template, job, "s3:PutObject", f"arn:aws:s3:::STORE/{own}"), own
    assert not bucket_denies(template, None, "s3:PutObject", own), own


def test_only_plan_writes_a_plans_record_and_items_the_publishers_only_outcomes(template) -> None:
    plan = role_of(template, "FunctionsPlanRole")
    record = ("plans/e1/plan.json", "plans/e1/items.json", "plans/e1/runtime-items.json")
    cell_outcome = "plans/e1/outcomes/failed/3.13.5/debian-12/x86_64.json"
    runtime_outcome = "plans/e1/runtime-outcomes/svc/2.1.0/debian-12/x86_64.json"
    for key in record:
        assert allowed(template, plan, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), key
    writers = {
        "FunctionsPublishCellRole": (cell_outcome,),
        "FunctionsPublishRuntimeRole": (runtime_outcome,),
        "FunctionsFinalizeRole": (cell_outcome, runtime_outcome),
        "FunctionsRecoverRole": (cell_outcome, runtime_outcome),
    }
    for name, outcomes in writers.items():
        role = role_of(template, name)
        for key in outcomes:
            assert allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), (name, key)
        for key in (*record, "plans/e1/other.json", "plans/results/x/manifest.json"):
            assert not allowed(template, role, "s3:PutObject", f"arn:aws:s3:::STORE/{key}"), (name, key)
    # The bucket refuses the record to every other role, whatever IAM grants it later.
    others = [lid for lid in by_type(template, "AWS::IAM::Role") if lid != plan]
    for key in record:
        assert all(bucket_denies(template, role, "s3:PutObject", key) for role in others), key
        assert not bucket_denies(template, plan, "s3:PutObject", key), key
    # The Maps' ItemReader reads the items files, nothing else under plans/.
    workflow = role_of(template, "WorkflowRole")
    for key in ("plans/e1/items.json", "plans/e1/runtime-items.json"):
        assert allowed(template, workflow, "s3:GetObject", f"arn:aws:s3:::STORE/{key}"), key
    for key in ("plans/e1/plan.json", cell_outcome):
        assert not allowed(template, workflow, "s3:GetObject", f"arn:aws:s3:::STORE/{key}"), key


def test_each_functions_acknowledgement_names_the_actions_it_has_on_that_key(synthesis, template) -> None:
    """A wildcard acknowledgement of a function's role says which actions it has on that key
    pattern: all of them, no other (one reason per pattern, not one per statement)."""
    metadata = json.loads((synthesis.outdir / f"{STACK_NAME}.metadata.json").read_text())
    checked = 0
    for path, entries in metadata.items():
        if not path.startswith(f"/{STACK_NAME}/Functions/") or not path.endswith("Role"):
            continue
        role = role_of(template, "Functions" + path.rsplit("/", 1)[1])
        for entry in entries:
            if entry["type"] != "aws:cdk:acknowledged-rules":
                continue
            for rule, reason in entry["data"].items():
                if ".Arn>/" not in rule:
                    continue
                key = rule.split(".Arn>/", 1)[1].removesuffix("]")
                granted = _store_actions(template, role, key)
                assert granted, (path, key)
                assert reason.split(": ", 1)[1].startswith(
                    f"{' and '.join(sorted(set(granted)))} on {key} "
                ), reason
                checked += 1
    assert checked > 20


def _store_actions(template, role: str, key: str) -> list[str]:
    """The actions of the role's statements that list the store key pattern as a resource."""
    bucket_id, _ = only(template, "AWS::S3::Bucket", "StorageStore")
    return [
        action
        for policy in by_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if f"arn:aws:s3:::STORE/{key}" in [render(r, bucket_id) for r in listed(statement["Resource"])]
        for action in listed(statement["Action"])
    ]
