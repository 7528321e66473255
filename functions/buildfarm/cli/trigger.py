"""`buildfarm trigger`: start the deployed workflow (Step Functions) with a workflow input and,
with --wait, follow it until it ends, showing the cells as they finish.

The input is validated here with the same model the planner uses, so a typo fails at once,
with the same one-line message, instead of as a failed execution.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from buildfarm import clock
from buildfarm.aws_errors import aws_region, explain_aws_error, is_aws_error
from buildfarm.cli.arg_types import seconds
from buildfarm.errors import UsageError
from buildfarm.workflow_input import (
    InputError,
    add_matrix_arguments,
    parse_workflow_input,
    raw_input_from_args,
)
from buildfarm.workflow_names import STACK_NAME, Outputs, States

STATE_MACHINE_ENV = "BUILDFARM_STATE_MACHINE_ARN"
STACK_ENV = "BUILDFARM_STACK"
FINISHED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME (Step Functions' name rule: 1-80 of these).
STATE_MACHINE_ARN = re.compile(
    r"arn:aws(-[a-z]{1,10}){0,2}:states:(?P<region>[a-z]{2}(-[a-z]{2,10}){1,2}-[0-9]{1,2}):[0-9]{12}"
    r":stateMachine:[A-Za-z0-9_-]{1,80}"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trigger",
        help="start the deployed build farm (AWS Step Functions) and optionally follow it",
        description=(
            "Start the deployed workflow with a workflow input. Break glass (rebuild a release on "
            "every enabled platform not past end of support; name --platforms for ended ones): "
            "buildfarm trigger --force --versions 3.13.5"
        ),
    )
    add_matrix_arguments(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--state-machine",
        metavar="ARN",
        help=f"the state machine (default: ${STATE_MACHINE_ENV}, else the --stack output)",
    )
    target.add_argument(
        "--stack",
        metavar="NAME",
        help="read the state machine ARN from this CloudFormation stack's "
        f"{Outputs.STATE_MACHINE_ARN} output (default: ${STACK_ENV}, else {STACK_NAME})",
    )
    parser.add_argument(
        "--region",
        help="the stack's AWS region (default: $AWS_REGION, else $AWS_DEFAULT_REGION, else the profile's)",
    )
    parser.add_argument("--name", help="execution name (default: trigger-<UTC time>-<random>)")
    parser.add_argument(
        "--wait", action="store_true", help="follow the execution; exit 1 if it does not succeed"
    )
    parser.add_argument(
        "--poll",
        type=seconds(0.1, 3600),
        default=10.0,
        metavar="SECONDS",
        help="--wait: seconds between checks, 0.1 to 3600 (default 10)",
    )
    parser.set_defaults(func=run_trigger)


def console_url(execution_arn: str) -> str:
    region = execution_arn.split(":")[3]
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def execution_name(now: datetime | None = None) -> str:
    now = now or clock.now()
    return f"trigger-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _aws_problem(error: Exception, resource: str, hint: str = "") -> UsageError:
    """One line for a failed AWS call (what to set, for botocore's errors), exit 2."""
    if is_aws_error(error):
        return explain_aws_error(error, resource=resource, hint=hint, region_option=True)
    return UsageError(f"{resource}: {error}")


def resolve_state_machine(args: argparse.Namespace, session: Any) -> str:

    if args.state_machine:
        arn = args.state_machine
    elif not args.stack and os.environ.get(STATE_MACHINE_ENV):
        arn = os.environ[STATE_MACHINE_ENV]
    else:
        stack = args.stack or os.environ.get(STACK_ENV) or STACK_NAME
        try:
            stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        except Exception as error:
            hint = f"pass --stack NAME or set {STACK_ENV}"
            raise _aws_problem(error, f"stack {stack!r}", hint) from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        if Outputs.STATE_MACHINE_ARN not in outputs:
            raise UsageError(
                f"stack {stack!r} has no {Outputs.STATE_MACHINE_ARN} output (is it the build farm stack?)"
            )
        arn = outputs[Outputs.STATE_MACHINE_ARN]
    if not STATE_MACHINE_ARN.fullmatch(arn):
        raise UsageError(f"not a state machine ARN: {arn!r}")
    return arn


def run_trigger(args: argparse.Namespace) -> int:
    import boto3

    try:
        request = parse_workflow_input(raw_input_from_args(args))
    except InputError as error:
        raise UsageError(str(error)) from None
    execution_input = request.model_dump(mode="json", exclude_defaults=True)

    # boto3 reads AWS_DEFAULT_REGION only; the farm documents AWS_REGION (and --region beats both).
    session = boto3.session.Session(region_name=aws_region(args.region))
    arn = resolve_state_machine(args, session)
    region = STATE_MACHINE_ARN.fullmatch(arn)["region"]  # checked by resolve_state_machine
    sfn = session.client("stepfunctions", region_name=region)
    name = args.name or execution_name()
    try:
        started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(execution_input))
    except Exception as error:
        raise _aws_problem(error, f"start {arn}") from None
    execution_arn = started["executionArn"]
    print(f"started {execution_arn}")
    print(f"input   {json.dumps(execution_input)}")
    print(f"console {console_url(execution_arn)}")
    sys.stdout.flush()
    if not args.wait:
        return 0
    try:
        status = follow(sfn, execution_arn, poll=args.poll, emit=_print)
    except KeyboardInterrupt:
        raise
    except Exception as error:
        raise _aws_problem(error, f"following {execution_arn}") from None
    return 0 if status == "SUCCEEDED" else 1


