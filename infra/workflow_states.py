"""The state machine's states and how they chain (DESIGN "Workflow"):

Recover (Lambda: finalize the runs whose execution ended) -> Plan (Lambda) -> nothing to build?
-> Build (Distributed Map over the plan items in S3; per item: one Batch job, `.sync`, then
PublishCell for that cell, whether the job succeeded or not; skipped without Python items) ->
BuildRuntimes (the same over the plan's runtime items: the Batch job, on the runtime job
definition of the item's platform x arch, runs the item's `buildfarm runtime build` argv as its
command, then PublishRuntime; skipped without runtime items) -> Finalize (Lambda: decide what
is left, regenerate the derived files once) -> fail naming the failed cells, or succeed.

Every state that can fail has a Catch. Recover's failure leaves the ended runs open for the next
run; Plan's fails the execution with its message (nothing claimed); a cell's job or PublishCell
failing leaves that cell to Finalize; the Map failing goes on to Finalize; Finalize failing
leaves the run open, and the next run's Recover finalizes it. Nothing built is lost.

Payload sizes stay bounded however large the run: the items are read from S3 (ItemReader) and
the per-cell results are written to S3 (ResultWriter, under plans/results/); Finalize decides
every planned cell from the store and returns at most 50 failed cells by name.

The states' names are buildfarm.workflow_names.States (`buildfarm trigger` reads the history by
them). The permissions the states need are granted in infra/workflow.py.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from buildfarm import layout
from buildfarm.workflow_names import Errors, States
from infra.batch import job_definition_prefix
from infra.config import InfraConfig
from infra.functions import FarmFunctions

# The ResultWriter prefix, as Step Functions takes it: without the trailing "/".
RESULTS_PREFIX = layout.MAP_RESULTS_PREFIX.removesuffix("/")


class RuntimeStates:
    """The states of the runtime cells (issue 16), in execution order. To move to
    buildfarm.workflow_names.States (not this change's file)."""

    ANY_PYTHON_CELLS: Final = "AnyPythonCells"
    ANY_RUNTIME_CELLS: Final = "AnyRuntimeCells"
    BUILD_RUNTIMES: Final = "BuildRuntimes"  # the Distributed Map; one item per runtime cell:
    BUILD_RUNTIME: Final = "BuildRuntime"
    RUNTIME_BUILT: Final = "RuntimeBuilt"
    RUNTIME_FAILED: Final = "RuntimeFailed"
    PUBLISH_RUNTIME: Final = "PublishRuntime"
    RUNTIME_LEFT_TO_FINALIZE: Final = "RuntimeLeftToFinalize"


def workflow_definition(
    scope: Construct,
    *,
    config: InfraConfig,
    bucket: s3.IBucket,
    functions: FarmFunctions,
    job_name_prefix: str,
) -> sfn.IChainable:
    """The whole chain, from Recover to the end states, with its states created in `scope`."""
    plan = _recover_then_plan(scope, functions)
    build = _build_map(scope, config, bucket, functions, job_name_prefix)
    build_runtimes = _runtimes_map(scope, config, bucket, functions, job_name_prefix)
    finalize = _finalize(scope, functions)
    # A Map failing as a whole (e.g. the items could not be read): Finalize decides every cell.
    build_runtimes.add_catch(finalize, errors=["States.ALL"], result_path="$.build_runtimes_error")
    any_runtime_cells = (
        sfn.Choice(scope, RuntimeStates.ANY_RUNTIME_CELLS)
        .when(sfn.Condition.number_greater_than("$.plan.runtimes.planned", 0), build_runtimes.next(finalize))
        .otherwise(finalize)
    )
    build.add_catch(any_runtime_cells, errors=["States.ALL"], result_path="$.build_error")
    build.next(any_runtime_cells)
    cells_failed = sfn.Fail(
        scope,
        States.CELLS_FAILED,
        error=Errors.CELLS_FAILED,
        cause_path=sfn.JsonPath.format(
            "Failed cells (the others were published): {}",
            sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.publish.failed")),
        ),
    )
    published = sfn.Succeed(scope, States.PUBLISHED)
    finalize.next(
        sfn.Choice(scope, States.ALL_PUBLISHED)
        .when(sfn.Condition.is_present("$.publish.failed[0]"), cells_failed)
        .otherwise(published)
    )
    nothing_to_build = sfn.Succeed(
        scope, States.NOTHING_TO_BUILD, comment="Dry run, or every cell is published"
    )
    return plan.next(
        sfn.Choice(scope, States.ANYTHING_TO_BUILD)
        .when(
            sfn.Condition.or_(
                sfn.Condition.boolean_equals("$.plan.dry_run", True),
                sfn.Condition.and_(
                    sfn.Condition.number_equals("$.plan.counts.planned", 0),
                    sfn.Condition.number_equals("$.plan.runtimes.planned", 0),
                ),
            ),
            nothing_to_build,
        )
        .otherwise(
            sfn.Choice(scope, RuntimeStates.ANY_PYTHON_CELLS)
            .when(sfn.Condition.number_greater_than("$.plan.counts.planned", 0), build)
            .otherwise(any_runtime_cells)
        )
    )


def _recover_then_plan(scope: Construct, functions: FarmFunctions) -> sfn.Chain:
    """Recover, then Plan (also when Recover fails); Plan failing fails the execution."""
    execution = {
        "input": sfn.JsonPath.entire_payload,
        "execution_id": sfn.JsonPath.execution_name,
        "execution_arn": sfn.JsonPath.execution_id,
    }
    recover = tasks.LambdaInvoke(
        scope,
        States.RECOVER,
        comment="Finalize the runs whose execution ended (publish what they built, release claims)",
        lambda_function=functions.recover,
        payload=sfn.TaskInput.from_object(execution),
        result_path=sfn.JsonPath.DISCARD,  # recorded in the history; Plan gets the input as given
        retry_on_service_exceptions=True,
    )
    plan = tasks.LambdaInvoke(
        scope,
        States.PLAN,
        comment="Validate the input, expand the matrix, claim cells, write the plan items to S3",
        lambda_function=functions.plan,
        payload=sfn.TaskInput.from_object(execution),
        result_selector={"plan": sfn.JsonPath.object_at("$.Payload")},
        retry_on_service_exceptions=True,
    )
    # After a failed recovery, plan anyway: the ended runs stay open for the next Recover.
    recover.add_catch(plan, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
    plan_failed = sfn.Fail(
        scope,
        States.PLAN_FAILED,
        comment="Invalid input (the cause names the value) or the store could not be read",
        error_path="$.Error",
        cause_path="$.Cause",
    )
    plan.add_catch(plan_failed, errors=["States.ALL"])
    return recover.next(plan)


def _finalize(scope: Construct, functions: FarmFunctions) -> tasks.LambdaInvoke:
    """Finalize, retried; still failing, the execution fails and the next Recover finishes it."""
    finalize = tasks.LambdaInvoke(
        scope,
        States.FINALIZE,
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
            scope,
            States.FINALIZE_FAILED,
            error=Errors.FINALIZE_FAILED,
            cause="Finalize failed; the cells published so far stay published and the next "
            "run's Recover finalizes this run",
        ),
        errors=["States.ALL"],
    )
    return finalize


def _build_map(
    scope: Construct, config: InfraConfig, bucket: s3.IBucket, functions: FarmFunctions, job_name_prefix: str
) -> sfn.DistributedMap:
    """The Distributed Map over the plan items Plan wrote to S3, one cell per item."""
    return _items_map(
        scope, config, bucket, States.BUILD,
        "Fan out over the plan items (a JSON array in S3); each cell is published when built",
        "$.plan.items", "$.build", _build_one_cell(scope, functions, job_name_prefix),
    )  # fmt: skip


def _runtimes_map(
    scope: Construct, config: InfraConfig, bucket: s3.IBucket, functions: FarmFunctions, job_name_prefix: str
) -> sfn.DistributedMap:
    """The Distributed Map over the runtime items Plan wrote to S3, one runtime cell per item."""
    return _items_map(
        scope, config, bucket, RuntimeStates.BUILD_RUNTIMES,
        "Fan out over the runtime items (a JSON array in S3); each is published when built",
        "$.plan.runtimes.items", "$.build_runtimes", _build_one_runtime(scope, functions, job_name_prefix),
    )  # fmt: skip


def _items_map(
    scope: Construct,
    config: InfraConfig,
    bucket: s3.IBucket,
    name: str,
    comment: str,
    items_path: str,
    result_path: str,
    per_item: sfn.IChainable,
) -> sfn.DistributedMap:
    """A Distributed Map over the items JSON array Plan wrote to S3 (its location at
    items_path: {"bucket", "key"}), running per_item on each."""
    items = sfn.DistributedMap(
        scope,
        name,
        comment=comment,
        # Where Plan wrote the items; the role may read only the plans' items files.
        item_reader=sfn.S3JsonItemReader(
            bucket_name_path=sfn.JsonPath.string_at(f"{items_path}.bucket"),
            key=sfn.JsonPath.string_at(f"{items_path}.key"),
        ),
        item_selector={"item": sfn.JsonPath.object_at("$$.Map.Item.Value")},
        max_concurrency=config.max_concurrency,
        map_execution_type=sfn.StateMachineType.STANDARD,  # builds take hours; EXPRESS stops at 5 min
        result_writer_v2=sfn.ResultWriterV2(bucket=bucket, prefix=RESULTS_PREFIX),
        # Items catch their own failures; if one still fails (a bug), Finalize decides that
        # item from the store, so the run never stops half-way.
        tolerated_failure_percentage=100,
        result_path=result_path,
    )
    items.item_processor(per_item)
    return items


def _build_one_runtime(scope: Construct, functions: FarmFunctions, job_name_prefix: str) -> sfn.IChainable:
    """Per runtime item: its Batch job running the item's command, then PublishRuntime."""
    stack = Stack.of(scope)
    build_runtime = sfn.CustomState(
        scope,
        RuntimeStates.BUILD_RUNTIME,
        state_json={
            "Type": "Task",
            "Comment": "One Batch job per runtime cell, on its platform x arch's runtime job "
            "definition (the builder's image, a job role of its own); the command is the item's "
            "argv (a JSON array, never a shell line)",
            "Resource": f"arn:{stack.partition}:states:::batch:submitJob.sync",
            "Parameters": {
                "JobName.$": "States.Format('{}-runtime{}', $.item.job_definition, $.item.build)",
                # Runtime jobs, whatever the item says: a runtime never runs as the builder.
                "JobDefinition.$": _job_definition(job_name_prefix, runtime=True),
                "JobQueue.$": f"States.Format('{job_name_prefix}-{{}}', $.item.job_queue_arch)",
                "ContainerOverrides": {"Command.$": "$.item.command"},
            },
            "ResultSelector": {"JobId.$": "$.JobId", "Status.$": "$.Status"},
            "ResultPath": "$.job",
        },
    )
    publish_runtime = _publish_task(
        scope,
        RuntimeStates.PUBLISH_RUNTIME,
        RuntimeStates.RUNTIME_LEFT_TO_FINALIZE,
        functions.publish_runtime,
        "Verify the runtime build, sign it, merge it into versions.json's runtimes, release the claim",
    )
    return _job_then_publish(
        scope, build_runtime, RuntimeStates.RUNTIME_BUILT, RuntimeStates.RUNTIME_FAILED, publish_runtime
    )


def _build_one_cell(scope: Construct, functions: FarmFunctions, job_name_prefix: str) -> sfn.IChainable:
    """Per plan item: the cell's Batch job, then PublishCell with what Batch said."""
    publish_cell = _publish_task(
        scope,
        States.PUBLISH_CELL,
        States.CELL_LEFT_TO_FINALIZE,
        functions.publish_cell,
        "Verify the build against the plan, merge it into versions.json, release the claim",
    )
    build_cell = _batch_job(scope, job_name_prefix)
    return _job_then_publish(scope, build_cell, States.CELL_BUILT, States.CELL_FAILED, publish_cell)


def _job_then_publish(
    scope: Construct, job: sfn.CustomState, built_name: str, failed_name: str, publish: sfn.IChainable
) -> sfn.IChainable:
    """The Batch job, then the publish task with what Batch said: {"item", "batch": {"status":
    "succeeded", "job_id"}} or, caught, {"item", "batch": {"status": "failed", "error"}}."""
    built = sfn.Pass(
        scope,
        built_name,
        parameters={
            "item": sfn.JsonPath.object_at("$.item"),
            "batch": {"status": "succeeded", "job_id": sfn.JsonPath.string_at("$.job.JobId")},
        },
    )
    failed = sfn.Pass(
        scope,
        failed_name,
        parameters={
            "item": sfn.JsonPath.object_at("$.item"),
            "batch": {
                "status": "failed",
                "error": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.error")),
            },
        },
    )
    job.add_catch(failed, errors=["States.ALL"], result_path="$.error")
    built.next(publish)
    failed.next(publish)
    return job.next(built)


def _batch_job(scope: Construct, job_name_prefix: str) -> sfn.CustomState:
    """One Batch job per cell (`.sync`), on the job definition and queue the item names."""
    stack = Stack.of(scope)
    return sfn.CustomState(
        scope,
        States.BUILD_CELL,
        state_json={
            "Type": "Task",
            "Comment": "One Batch job per cell; the spec goes in $BUILD_SPEC, never into a command line",
            "Resource": f"arn:{stack.partition}:states:::batch:submitJob.sync",
            "Parameters": {
                "JobName.$": "States.Format('{}-build{}', $.item.job_definition, $.item.spec.build)",
                "JobDefinition.$": _job_definition(job_name_prefix, runtime=False),
                "JobQueue.$": f"States.Format('{job_name_prefix}-{{}}', $.item.job_queue_arch)",
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


def _job_definition(job_name_prefix: str, *, runtime: bool) -> str:
    """The job definition of an item's platform x arch (`$.item.job_definition`), the Python
    build's or the runtime jobs' (infra.batch.job_definition_name)."""
    prefix = job_definition_prefix(job_name_prefix, runtime=runtime)
    return f"States.Format('{prefix}{{}}', $.item.job_definition)"


def _publish_task(
    scope: Construct, name: str, left_name: str, function: lambda_.IFunction, comment: str
) -> tasks.LambdaInvoke:
    """PublishCell or PublishRuntime, retried; still failing, the cell is left to Finalize (its
    build stays)."""
    publish_cell = tasks.LambdaInvoke(
        scope,
        name,
        comment=comment,
        lambda_function=function,
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
    publish_cell.add_catch(
        sfn.Pass(
            scope,
            left_name,
            parameters={
                "cell": sfn.JsonPath.string_at("$.item.cell"),
                "status": "undecided",
                "error": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.error")),
            },
        ),
        errors=["States.ALL"],
        result_path="$.error",
    )
    return publish_cell
