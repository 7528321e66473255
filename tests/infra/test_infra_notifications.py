"""Who hears of failures: the notification topic's subscription, the synthesis warning when
there is none, and the schedule's switch (Alarms and Schedule on their own)."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Stack
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Annotations, Match, Template

from infra.alarms import Alarms
from infra.config import InfraConfig
from infra.schedule import Schedule


def _parts(tmp_path, context: dict[str, Any]) -> Stack:
    config = InfraConfig.from_context(context)
    stack = Stack(App(outdir=str(tmp_path)), "Parts")
    machine = sfn.StateMachine(
        stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P"))
    )
    Alarms(stack, "Alarms", config=config, state_machine=machine)
    Schedule(stack, "Schedule", config=config, state_machine=machine)
    return stack


def test_notification_email_and_disabled_schedule_are_configurable(tmp_path) -> None:
    stack = _parts(tmp_path, {"buildfarm:notificationEmail": "ops@example.org", "buildfarm:schedule": ""})
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.org"}
    )
    template.has_resource_properties(
        "AWS::Events::Rule", {"State": "DISABLED", "ScheduleExpression": "rate(1 day)"}
    )
    Annotations.from_stack(stack).has_no_warning("*", Match.string_like_regexp("no one is told"))


def test_a_topic_without_a_subscriber_is_a_synthesis_warning(tmp_path) -> None:
    """The default deployment mails no one: synthesis says so, naming both ways to fix it."""
    stack = _parts(tmp_path, {})
    Template.from_stack(stack).resource_count_is("AWS::SNS::Subscription", 0)
    Annotations.from_stack(stack).has_warning(
        "/Parts/Alarms", Match.string_like_regexp("notificationEmail=.*NotificationTopicArn")
    )
