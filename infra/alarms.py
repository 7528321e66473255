"""Alarms and notifications: one SNS topic, one mail per failure.

A failed, timed-out or aborted execution is mailed once, by the EventBridge rule, which alone
can say which execution and why (its cause names the failed cells or Plan's message). The
`ExecutionsFailed` alarm (the sum of the state machine's ExecutionsFailed, ExecutionsTimedOut
and ExecutionsAborted metrics) has no action: it would mail the same failure a second time,
without its cause; it stays as the farm's state in CloudWatch (and a hook for a team's own
action). What the rule cannot report itself, its own failed deliveries (FailedInvocations), is
mailed by the `FarmErrors` alarm, with the functions' errors and the schedule's failed starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import InfraConfig
from infra.nag import acknowledge

FAILED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        state_machine: sfn.StateMachine,
        functions: Sequence[lambda_.IFunction] = (),
        schedule: events.IRule | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # A customer-managed key that CloudWatch may use to publish (EventBridge publishes with
        # a role of this stack, which grant_publish lets use the key).
        key = kms.Key(self, "TopicKey", enable_key_rotation=True, description="Build farm notifications")
        key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        self.topic = sns.Topic(
            self, "Notifications", display_name="Python Build Farm", master_key=key, enforce_ssl=True
        )
        if config.notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.notification_email))
        else:
            Annotations.of(self).add_warning_v2(
                "buildfarm:noSubscriber",
                "no one is told of failed executions: set -c buildfarm:notificationEmail=ADDRESS (and "
                "confirm the mail SNS sends), or subscribe to the NotificationTopicArn output",
            )

        self.failed_executions = self._rule(state_machine)
        # No action: the rule mails each failed execution, with its cause (module docstring).
        self.executions_failed = self._alarm(state_machine)
        self.farm_errors = self._errors_alarm(functions, (schedule, self.failed_executions))
        self.farm_errors.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarms = [self.farm_errors]
        # The topic's policy replaces SNS's default one (which let the account's services
        # publish): CloudWatch may publish, for the alarm that mails only.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmPublishes",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": [alarm.alarm_arn for alarm in alarms]},
                    "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
                },
            )
        )

    def _rule(self, state_machine: sfn.StateMachine) -> events.Rule:
        """The rule that mails an execution that failed, timed out or was aborted, with its cause:
        "Failed cells (the others were published): [...]" for failed builds, or the Plan's
        validation message."""
        rule = events.Rule(
            self,
            "FailedExecutions",
            description="Notify when a build farm execution fails, times out or is aborted",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "stateMachineArn": [state_machine.state_machine_arn],
                    "status": list(FAILED_STATUSES),
                },
            ),
            targets=[
                # A role, not a grant to the events.amazonaws.com service in the topic's policy
                # (which any account's rule could use).
                targets.SnsTopic(
                    self.topic,
                    authorize_using_role=True,
                    message=events.RuleTargetInput.from_text(
                        f"Build farm execution {events.EventField.from_path('$.detail.name')} ended "
                        f"{events.EventField.from_path('$.detail.status')}: "
                        f"{events.EventField.from_path('$.detail.cause')} "
                        f"({events.EventField.from_path('$.detail.executionArn')})"
                    ),
                )
            ],
        )
        acknowledge(
            rule.node.find_child("EventsRole"),
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "the role EventBridge publishes with may make data keys (GenerateDataKey and its "
            "WithoutPlaintext variant) with the topic's own key only, as SNS needs for an encrypted topic.",
        )
        return rule

    def _alarm(self, state_machine: sfn.StateMachine) -> cloudwatch.Alarm:
        """An alarm (without action) when an execution ends badly in an hour: the same three
        statuses as the rule, which Step Functions counts in a metric each."""
        hourly = {"period": Duration.hours(1), "statistic": "Sum"}
        return self._hourly_alarm(
            "ExecutionsFailed",
            "A build farm execution failed, timed out or was aborted (see the notification for its cause "
            "and failed cells)",
            "Executions failed, timed out or aborted",
            {
                "failed": state_machine.metric_failed(**hourly),
                "timedOut": state_machine.metric_timed_out(**hourly),
                "aborted": state_machine.metric_aborted(**hourly),
            },
        )

    def _errors_alarm(
        self, functions: Sequence[lambda_.IFunction], rules: Sequence[events.IRule | None]
    ) -> cloudwatch.Alarm:
        """An alarm when a function errs or a rule fails to deliver, in an hour: what no
        execution failure mail reports. Recover's Catch lets the execution go on (cells built by
        ended runs then stay unpublished until a Recover succeeds), a schedule whose target is
        refused starts nothing at all, and a failed-executions rule that cannot publish mails
        nothing."""
        hourly = {"period": Duration.hours(1), "statistic": "Sum"}
        metrics: dict[str, cloudwatch.IMetric] = {
            f"errors{index}": function.metric_errors(**hourly) for index, function in enumerate(functions)
        }
        for index, rule in enumerate(r for r in rules if r is not None):
            metrics[f"rule{index}"] = cloudwatch.Metric(
                namespace="AWS/Events", metric_name="FailedInvocations",
                dimensions_map={"RuleName": rule.rule_name}, **hourly,
            )  # fmt: skip
        return self._hourly_alarm(
            "FarmErrors",
            "A build farm function failed (Recover, Plan, PublishCell, PublishRuntime or Finalize: see "
            "its log group), the schedule could not start the workflow, or a failed execution could "
            "not be mailed (see the FailedExecutions rule and the ExecutionsFailed alarm)",
            "Function errors and failed rule deliveries",
            metrics,
        )

    def _hourly_alarm(
        self, construct_id: str, description: str, label: str, metrics: dict[str, cloudwatch.IMetric]
    ) -> cloudwatch.Alarm:
        """An alarm when the metrics' sum is at least 1 in an hour. Each term is filled: AWS emits
        such a metric only in an hour that has such an event, and math over a missing series has
        no datapoint, so unfilled, one failure in an hour without the others would sum to
        nothing (and not breach). FILL makes each missing term 0."""
        total = cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({name}, 0)" for name in metrics),
            using_metrics=metrics,
            label=label,
            period=Duration.hours(1),
        )
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=total,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
