"""`buildfarm trigger` against moto's server on 127.0.0.1 (AWS_ENDPOINT_URL): the deployed
workflow (the synthesized state machine, as in test_infra_workflow) started and followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import moto_farm as wf
import pytest
import requests
import stand_in
from moto.server import ThreadedMotoServer

from buildfarm import clock
from buildfarm.cli import main
from buildfarm.cli.trigger import STATE_MACHINE_ARN, console_url
from buildfarm.workflow_names import STACK_NAME, Errors, Outputs

REPO = Path(__file__).resolve().parents[2]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": wf.REGION,
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with wf.moto_patched(), pytest.MonkeyPatch.context() as env, clock.using(clock.fixed_clock(wf.NOW)):
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        url = f"http://{host}:{port}"
        # moto's Step Functions interpreter calls Lambda and Batch at localhost:$MOTO_PORT.
        env.setenv("MOTO_PORT", str(port))
        requests.post(f"{url}/moto-api/config", json=wf.MOTO_CONFIG, timeout=10).raise_for_status()
        try:
            yield url
        finally:
            moto.stop()


@pytest.fixture
def farm(server: str, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[wf.Farm]:
    requests.post(f"{server}/moto-api/reset", timeout=10).raise_for_status()
    requests.post(f"{server}/moto-api/config", json=wf.MOTO_CONFIG, timeout=10).raise_for_status()
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": server}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "BUILDFARM_STATE_MACHINE_ARN", "BUILDFARM_STACK"):
        monkeypatch.delenv(name, raising=False)
    stand_in.reset_stand_in()
    farm = wf.Farm(template)
    farm.seed_releases({"3.13.5": wf.SHA_3135})
    # The stack's outputs, as `cdk deploy` leaves them (for --stack).
    boto3.client("cloudformation").create_stack(
        StackName=STACK_NAME,
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {Outputs.STATE_MACHINE_ARN: {"Value": farm.state_machine_arn}},
            }
        ),
    )
    yield farm


def buildfarm(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "buildfarm"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


@pytest.mark.slow  # a Step Functions execution in moto, from the synthesized template
def test_trigger_wait_follows_the_execution_and_fails_naming_the_failed_cell(farm: wf.Farm) -> None:
    stand_in.FAILING["3.13.5/debian-12/aarch64"] = "module _gdbm missing"
    result = buildfarm(
        "trigger", "--versions", "3.13.5", "--platforms", "debian-12", "--wait", "--poll", "0.2"
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    (execution,) = farm.sfn.list_executions(stateMachineArn=farm.state_machine_arn)["executions"]
    assert f"started {execution['executionArn']}" in out
    assert console_url(execution["executionArn"]) in out
    assert console_url(execution["executionArn"]).startswith(
        "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/arn:aws:states:"
    )
    assert "plan    2 cells: 2 to build" in out
    assert "cells finished 2/2" in out
    assert "publish 1 published, 1 failed" in out
    assert "failed 3.13.5/debian-12/aarch64: self-test: module _gdbm missing" in out
    assert "FAILED  arn:aws:states:" in out and Errors.CELLS_FAILED in out
    assert json.loads(farm.sfn.describe_execution(executionArn=execution["executionArn"])["input"]) == {
        "versions": ["3.13.5"],
        "platforms": ["debian-12"],
    }
    assert farm.published() == {"3.13.5/debian-12/x86_64": 1}


@pytest.mark.slow  # a Step Functions execution in moto, from the synthesized template
def test_break_glass_force_rebuilds_and_succeeds(farm: wf.Farm, capsys: pytest.CaptureFixture[str]) -> None:
    cell = ["--versions", "3.13.5", "--platforms", "rhel-9", "--arches", "x86_64"]
    assert main(["trigger", *cell, "--state-machine", farm.state_machine_arn, "--wait", "--poll", "0.2"]) == 0
    assert farm.published() == {"3.13.5/rhel-9/x86_64": 1}
    assert main(["trigger", "--force", *cell, "--wait", "--poll", "0.2"]) == 0  # --stack default
    out = capsys.readouterr().out
    assert "publish 1 published, 0 failed" in out
    assert out.rstrip().splitlines()[-1].startswith("SUCCEEDED  arn:aws:states:")
    assert farm.published() == {"3.13.5/rhel-9/x86_64": 2}
    inputs = [
        json.loads(farm.sfn.describe_execution(executionArn=e["executionArn"])["input"])
        for e in farm.sfn.list_executions(stateMachineArn=farm.state_machine_arn)["executions"]
    ]
    assert {"versions": ["3.13.5"], "platforms": ["rhel-9"], "arches": ["x86_64"], "force": True} in inputs


@pytest.mark.slow  # a Step Functions execution in moto, from the synthesized template
def test_trigger_without_wait_returns_at_once_with_the_execution(farm: wf.Farm, capsys) -> None:
    assert main(["trigger", "--input", '{"dry_run": true}', "--name", "dry-1"]) == 0
    out = capsys.readouterr().out
    assert f"started {farm.state_machine_arn.replace(':stateMachine:', ':execution:')}:dry-1" in out
    execution = farm.run_wait(out.split()[1])
    assert execution["status"] == "SUCCEEDED"
    assert stand_in.SUBMITTED == []


@pytest.mark.slow  # starts the moto server farm from the synthesized template
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--versions", "3.13.x"], "malformed Python version '3.13.x'"),
        (["--platforms", "debian-99"], "unknown platform 'debian-99'"),
        (["--input", '{"versions": ["3.13.5"], "colour": "red"}'], "unknown key 'colour'"),
        (["--input", "{}", "--force"], "either --input or"),
        (["--stack", "NoSuchStack"], "stack 'NoSuchStack'"),
        (["--state-machine", "arn:aws:s3:::bucket"], "not a state machine ARN"),
        (["--state-machine", "arn:stateMachine:x"], "not a state machine ARN: 'arn:stateMachine:x'"),
        (
            ["--state-machine", "arn:aws:states:us-east-1:123456789012:stateMachine:farm\n"],
            "not a state machine ARN",
        ),
        (
            ["--state-machine", "arn:aws:states:us-east-1:12345678901\u0662:stateMachine:farm"],
            "not a state machine ARN",
        ),
    ],
)
def test_bad_input_or_target_is_one_line_exit_2_and_starts_nothing(
    farm: wf.Farm, args, message, capsys
) -> None:
    assert main(["trigger", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("buildfarm trigger: error: ")
    assert farm.sfn.list_executions(stateMachineArn=farm.state_machine_arn)["executions"] == []


def test_wait_lists_each_cell_where_the_map_run_children_can_be_listed() -> None:
    """On AWS, ListExecutions(mapRunArn) returns the Map's child executions; each child's output
    is the item's result ({"cell", "status", "error"}). moto cannot list them (the tests above
    exercise the fallback), so this replays AWS's answer shapes."""
    from buildfarm.cli.trigger import _Follower

    children = {
        "arn:child:1": (
            "SUCCEEDED",
            {"cell": "3.13.5/debian-12/x86_64", "status": "succeeded", "job_id": "j1"},
        ),
        "arn:child:2": (
            "SUCCEEDED",
            {"cell": "3.13.5/debian-12/aarch64", "status": "failed", "error": "{...}"},
        ),
        "arn:child:3": ("RUNNING", None),
    }

    class StepFunctionsAnswers:
        def list_executions(self, mapRunArn: str) -> dict[str, Any]:
            assert mapRunArn == "arn:maprun"
            return {
                "executions": [
                    {"executionArn": arn, "name": arn[-1], "status": status}
                    for arn, (status, _) in children.items()
                ]
            }

        def describe_execution(self, executionArn: str) -> dict[str, Any]:
            status, output = children[executionArn]
            return {"status": status, **({"output": json.dumps(output)} if output else {})}

    lines: list[str] = []
    follower = _Follower(StepFunctionsAnswers(), "arn:execution", lines.append)
    follower.map_run_arn = "arn:maprun"
    follower.on_map_run()
    follower.on_map_run()  # each cell is reported once
    assert lines == ["  built  3.13.5/debian-12/x86_64", "  FAILED 3.13.5/debian-12/aarch64: {...}"]


@pytest.mark.parametrize(
    ("arn", "region"),
    [
        ("arn:aws:states:us-east-1:123456789012:stateMachine:farm", "us-east-1"),
        ("arn:aws-cn:states:cn-north-1:123456789012:stateMachine:build_farm-1", "cn-north-1"),
        ("arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:farm", "us-gov-west-1"),
    ],
)
def test_a_state_machine_arn_gives_its_region(arn, region):
    assert STATE_MACHINE_ARN.fullmatch(arn)["region"] == region
