"""What a person who runs the farm needs, and no more: a managed policy to attach to the
operators' users, groups or SSO permission set. With it, `buildfarm trigger` starts and follows
executions (the stack's outputs, the execution history, its Map run), and `buildfarm status`
and `buildfarm plan --store s3://...` read the store. It writes nothing: publishing is the
workflow's (its roles, its KMS key), and `reindex` or `releases add` against the production
store need a broader grant, given on purpose."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge_wildcards, logical_id
from infra.workflow import BuildWorkflow


class OperatorAccess(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, workflow: BuildWorkflow, bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        executions = workflow.execution_arn()
        map_runs = executions.replace(":execution:", ":mapRun:", 1)
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"Run and watch the {stack.stack_name} build farm (buildfarm trigger, status, plan)",
            statements=[
                iam.PolicyStatement(
                    sid="FindTheStateMachine",
                    actions=["cloudformation:DescribeStacks"],
                    resources=[stack.stack_id],
                ),
                iam.PolicyStatement(
                    sid="StartAndListExecutions",
                    actions=["states:StartExecution", "states:ListExecutions"],
                    resources=[workflow.state_machine.state_machine_arn],
                ),
                iam.PolicyStatement(
                    sid="FollowExecutions",
                    actions=[
                        "states:DescribeExecution",
                        "states:GetExecutionHistory",
                        "states:StopExecution",
                    ],
                    resources=[f"{executions}:*"],
                ),
                iam.PolicyStatement(
                    sid="FollowMapRuns", actions=["states:DescribeMapRun"], resources=[f"{map_runs}/*:*"]
                ),
                iam.PolicyStatement(
                    sid="ReadTheStore", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]
                ),
                iam.PolicyStatement(
                    sid="ReadTheStoreObjects",
                    actions=["s3:GetObject"],
                    resources=[bucket.arn_for_objects("*")],
                ),
            ],
        )
        nag_executions = workflow.nag_executions()
        acknowledge_wildcards(
            self.policy,
            [f"{nag_executions}:*", f"{nag_executions.replace(':execution:', ':mapRun:', 1)}/*:*"],
            "an operator follows any execution of this state machine, and its Map runs, by name; "
            "execution names are not known in advance.",
        )
        acknowledge_wildcards(
            self.policy,
            [f"<{logical_id(bucket)}.Arn>/*"],
            "an operator reads any object of the store (status and plan read versions.json, releases.json, "
            "claims/ and runs/); read only, nothing is written.",
        )
