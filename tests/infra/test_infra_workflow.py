"""The workflow runs in moto (see moto_farm.py): plan, build every cell, publish each as it is
built, finalize; a no-op; force; a failing cell; bad input; a plan too large for a payload."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from moto_farm import BUCKET, CDN_DOMAIN, SHA_3135, Farm
from openssl_check import openssl_verifies
from stand_in import FAILING, SUBMITTED

from buildfarm import clock
from buildfarm.attest.signing import fingerprint
from buildfarm.config import FarmConfig
from buildfarm.platforms import load_registry
from buildfarm.policy import select_cells
from buildfarm.releases import Release, ReleaseCatalog, load_seed
from buildfarm.workflow_input import WorkflowInput
from buildfarm.workflow_names import Errors, States

# Step Functions executions in moto's interpreter: minutes in all, so not in `-m 'not slow'`.
pytestmark = pytest.mark.slow


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
    handler sees (the farm's fixed clock): the lifecycle policy decides."""
    releases = {**load_seed().releases, **{v: load_seed().releases.get(v) or _fake(v) for v in seeded}}
    catalog = ReleaseCatalog(releases=releases)
    selection = select_cells(
        WorkflowInput(), catalog, lambda_config(farm), load_registry(), clock.now().date()
    )
    return {f"{r.version}/{p}/{a}" for r, p, a in selection.matrix}


def _fake(version: str) -> Release:
    return Release(version=version, sha256="ab" * 32, url="u")


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
    assert states[-1]["stateEnteredEventDetails"]["name"] == States.NOTHING_TO_BUILD


def test_force_makes_build_2_and_keeps_build_1_each_signed_with_the_stacks_key(
    farm: Farm, tmp_path: Path
) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    cells = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"], "arches": ["x86_64"]}
    assert farm.run(cells)["status"] == "SUCCEEDED"
    assert farm.published() == {"3.13.5/debian-12/x86_64": 1, "3.13.5/rhel-9/x86_64": 1}

    forced = farm.run({**cells, "force": True})
    assert forced["status"] == "SUCCEEDED", forced
    assert farm.published() == {"3.13.5/debian-12/x86_64": 2, "3.13.5/rhel-9/x86_64": 2}
    assert farm.exists("builds/3.13.5/debian-12/x86_64/1/manifest.json")
    assert farm.exists("builds/3.13.5/rhel-9/x86_64/2/python-3.13.5-2.x86_64.rpm")
    # Issue 15: the publish side signed each build and the catalog with the stack's KMS key.
    public_key = farm.signing_public_key()
    keys = farm.read_json("keys/keys.json")
    assert keys["current"] == fingerprint(public_key)
    assert farm.read(f"keys/{fingerprint(public_key).removeprefix('SHA256:')}.pub") == public_key
    for build in ("builds/3.13.5/debian-12/x86_64/1", "builds/3.13.5/rhel-9/x86_64/2"):
        sums = farm.read(f"{build}/SHA256SUMS").decode()
        assert {line.split("  ")[1] for line in sums.splitlines()} >= {
            "manifest.json", "sbom.cdx.json", "provenance.json"
        }  # fmt: skip
        for signed in ("SHA256SUMS", "provenance.json"):
            key = f"{build}/{signed}"
            assert openssl_verifies(public_key, farm.read(key), farm.read(f"{key}.sig")), key
    assert openssl_verifies(public_key, farm.read("versions.json"), farm.read("versions.json.sig"))


def test_one_failing_cell_fails_the_execution_naming_it_after_the_others_are_published(farm: Farm) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    FAILING["3.13.5/ubuntu-2404/aarch64"] = "module _tkinter missing"
    execution = farm.run({"versions": ["3.13.5"], "platforms": ["ubuntu-2404", "debian-12"]})
    assert execution["status"] == "FAILED"
    assert execution["error"] == Errors.CELLS_FAILED
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
    farm.set_environment(BUILDFARM_MAX_CELLS_PER_EXECUTION="1000")  # one execution, over the payload limit
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
