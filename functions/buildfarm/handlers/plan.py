"""Plan Lambda: {"input": <workflow input>, "execution_id": "<$$.Execution.Name>",
"execution_arn": "<$$.Execution.Id>"} -> plan summary.

Thin: parse the event, read the configuration and the runtime definitions (BUILDFARM_RUNTIMES,
else the ones the bundle carries), call buildfarm.plan.plan. An invalid input
raises InputError; its message (naming the bad value) is what Step Functions shows. Claims
of other executions hold while Step Functions says those executions run.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from buildfarm import clock
from buildfarm.config import FarmConfig
from buildfarm.handlers.common import powertools
from buildfarm.handlers.executions import step_functions_liveness
from buildfarm.plan import plan
from buildfarm.runtimes.cloud_items import farm_definitions
from buildfarm.runtimes.definitions import DefinitionError
from buildfarm.store import open_store
from buildfarm.workflow_input import InputError

logger, tracer, metrics = powertools()


class PlanEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Validated by buildfarm.workflow_input (one-line errors naming the value), not here.
    input: Any = Field(default_factory=dict)
    execution_id: str = Field(min_length=1, max_length=256)
    execution_arn: str | None = Field(default=None, max_length=2048)


@logger.inject_lambda_context(correlation_id_path="execution_id", log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PlanEvent)
def handler(event: PlanEvent, context: LambdaContext) -> dict[str, Any]:
    config = FarmConfig.from_env()
    store = open_store(config.store)
    is_running = step_functions_liveness(event.execution_arn)
    try:
        runtimes = farm_definitions()
    except DefinitionError as error:  # a broken runtime definition must not stop Python builds
        logger.error("runtime definitions not loaded, no runtime planned: %s", error)
        metrics.add_metric(name="RuntimeDefinitionErrors", unit=MetricUnit.Count, value=1)
        runtimes = None
    try:
        result = plan(
            event.input,
            store,
            config,
            event.execution_id,
            clock.now(),
            is_running=is_running,
            runtimes=runtimes,
        )
    except InputError:
        metrics.add_metric(name="InvalidInputs", unit=MetricUnit.Count, value=1)
        raise  # its message names the bad value; Step Functions shows it as the failure cause
    counts = result.counts
    metrics.add_metric(name="CellsPlanned", unit=MetricUnit.Count, value=counts["planned"])
    metrics.add_metric(name="RuntimesPlanned", unit=MetricUnit.Count, value=len(result.runtime_items))
    if result.runtimes_broken:  # definitions left out of the plan (the Python cells went on)
        metrics.add_metric(
            name="RuntimeDefinitionErrors", unit=MetricUnit.Count, value=result.runtimes_broken
        )
    metrics.add_metric(name="CellsDeferred", unit=MetricUnit.Count, value=counts["deferred"])
    metrics.add_metric(
        name="CellsSkipped",
        unit=MetricUnit.Count,
        value=counts["skipped_published"] + counts["skipped_claimed"] + counts["skipped_failing"],
    )
    logger.info("plan ready", extra={"summary": result.summary})
    return result.summary
