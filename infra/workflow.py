"""The workflow construct: the state machine (its states: infra/workflow_states.py), its
execution logs, and every permission its role and the functions need to run it.

The role is immutable to CDK's automatic grants (which would give the ItemReader and
ResultWriter the whole bucket): every permission is spelled out here.
"""

from __future__ import annotations

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from buildfarm import layout
from buildfarm.layout import under
from infra.batch import BuildBatch
from infra.config import InfraConfig
from infra.functions import FarmFunctions
from infra.log_groups import log_group
from infra.nag import acknowledge_wildcards, logical_id
from infra.storage_cdn import PLAN_ITEMS_KEYS
from infra.workflow_states import workflow_definition

# The executions of a state machine, as cdk-nag prints their ARN pattern (see _acknowledge).
_EXECUTIONS = "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{}"


class BuildWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        bucket: s3.IBucket,
        functions: FarmFunctions,
        build_batch: BuildBatch,
    ) -> None:
        super().__init__(scope, construct_id)
        definition = workflow_definition(
            self, config=config, bucket=bucket, functions=functions, job_name_prefix=build_batch.name_prefix
        )
        self.log_group = log_group(self, "ExecutionLogs", config)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Build farm workflow: invoke plan/publish, run Batch jobs, read plans, write results",
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="Python Build Farm: plan, build every cell on Batch, publish",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.hours(config.execution_timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            role=self.role.without_policy_updates(),
        )
        policy = iam.Policy(
            self, "Policy", roles=[self.role], statements=self._run_statements(bucket, functions, build_batch)
        )
        # Executions need the permissions from their first state on.
        self.state_machine.node.add_dependency(policy)
        self._acknowledge_run_statements(policy, bucket, build_batch.job_definition_names())
        self._grant_map_runs()
        self._grant_liveness(functions)

    def _run_statements(
        self, bucket: s3.IBucket, functions: FarmFunctions, build_batch: BuildBatch
    ) -> list[iam.PolicyStatement]:
        """What the states do: invoke the functions, read the plan items, write the Map's results,
        run and follow the Batch jobs, deliver logs and traces."""
        stack = Stack.of(self)
        batch_sync_rule = stack.format_arn(
            service="events", resource="rule", resource_name="StepFunctionsGetEventsForBatchJobsRule"
        )
        return [
            iam.PolicyStatement(
                sid="InvokeFunctions",
                actions=["lambda:InvokeFunction"],
                resources=[fn.function_arn for fn in functions.all],
            ),
            # The ItemReader reads the items files Plan writes, not the plan record or outcomes.
            iam.PolicyStatement(
                sid="ReadPlanItems",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(key) for key in PLAN_ITEMS_KEYS],
            ),
            iam.PolicyStatement(
                sid="WriteMapResults",
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[bucket.arn_for_objects(under(layout.MAP_RESULTS_PREFIX))],
            ),
            iam.PolicyStatement(
                sid="SubmitBuildJobs",
                actions=["batch:SubmitJob"],
                resources=build_batch.job_definition_arns()
                + [queue.job_queue_arn for queue in build_batch.queues.values()],
            ),
            # DescribeJobs has no resource-level permissions. TerminateJob (Step Functions stops
            # the job when its execution stops) authorizes on the job ARN, job/<job id>, not
            # on a job queue: the ids are made at submit time, so this account and region's jobs.
            iam.PolicyStatement(sid="FollowBuildJobs", actions=["batch:DescribeJobs"], resources=["*"]),
            iam.PolicyStatement(
                sid="StopBuildJobs",
                actions=["batch:TerminateJob"],
                resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
            ),
            iam.PolicyStatement(
                sid="BatchSyncRule",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[batch_sync_rule],
            ),
            iam.PolicyStatement(sid="DeliverLogs", actions=_LOG_DELIVERY_ACTIONS, resources=["*"]),
            iam.PolicyStatement(sid="Tracing", actions=_TRACING_ACTIONS, resources=["*"]),
        ]

    def _acknowledge_run_statements(
        self, policy: iam.Policy, bucket: s3.IBucket, job_definitions: list[str]
    ) -> None:
        acknowledge_wildcards(
            policy,
            [
                "*",
                *(f"<{logical_id(bucket)}.Arn>/{key}" for key in PLAN_ITEMS_KEYS),
                f"<{logical_id(bucket)}.Arn>/{under(layout.MAP_RESULTS_PREFIX)}",
                *(
                    f"arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job-definition/{name}:*"
                    for name in job_definitions
                ),
                "arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*",
            ],
            "'*' only for actions without resource-level permissions (CloudWatch Logs "
            f"delivery, X-Ray, batch:DescribeJobs); S3 = its own store's {' and '.join(PLAN_ITEMS_KEYS)} "
            f"(the ItemReader reads the items file Plan names; * = the execution) and "
            f"{layout.MAP_RESULTS_PREFIX} (ResultWriter); "
            "job definitions: each of this stack's by name, any revision (name:N); batch:TerminateJob on "
            "job/*: it authorizes on the job's ARN (job/<id>, no queue in it) and the ids only exist "
            "once submitted.",
        )

    def execution_arn(self) -> str:
        """The ARN of this state machine's executions, without the execution name."""
        stack = Stack.of(self)
        name = Fn.select(6, Fn.split(":", self.state_machine.state_machine_arn))
        return f"arn:{stack.partition}:states:{stack.region}:{stack.account}:execution:{name}"

    def nag_executions(self) -> str:
        """execution_arn as cdk-nag prints it in finding ids."""
        sm_id = logical_id(self.state_machine)
        return _EXECUTIONS.format(f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{sm_id}"}}]}}]}}')

    def _grant_map_runs(self) -> None:
        """Starting and following the Distributed Map's child executions needs the state
        machine's own ARN, hence a second policy created after it."""
        execution_arn = self.execution_arn()
        map_runs_policy = iam.Policy(
            self,
            "MapRunsPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="StartMapRuns",
                    actions=["states:StartExecution"],
                    resources=[self.state_machine.state_machine_arn],
                ),
                iam.PolicyStatement(
                    sid="FollowMapRuns",
                    actions=["states:DescribeExecution", "states:StopExecution"],
                    resources=[f"{execution_arn}:*"],
                ),
                iam.PolicyStatement(
                    sid="RedriveMapRuns",
                    actions=["states:RedriveExecution"],
                    resources=[f"{execution_arn}/*:*"],
                ),
            ],
        )
        executions = self.nag_executions()
        own_map_runs = [f"{executions}:*", f"{executions}/*:*"]
        acknowledge_wildcards(
            map_runs_policy,
            own_map_runs,
            "describe/stop/redrive only the executions of this state "
            "machine (the Map's child workflow runs).",
        )
        # CDK also builds its own DistributedMapPolicy for the immutable role; it is not attached
        # and not rendered into the template (MapRunsPolicy replaces it), but cdk-nag still sees it.
        acknowledge_wildcards(
            self.state_machine,
            own_map_runs,
            "its DistributedMapPolicy child is CDK's unattached, unrendered twin of MapRunsPolicy "
            "(own Map runs only).",
        )

    def _grant_liveness(self, functions: FarmFunctions) -> None:
        """Recover and Plan ask Step Functions whether the executions holding runs and claims
        still run (buildfarm.handlers.executions): this state machine's executions only. A policy
        of its own, attached after the state machine exists (the functions cannot depend on it)."""
        liveness_policy = iam.Policy(
            self,
            "FollowExecutionsPolicy",
            roles=[functions.recover.role, functions.plan.role],
            statements=[
                iam.PolicyStatement(
                    sid="AskWhetherExecutionsRun",
                    actions=["states:DescribeExecution"],
                    resources=[f"{self.execution_arn()}:*"],
                )
            ],
        )
        acknowledge_wildcards(
            liveness_policy,
            [f"{self.nag_executions()}:*"],
            "DescribeExecution on this state machine's executions only; which execution holds a "
            "run or a claim is known only at run time.",
        )


_LOG_DELIVERY_ACTIONS = [
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
]
_TRACING_ACTIONS = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
]
