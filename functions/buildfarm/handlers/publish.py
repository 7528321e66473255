"""Publish Lambdas (DESIGN "Workflow"):

- cell_handler (PublishCell, in each Map item after its Batch job):
  {"item": <plan item>, "batch": {"status": "succeeded"|"failed", "job_id"?, "error"?}}
  -> {"cell", "build", "status": "published"|"failed", "reason", "decided"}
- runtime_handler (PublishRuntime, in each BuildRuntimes item after its Batch job):
  {"item": <runtime item>, "batch": {...}} -> {"cell", "build", "status", "reason", "decided"}
- finalize_handler (Finalize, once after the Maps): {"plan": <Plan's summary>}
  -> {"published": [...], "failed": [{"cell", "reason"}], "counts": {...}} (runtime cells in
  the lists, and counted as runtimes_published / runtimes_failed; each list names at most
  buildfarm.finalize.MAX_NAMED cells, the counts are complete)

Thin: parse the event, read the configuration (the signer too: a publisher without a signing
key refuses to publish), call buildfarm.publish / buildfarm.finalize, emit metrics.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from buildfarm import clock
from buildfarm.attest.farm_signer import require_signer
from buildfarm.config import FarmConfig
from buildfarm.finalize import finalize_run
from buildfarm.handlers.common import powertools
from buildfarm.plan_items import PlanItem
from buildfarm.publish import BatchOutcome, publish_cell
from buildfarm.runtimes.cloud_items import RuntimeItem, decide_runtime_item, runtime_job_failure
from buildfarm.store import open_store

logger, tracer, metrics = powertools()


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


class FinalizeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    plan: PlanSummary


class CellEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    item: PlanItem
    batch: BatchOutcome


@logger.inject_lambda_context(correlation_id_path="item.spec.execution_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=CellEvent)
def cell_handler(event: CellEvent, context: LambdaContext) -> dict[str, Any]:
    config = FarmConfig.from_env()
    store = open_store(config.store)
    outcome = publish_cell(event.item, store, clock.now(), event.batch, signer=require_signer(config))
    metric = "CellsBuilt" if outcome.status == "published" else "CellsFailed"
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    if outcome.status == "failed":
        logger.warning("cell failed", extra={"cell": outcome.cell, "reason": outcome.reason})
    return outcome.model_dump(mode="json")


class RuntimeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    item: RuntimeItem
    batch: BatchOutcome


@logger.inject_lambda_context(correlation_id_path="item.execution_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RuntimeEvent)
def runtime_handler(event: RuntimeEvent, context: LambdaContext) -> dict[str, Any]:
    config = FarmConfig.from_env()
    store = open_store(config.store)
    failure = runtime_job_failure(event.batch)
    outcome = decide_runtime_item(store, event.item, clock.now(), failure, signer=require_signer(config))
    metric = "RuntimesBuilt" if outcome.status == "published" else "RuntimesFailed"
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    if outcome.status == "failed":
        logger.warning("runtime failed", extra={"cell": outcome.cell, "reason": outcome.reason})
    return outcome.model_dump(mode="json")


@logger.inject_lambda_context(correlation_id_path="plan.execution_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=FinalizeEvent)
def finalize_handler(event: FinalizeEvent, context: LambdaContext) -> dict[str, Any]:
    config = FarmConfig.from_env()
    store = open_store(config.store)
    summary = event.plan.model_dump(mode="json")
    run = finalize_run(summary, store, config, clock.now(), signer=require_signer(config))
    counts = run.cells.counts
    metrics.add_metric(name="CellsFailed", unit=MetricUnit.Count, value=counts["failed"])
    metrics.add_metric(name="CellsDeferred", unit=MetricUnit.Count, value=counts.get("deferred", 0))
    if run.cells.failed:
        logger.warning("cells failed", extra={"failed": [f.model_dump() for f in run.cells.failed]})
    return run.summary()
