"""The state machine (DESIGN "Workflow"):

Recover (Lambda: finalize the runs whose execution ended) -> Plan (Lambda) -> nothing to build?
-> Build (Distributed Map over the plan items in S3; per item: one Batch job, `.sync`, then
PublishCell for that cell, whether the job succeeded or not) -> Finalize (Lambda: decide what is
left, regenerate the derived files once) -> fail naming the failed cells, or succeed.

Every state that can fail has a Catch. Recover's failure leaves the ended runs open for the next
run; Plan's fails the execution with its message (nothing claimed); a cell's job or PublishCell
failing leaves that cell to Finalize; the Map failing goes on to Finalize; Finalize failing
leaves the run open, and the next run's Recover finalizes it. Nothing built is lost.

Payload sizes stay bounded however large the run: the items are read from S3 (ItemReader) and
the per-cell results are written to S3 (ResultWriter, under plans/results/); Finalize decides
every planned cell from the store and returns at most 50 failed cells by name.
"""

from __future__ import annotations

from aws_cdk import Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from buildfarm import layout
from buildfarm.layout import under
from infra.batch import BuildBatch
from infra.config import InfraConfig
from infra.functions import FarmFunctions
from infra.nag import acknowledge_wildcards, logical_id

# The ResultWriter prefix, as Step Functions takes it: without the trailing "/".
RESULTS_PREFIX = layout.MAP_RESULTS_PREFIX.removesuffix("/")


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
        stack = Stack.of(self)
        prefix = build_batch.name_prefix

        execution = {
            "input": sfn.JsonPath.entire_payload,
            "execution_id": sfn.JsonPath.execution_name,
            "execution_arn": sfn.JsonPath.execution_id,
        }
        recover = tasks.LambdaInvoke(
            self,
            "Recover",
            comment="Finalize the runs whose execution ended (publish what they built, release claims)",
            lambda_function=functions.recover,
            payload=sfn.TaskInput.from_object(execution),
            result_path=sfn.JsonPath.DISCARD,  # recorded in the history; Plan gets the input as given
            retry_on_service_exceptions=True,
        )
        plan = tasks.LambdaInvoke(
            self,
            "Plan",
            comment="Validate the input, expand the matrix, claim cells, write the plan items to S3",
            lambda_function=functions.plan,
            payload=sfn.TaskInput.from_object(execution),
            result_selector={"plan": sfn.JsonPath.object_at("$.Payload")},
            retry_on_service_exceptions=True,
        )
        # After a failed recovery, plan anyway: the ended runs stay open for the next Recover.
        recover.add_catch(plan, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        plan_failed = sfn.Fail(
            self,
            "PlanFailed",
            comment="Invalid input (the cause names the value) or the store could not be read",
            error_path="$.Error",
            cause_path="$.Cause",
        )
        plan.add_catch(plan_failed, errors=["States.ALL"])

        nothing_to_build = sfn.Succeed(self, "NothingToBuild", comment="Dry run, or every cell is published")
        build = self._build_map(config, bucket, functions, build_batch)

        finalize = tasks.LambdaInvoke(
            self,
            "Finalize",
            comment="Decide the cells PublishCell did not, regenerate uv metadata, index.html, install.sh",
            lambda_function=functions.finalize,
            payload=sfn.TaskInput.from_object({"plan": sfn.JsonPath.object_at("$.plan")}),
            result_selector={
                "counts": sfn.JsonPath.object_at("$.Payload.counts"),
                "failed": sfn.JsonPath.object_at("$.Payload.failed"),
            },
            result_path="$.publish",
            retry_on_service_exceptions=True,
        )
        finalize.add_retry(errors=["States.ALL"], max_attempts=2, interval=Duration.seconds(5))
        finalize.add_catch(
            sfn.Fail(
                self,
                "FinalizeFailed",
                error="FinalizeFailed",
                cause="Finalize failed; the cells published so far stay published and the next "
                "run's Recover finalizes this run",
            ),
            errors=["States.ALL"],
        )
        # The Map failing as a whole (e.g. the items could not be read): Finalize decides every cell.
        build.add_catch(finalize, errors=["States.ALL"], result_path="$.build_error")
        cells_failed = sfn.Fail(
            self,
            "CellsFailed",
            error="CellsFailed",
            cause_path=sfn.JsonPath.format(
                "Failed cells (the others were published): {}",
                sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.publish.failed")),
            ),
        )
        published = sfn.Succeed(self, "Published")

        definition = recover.next(plan).next(
            sfn.Choice(self, "AnythingToBuild")
            .when(
                sfn.Condition.or_(
                    sfn.Condition.boolean_equals("$.plan.dry_run", True),
                    sfn.Condition.number_equals("$.plan.counts.planned", 0),
                ),
                nothing_to_build,
            )
            .otherwise(
                build.next(finalize).next(
                    sfn.Choice(self, "AllPublished")
                    .when(sfn.Condition.is_present("$.publish.failed[0]"), cells_failed)
                    .otherwise(published)
                )
            )
        )

        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            retention=logs.RetentionDays.SIX_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The role is immutable to CDK's automatic grants (which would give the ItemReader and
        # ResultWriter the whole bucket): every permission is spelled out below.
        role = iam.Role(
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
            role=role.without_policy_updates(),
        )
        self.role = role
        policy = iam.Policy(
            self,
            "Policy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="InvokeFunctions",
                    actions=["lambda:InvokeFunction"],
                    resources=[fn.function_arn for fn in functions.all],
                ),
                iam.PolicyStatement(
                    sid="ReadPlanItems",
                    actions=["s3:GetObject"],
                    resources=[bucket.arn_for_objects(under(layout.PLANS_PREFIX))],
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
                    resources=[build_batch.job_definition_arn_pattern()]
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
                    resources=[
                        stack.format_arn(
                            service="events",
                            resource="rule",
                            resource_name="StepFunctionsGetEventsForBatchJobsRule",
                        )
                    ],
                ),
                iam.PolicyStatement(
                    sid="DeliverLogs",
                    actions=[
                        "logs:CreateLogDelivery",
                        "logs:GetLogDelivery",
                        "logs:UpdateLogDelivery",
                        "logs:DeleteLogDelivery",
                        "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy",
                        "logs:DescribeResourcePolicies",
                        "logs:DescribeLogGroups",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="Tracing",
                    actions=[
                        "xray:PutTraceSegments",
                        "xray:PutTelemetryRecords",
                        "xray:GetSamplingRules",
                        "xray:GetSamplingTargets",
                    ],
                    resources=["*"],
                ),
            ],
        )
        # Executions need the permissions from their first state on.
        self.state_machine.node.add_dependency(policy)
        # Starting and following the Distributed Map's child executions needs the state machine's
        # own ARN, hence a second policy created after it.
        sm_name = Fn.select(6, Fn.split(":", self.state_machine.state_machine_arn))
        execution_arn = f"arn:{stack.partition}:states:{stack.region}:{stack.account}:execution:{sm_name}"
        map_runs_policy = iam.Policy(
            self,
            "MapRunsPolicy",
            roles=[role],
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

        # Recover and Plan ask Step Functions whether the executions holding runs and claims still
        # run (buildfarm.handlers.executions): this state machine's executions only. A policy of
        # its own, attached after the state machine exists (the functions cannot depend on it).
        liveness_policy = iam.Policy(
            self,
            "FollowExecutionsPolicy",
            roles=[functions.recover.role, functions.plan.role],
            statements=[
                iam.PolicyStatement(
                    sid="AskWhetherExecutionsRun",
                    actions=["states:DescribeExecution"],
                    resources=[f"{execution_arn}:*"],
                )
            ],
        )

        sm_id = logical_id(self.state_machine)
        executions = f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{sm_id}"}}]}}]}}'
        acknowledge_wildcards(
            liveness_policy,
            [f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{executions}:*"],
            "DescribeExecution on this state machine's executions only; which execution holds a "
            "run or a claim is known only at run time.",
        )
        acknowledge_wildcards(
            map_runs_policy,
            [
                f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{executions}:*",
                f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{executions}/*:*",
            ],
            "describe/stop/redrive only the executions of this state "
            "machine (the Map's child workflow runs).",
        )
        # CDK also builds its own DistributedMapPolicy for the immutable role; it is not attached
        # and not rendered into the template (MapRunsPolicy replaces it), but cdk-nag still sees it.
        acknowledge_wildcards(
            self.state_machine,
            [
                f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{executions}:*",
                f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{executions}/*:*",
            ],
            "its DistributedMapPolicy child is CDK's unattached, unrendered twin of MapRunsPolicy "
            "(own Map runs only).",
        )
        acknowledge_wildcards(
            policy,
            [
                "*",
                f"<{logical_id(bucket)}.Arn>/{under(layout.PLANS_PREFIX)}",
                f"<{logical_id(bucket)}.Arn>/{under(layout.MAP_RESULTS_PREFIX)}",
                f"arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job-definition/{prefix}-*",
                "arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*",
            ],
            "'*' only for actions without resource-level permissions (CloudWatch Logs "
            f"delivery, X-Ray, batch:DescribeJobs); S3 = its own store's {layout.PLANS_PREFIX} "
            f"(ItemReader reads the key Plan returns) and {layout.MAP_RESULTS_PREFIX} (ResultWriter); "
            f"job definitions: this stack's '{prefix}-*' (any revision); batch:TerminateJob on "
            "job/*: it authorizes on the job's ARN (job/<id>, no queue in it) and the ids only exist "
            "once submitted.",
        )

    def _build_map(
        self, config: InfraConfig, bucket: s3.IBucket, functions: FarmFunctions, build_batch: BuildBatch
    ) -> sfn.DistributedMap:
        """Per plan item: the cell's Batch job, then PublishCell with what Batch said."""
        stack = Stack.of(self)
        prefix = build_batch.name_prefix
        build_cell = sfn.CustomState(
            self,
            "BuildCell",
            state_json={
                "Type": "Task",
                "Comment": "One Batch job per cell; the spec goes in $BUILD_SPEC, never into a command line",
                "Resource": f"arn:{stack.partition}:states:::batch:submitJob.sync",
                "Parameters": {
                    "JobName.$": "States.Format('{}-build{}', $.item.job_definition, $.item.spec.build)",
                    "JobDefinition.$": f"States.Format('{prefix}-{{}}', $.item.job_definition)",
                    "JobQueue.$": f"States.Format('{prefix}-{{}}', $.item.job_queue_arch)",
                    "ContainerOverrides": {
                        "Environment": [{"Name": "BUILD_SPEC", "Value.$": "States.JsonToString($.item.spec)"}]
                    },
                },
                # Keep the item small: the job id and status, not Batch's whole job description
                # (the builder's outputs are in the store).
                "ResultSelector": {"JobId.$": "$.JobId", "Status.$": "$.Status"},
                "ResultPath": "$.job",
            },
        )
        cell_built = sfn.Pass(
            self,
            "CellBuilt",
            parameters={
                "item": sfn.JsonPath.object_at("$.item"),
                "batch": {"status": "succeeded", "job_id": sfn.JsonPath.string_at("$.job.JobId")},
            },
        )
        cell_failed = sfn.Pass(
            self,
            "CellFailed",
            parameters={
                "item": sfn.JsonPath.object_at("$.item"),
                "batch": {
                    "status": "failed",
                    "error": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.error")),
                },
            },
        )
        build_cell.add_catch(cell_failed, errors=["States.ALL"], result_path="$.error")
        publish_cell = tasks.LambdaInvoke(
            self,
            "PublishCell",
            comment="Verify the build against the plan, merge it into versions.json, release the claim",
            lambda_function=functions.publish_cell,
            payload=sfn.TaskInput.from_object(
                {"item": sfn.JsonPath.object_at("$.item"), "batch": sfn.JsonPath.object_at("$.batch")}
            ),
            result_selector={
                "cell": sfn.JsonPath.string_at("$.Payload.cell"),
                "status": sfn.JsonPath.string_at("$.Payload.status"),
                "build": sfn.JsonPath.number_at("$.Payload.build"),
            },
            retry_on_service_exceptions=True,
        )
        publish_cell.add_retry(errors=["States.ALL"], max_attempts=2, interval=Duration.seconds(10))
        # Still failing: Finalize decides the cell (its build, if any, stays in the store).
        publish_cell.add_catch(
            sfn.Pass(
                self,
                "CellLeftToFinalize",
                parameters={
                    "cell": sfn.JsonPath.string_at("$.item.cell"),
                    "status": "undecided",
                    "error": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.error")),
                },
            ),
            errors=["States.ALL"],
            result_path="$.error",
        )
        cell_built.next(publish_cell)
        cell_failed.next(publish_cell)

        build = sfn.DistributedMap(
            self,
            "Build",
            comment="Fan out over the plan items (a JSON array in S3); each cell is published when built",
            # Where Plan wrote the items (its summary's "items"); the role may read only plans/*.
            item_reader=sfn.S3JsonItemReader(
                bucket_name_path=sfn.JsonPath.string_at("$.plan.items.bucket"),
                key=sfn.JsonPath.string_at("$.plan.items.key"),
            ),
            item_selector={"item": sfn.JsonPath.object_at("$$.Map.Item.Value")},
            max_concurrency=config.max_concurrency,
            map_execution_type=sfn.StateMachineType.STANDARD,  # builds take hours; EXPRESS stops at 5 min
            result_writer_v2=sfn.ResultWriterV2(bucket=bucket, prefix=RESULTS_PREFIX),
            # Items catch their own failures; if one still fails (a bug), Finalize decides that
            # cell from the store, so the run never stops half-way.
            tolerated_failure_percentage=100,
            result_path="$.build",
        )
        build.item_processor(build_cell.next(cell_built))
        return build
