"""Plan Lambda: {"input": <workflow input>, "execution_id": "<$$.Execution.Name>"} -> plan summary.

Thin: parse the event, read the configuration, call buildfarm.plan.plan. An invalid input
raises InputError; its message (naming the bad value) is what Step Functions shows.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import utils as logging_utils
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from buildfarm.config import FarmConfig
from buildfarm.plan import plan
from buildfarm.store import open_store
from buildfarm.workflow_input import InputError

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "buildfarm")
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BuildFarm"))
# Domain modules log with stdlib logging (buildfarm.*): give them this logger's JSON format.
logging_utils.copy_config_to_registered_loggers(source_logger=logger, include={"buildfarm"})


class PlanEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Validated by buildfarm.workflow_input (one-line errors naming the value), not here.
    input: Any = Field(default_factory=dict)
    execution_id: str = Field(min_length=1, max_length=256)


@logger.inject_lambda_context(correlation_id_path="execution_id", log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PlanEvent)
def handler(event: PlanEvent, context: LambdaContext) -> dict[str, Any]:
    config = FarmConfig.from_env()
    store = open_store(config.store)
    try:
        result = plan(event.input, store, config, event.execution_id, datetime.now(UTC))
    except InputError:
        metrics.add_metric(name="InvalidInputs", unit=MetricUnit.Count, value=1)
        raise  # its message names the bad value; Step Functions shows it as the failure cause
    counts = result.counts
    metrics.add_metric(name="CellsPlanned", unit=MetricUnit.Count, value=counts["planned"])
    metrics.add_metric(
        name="CellsSkipped",
        unit=MetricUnit.Count,
        value=counts["skipped_published"] + counts["skipped_claimed"],
    )
    logger.info("plan ready", extra={"summary": result.summary})
    return result.summary
