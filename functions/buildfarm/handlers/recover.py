"""Recover Lambda (the workflow's first state): {"input": <workflow input>, "execution_id":
"<$$.Execution.Name>", "execution_arn": "<$$.Execution.Id>"} -> {"finalized": [run ids],
"running": [run ids], "published": <cells>, "failed": <cells>}.

Finalizes every open run whose execution Step Functions says has ended (buildfarm.recovery),
before Plan claims anything. A dry run recovers nothing (it writes nothing).
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
from buildfarm.finalize import MAX_NAMED
from buildfarm.handlers.common import powertools
from buildfarm.handlers.executions import step_functions_liveness
from buildfarm.recovery import recover
from buildfarm.store import open_store
from buildfarm.workflow_input import asks_for_dry_run

logger, tracer, metrics = powertools()


class RecoverEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: Any = None  # validated by Plan; only its dry_run flag is looked at here
    execution_id: str = Field(min_length=1, max_length=256)
    execution_arn: str | None = Field(default=None, max_length=2048)


@logger.inject_lambda_context(correlation_id_path="execution_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RecoverEvent)
def handler(event: RecoverEvent, context: LambdaContext) -> dict[str, Any]:
    if asks_for_dry_run(event.input):
        return {"finalized": [], "running": [], "published": 0, "failed": 0}
    config = FarmConfig.from_env()
    store = open_store(config.store)
    is_running = step_functions_liveness(event.execution_arn)
    recovery = recover(
        store,
        config,
        clock.now(),
        is_running=is_running,
        own_execution_id=event.execution_id,
        signer=require_signer(config),
    )
    metrics.add_metric(name="RunsRecovered", unit=MetricUnit.Count, value=len(recovery.finalized))
    metrics.add_metric(name="CellsRecovered", unit=MetricUnit.Count, value=len(recovery.published))
    if recovery.finalized:
        logger.info("recovered runs", extra={"finalized": recovery.finalized})
    # Cell lists can be long: the state output carries the counts and the run ids only.
    return {
        "finalized": recovery.finalized[:MAX_NAMED],
        "running": recovery.running[:MAX_NAMED],
        "published": len(recovery.published),
        "failed": len(recovery.failed),
    }
