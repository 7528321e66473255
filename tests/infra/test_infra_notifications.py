"""Who hears of failures: the notification topic's subscription, the synthesis warning when
there is none, the schedule's switch (Alarms and Schedule on their own), and the alarm on what
no failed execution reports (the stack's template)."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Stack
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Annotations, Match, Template
from template_helpers import by_type, only

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


def test_function_errors_and_failed_schedule_starts_alarm_to_the_topic(template) -> None:
    """Recover's Catch lets an execution succeed, and a refused schedule target starts nothing:
    neither is a failed execution, so the functions' Errors and the rule's FailedInvocations
    have an alarm of their own, mailed through the same topic."""
    topic_id, _ = only(template, "AWS::SNS::Topic")
    _, alarm = only(template, "AWS::CloudWatch::Alarm", "FarmErrors")
    assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    metrics = alarm["Properties"]["Metrics"]
    stats = [m["MetricStat"] for m in metrics if "MetricStat" in m]
    errors = [
        s["Metric"]["Dimensions"][0]["Value"]["Ref"] for s in stats if s["Metric"]["MetricName"] == "Errors"
    ]
    assert sorted(errors) == sorted(by_type(template, "AWS::Lambda::Function"))  # every function
    (schedule,) = [s["Metric"] for s in stats if s["Metric"]["MetricName"] == "FailedInvocations"]
    rule_id, _ = only(template, "AWS::Events::Rule", "ScheduleRule")
    assert schedule["Namespace"] == "AWS/Events" and schedule["Dimensions"][0]["Value"] == {"Ref": rule_id}
    (expression,) = [m["Expression"] for m in metrics if "Expression" in m]
    assert expression.count("FILL(") == len(stats) == len(errors) + 1
