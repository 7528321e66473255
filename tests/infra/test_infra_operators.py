"""The operators' managed policy: what `buildfarm trigger`, `status` and `plan` call, on this
stack's state machine, its executions and Map runs, and its store, read only."""

from __future__ import annotations

from typing import Any

from template_helpers import by_type, only

from buildfarm.workflow_names import Outputs

# Every AWS call the CLI makes for an operator (buildfarm.cli.trigger; the store reads of
# status and plan): describe_stacks, start_execution, list_executions, describe_execution,
# get_execution_history, describe_map_run; stopping an execution is the operator's too.
EXPECTED = {
    "cloudformation:DescribeStacks",
    "states:StartExecution",
    "states:ListExecutions",
    "states:DescribeExecution",
    "states:GetExecutionHistory",
    "states:StopExecution",
    "states:DescribeMapRun",
    "s3:ListBucket",
    "s3:GetObject",
}


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    _, policy = only(template, "AWS::IAM::ManagedPolicy", "Operators")
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_operators_get_exactly_what_the_cli_calls_and_write_nothing(template) -> None:
    statements = _statements(template)
    assert all(s["Effect"] == "Allow" for s in statements)
    assert {action for s in statements for action in _actions(s)} == EXPECTED
    policy_id, _ = only(template, "AWS::IAM::ManagedPolicy", "Operators")
    assert template["Outputs"][Outputs.OPERATOR_POLICY_ARN]["Value"] == {"Ref": policy_id}


def test_each_grant_names_this_stacks_resources(template) -> None:
    machine_id = next(iter(by_type(template, "AWS::StepFunctions::StateMachine")))
    bucket_id, _ = only(template, "AWS::S3::Bucket", "Store")
    by_sid = {s["Sid"]: s["Resource"] for s in _statements(template)}
    assert by_sid["FindTheStateMachine"] == {"Ref": "AWS::StackId"}
    assert by_sid["StartAndListExecutions"] == {"Ref": machine_id}
    assert by_sid["ReadTheStore"] == {"Fn::GetAtt": [bucket_id, "Arn"]}
    assert by_sid["ReadTheStoreObjects"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}
    for sid, kind, tail in (("FollowExecutions", ":execution:", ":*"), ("FollowMapRuns", ":mapRun:", "/*:*")):
        parts = by_sid[sid]["Fn::Join"][1]
        text = "".join(p if isinstance(p, str) else "<token>" for p in parts)
        assert kind in text and text.endswith(tail), (sid, parts)
        assert {"Fn::Select": [6, {"Fn::Split": [":", {"Ref": machine_id}]}]} in parts  # this machine's name
