"""Publish Lambda: {"plan": <Plan's summary>, "results": [{"cell", "status", "error"}, ...]}
-> {"published": [...], "failed": [{"cell", "reason"}], "counts": {...}}.

Thin: parse the event, read the configuration, call buildfarm.publish.publish, emit metrics.
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
from buildfarm.publish import publish
from buildfarm.store import open_store

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "buildfarm")
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BuildFarm"))
# Domain modules log with stdlib logging (buildfarm.*): give them this logger's JSON format.
logging_utils.copy_config_to_registered_loggers(source_logger=logger, include={"buildfarm"})


class ItemsLocation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    bucket: str
    key: str = Field(min_length=1)


class PlanSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    plan_id: str = Field(min_length=1)
    execution_id: str | None = None
    items: ItemsLocation
    counts: dict[str, int] = Field(default_factory=dict)
    dry_run: bool = False


class PublishEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    plan: PlanSummary
    # Entries are validated one by one in the domain (a malformed one is logged and ignored).
    results: list[Any] | None = None


@logger.inject_lambda_context(correlation_id_path="plan.execution_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PublishEvent)
def handler(event: PublishEvent, context: LambdaContext) -> dict[str, Any]:
    config = FarmConfig.from_env()
    store = open_store(config.store)
    result = publish(event.plan.model_dump(mode="json"), store, config, event.results, datetime.now(UTC))
    counts = result.counts
    metrics.add_metric(name="CellsBuilt", unit=MetricUnit.Count, value=counts["published"])
    metrics.add_metric(name="CellsFailed", unit=MetricUnit.Count, value=counts["failed"])
    metrics.add_metric(
        name="CellsSkipped",
        unit=MetricUnit.Count,
        value=counts["skipped_published"] + counts["skipped_claimed"],
    )
    if result.failed:
        logger.warning("cells failed", extra={"failed": [f.model_dump() for f in result.failed]})
    return result.as_json()
