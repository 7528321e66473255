"""The schedule: an EventBridge rule that starts the workflow with {} (build what is new)."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import InfraConfig


class Schedule(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, state_machine: sfn.IStateMachine
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description="Start the build farm with {} (plan builds only what is not yet published)",
            schedule=events.Schedule.expression(config.schedule or "rate(1 day)"),
            enabled=bool(config.schedule),
            targets=[
                targets.SfnStateMachine(
                    state_machine, input=events.RuleTargetInput.from_object({}), retry_attempts=2
                )
            ],
        )