def _print(line: str) -> None:
    print(line, flush=True)


class _Follower:
    """Turns an execution's history (and its Map run's child executions) into lines."""

    def __init__(self, sfn: Any, execution_arn: str, emit: Callable[[str], None]) -> None:
        self.sfn = sfn
        self.execution_arn = execution_arn
        self.emit = emit
        self.seen_events: set[int] = set()
        self.map_run_arn: str | None = None
        self.reported_children: set[str] = set()
        self.children_listable = True
        self.last_counts: tuple[int, ...] | None = None
        self.failed_cells: dict[str, str] = {}

    def history(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.sfn.get_execution_history(
                executionArn=self.execution_arn, maxResults=1000, **({"nextToken": token} if token else {})
            )
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                return events

    def step(self) -> None:
        for event in self.history():
            if event["id"] in self.seen_events:
                continue
            self.seen_events.add(event["id"])
            self.on_event(event)
        if self.map_run_arn:
            self.on_map_run()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "TaskStateExited" and event["stateExitedEventDetails"]["name"] == States.PLAN:
            plan = json.loads(event["stateExitedEventDetails"]["output"]).get("plan", {})
            counts = plan.get("counts", {})
            self.emit(
                f"plan    {counts.get('cells', '?')} cells: {counts.get('planned', '?')} to build, "
                f"{counts.get('skipped_published', 0)} already published, "
                f"{counts.get('skipped_claimed', 0)} being built by another execution"
                + (
                    f", {counts['skipped_failing']} failing (retried later)"
                    if counts.get("skipped_failing")
                    else ""
                )
                + (f", {counts['deferred']} left for later runs" if counts.get("deferred") else "")
                + ("  (dry run)" if plan.get("dry_run") else "")
            )
        elif kind == "MapRunStarted":
            self.map_run_arn = event["mapRunStartedEventDetails"]["mapRunArn"]
        elif kind == "TaskStateExited" and event["stateExitedEventDetails"]["name"] == States.FINALIZE:
            self.on_map_run()  # report the last cells before the summary
            publish = json.loads(event["stateExitedEventDetails"]["output"]).get("publish", {})
            counts = publish.get("counts", {})
            self.emit(f"publish {counts.get('published', 0)} published, {counts.get('failed', 0)} failed")
            for failed in publish.get("failed") or []:
                self.emit(f"  failed {failed['cell']}: {failed['reason']}")

    def on_map_run(self) -> None:
        if self.children_listable:
            try:
                self.report_children()
                return
            except Exception:
                # Not every endpoint lists a Map run's child executions (moto does not).
                self.children_listable = False
        self.report_counts()

    def report_children(self) -> None:
        token = None
        while True:
            page = self.sfn.list_executions(
                mapRunArn=self.map_run_arn, **({"nextToken": token} if token else {})
            )
            for child in page["executions"]:
                if child["status"] == "RUNNING" or child["executionArn"] in self.reported_children:
                    continue
                self.reported_children.add(child["executionArn"])
                output = self.sfn.describe_execution(executionArn=child["executionArn"]).get("output")
                result = json.loads(output) if output else {}
                cell = result.get("cell", child["name"])
                if child["status"] == "SUCCEEDED" and result.get("status") == "succeeded":
                    self.emit(f"  built  {cell}")
                else:
                    error = result.get("error") or child["status"]
                    self.emit(f"  FAILED {cell}: {str(error)[:300]}")
            token = page.get("nextToken")
            if not token:
                return

    def report_counts(self) -> None:
        counts = self.sfn.describe_map_run(mapRunArn=self.map_run_arn)["itemCounts"]
        current = (counts["succeeded"], counts["failed"], counts["total"])
        if current != self.last_counts:
            self.last_counts = current
            done = (
                counts["succeeded"] + counts["failed"] + counts.get("timedOut", 0) + counts.get("aborted", 0)
            )
            self.emit(f"  cells finished {done}/{counts['total']}")


def follow(sfn: Any, execution_arn: str, *, poll: float, emit: Callable[[str], None]) -> str:
    """Follow an execution until it ends; emit progress lines; return its final status."""
    follower = _Follower(sfn, execution_arn, emit)
    while True:
        execution = sfn.describe_execution(executionArn=execution_arn)
        follower.step()
        if execution["status"] in FINISHED:
            status = execution["status"]
            if status == "SUCCEEDED":
                emit(f"{status}  {execution_arn}")
            else:
                detail = ": ".join(p for p in (execution.get("error"), execution.get("cause")) if p)
                emit(f"{status}  {execution_arn}" + (f"\n  {detail}" if detail else ""))
            return status
        time.sleep(poll)
