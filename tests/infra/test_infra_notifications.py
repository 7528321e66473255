"""Who hears of failures: the notification topic's subscription, the synthesis warning when
there is none, the schedule's switch (Alarms and Schedule on their own), and the alarm on what
no failed execution reports (the stack's template)."""

from __future__ import annotations

import json
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
    rules = [s["Metric"] for s in stats if s["Metric"]["MetricName"] == "FailedInvocations"]
    assert all(rule["Namespace"] == "AWS/Events" for rule in rules)
    # The schedule's failed starts, and the failed-executions rule's failed mails.
    assert sorted(rule["Dimensions"][0]["Value"]["Ref"] for rule in rules) == sorted(
        only(template, "AWS::Events::Rule", name)[0] for name in ("ScheduleRule", "FailedExecutions")
    )
    (expression,) = [m["Expression"] for m in metrics if "Expression" in m]
    assert expression.count("FILL(") == len(stats) == len(errors) + 2


EXECUTION_METRICS = {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}


def test_a_failed_execution_is_mailed_once_with_its_cause(tmp_path) -> None:
    """Of everything that publishes to the topic, one fires on a failed, timed-out or aborted
    execution: the rule, whose message names the execution, its status and cause. The
    ExecutionsFailed alarm counts the same executions without an action; what the rule cannot
    mail itself (its failed deliveries) is FarmErrors', which mails."""
    stack = _parts(tmp_path, {"buildfarm:notificationEmail": "ops@example.org"})
    template = Template.from_stack(stack).to_json()
    topic_id, _ = only(template, "AWS::SNS::Topic")
    rule_id, rule = only(template, "AWS::Events::Rule", "FailedExecutions")
    mailing = [r for r in by_type(template, "AWS::Events::Rule").values() if r["Properties"].get("Targets")]
    assert [r["Properties"]["Targets"][0]["Arn"] for r in mailing if "EventPattern" in r["Properties"]] == [
        {"Ref": topic_id}
    ]
    assert "$.detail.cause" in json.dumps(rule["Properties"]["Targets"][0]["InputTransformer"])
    mailed_on_execution_metrics = [
        alarm_id
        for alarm_id, alarm in by_type(template, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("AlarmActions") and EXECUTION_METRICS & _metric_names(alarm)
    ]
    assert mailed_on_execution_metrics == []
    _, counting = only(template, "AWS::CloudWatch::Alarm", "ExecutionsFailed")
    assert not counting["Properties"].get("AlarmActions")
    _, farm_errors = only(template, "AWS::CloudWatch::Alarm", "FarmErrors")
    assert farm_errors["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    delivery = [m["MetricStat"]["Metric"] for m in farm_errors["Properties"]["Metrics"] if "MetricStat" in m]
    assert any(
        m["MetricName"] == "FailedInvocations" and m["Dimensions"][0]["Value"] == {"Ref": rule_id}
        for m in delivery
    )


def _metric_names(alarm: dict[str, Any]) -> set[str]:
    metrics = alarm["Properties"]["Metrics"]
    return {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m}
